package control

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunstack/tunstack/stack/capture"
	"github.com/tunstack/tunstack/stack/forward"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(dialEnv); path != "" {
		os.Exit(dialForTest(path))
	}
	goleak.VerifyTestMain(m)
}

// fakeBackend answers with fixed values and records forwards.
type fakeBackend struct {
	name string
	fwds []Forward
}

func (f *fakeBackend) Info() Info {
	return Info{Name: f.name, PID: os.Getpid(), Kind: "run", Command: []string{"sleep", "1"}, Forwards: f.fwds}
}
func (f *fakeBackend) Sockets(context.Context, SocketQuery) ([]Socket, error) {
	return []Socket{{Netid: "tcp", State: "LISTEN"}}, nil
}
func (f *fakeBackend) Links() []Link   { return []Link{{Index: 1, Name: "tun0"}} }
func (f *fakeBackend) Routes() []Route { return nil }
func (f *fakeBackend) Capture(req CaptureRequest) (CaptureStream, error) {
	return nil, errors.New("capture: not in the fake")
}
func (f *fakeBackend) Forwards() []Forward { return f.fwds }
func (f *fakeBackend) AddForwards(strs []string) ([]Forward, error) {
	var specs []forward.Spec
	for _, str := range strs {
		sp, err := forward.ParseSpec(str)
		if err != nil {
			return nil, &RequestError{Err: err}
		}
		specs = append(specs, sp...)
	}
	for _, s := range specs {
		if s.HostPort == 1 {
			return nil, errors.New("host port 1/tcp: in use")
		}
		f.fwds = append(f.fwds, Forward{ID: s.String(), Spec: ForwardSpec{Proto: s.Proto, HostPort: s.HostPort, SandboxPort: s.SandboxPort}})
	}
	return f.fwds, nil
}
func (f *fakeBackend) RemoveForward(id string) error {
	for i, fw := range f.fwds {
		if fw.ID == id {
			f.fwds = append(f.fwds[:i], f.fwds[i+1:]...)
			return nil
		}
	}
	return errors.New("forward " + id + ": no such forward")
}

func serve(t *testing.T, dir, name string) *Server {
	t.Helper()
	s, err := Listen(ServerConfig{Path: SocketPath(dir, name), Backend: &fakeBackend{name: name}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestServerModesAndRequests(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tunstack")
	s := serve(t, dir, "one")
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	ctx := t.Context()
	c := NewClient(s.Path())
	defer c.Close()
	in, err := c.Info(ctx)
	if err != nil || in.Name != "one" {
		t.Fatalf("Info: %+v, %v", in, err)
	}
	if _, err := c.AddForwards(ctx, []string{"8080:80", "127.0.0.1:53:53/udp"}); err != nil {
		t.Fatal(err)
	}
	fw, _ := c.Forwards(ctx)
	if len(fw) != 2 || fw[0].ID != "8080:80/tcp" || fw[1].ID != "127.0.0.1:53:53/udp" {
		t.Errorf("forwards after add: %+v", fw)
	}
	if err := c.RemoveForward(ctx, "8080:80/tcp"); err != nil {
		t.Errorf("RemoveForward: %v", err)
	}

	// Bad requests get an error and the server keeps serving.
	for _, tc := range []struct {
		name    string
		do      func() error
		mention string
	}{
		{"bad spec", func() error { _, err := c.AddForwards(ctx, []string{"80:http"}); return err }, `"http" is not a port`},
		{"port in use", func() error { _, err := c.AddForwards(ctx, []string{"1:1"}); return err }, "host port 1/tcp"},
		{"no specs", func() error { _, err := c.AddForwards(ctx, nil); return err }, "no forwards"},
		{"unknown forward", func() error { return c.RemoveForward(ctx, "9:9") }, "no such forward"},
		{"bad filter", func() error { _, err := c.Capture(ctx, CaptureRequest{Filter: "bogus"}); return err }, "not in the fake"},
		{"unknown path", func() error { return c.do(ctx, http.MethodGet, "/v2/info", nil, nil) }, "no such endpoint"},
		{"bad query", func() error { return c.do(ctx, http.MethodGet, "/v1/sockets?processes=maybe", nil, nil) }, "processes"},
		{"bad side", func() error { _, err := c.Sockets(ctx, SocketQuery{Side: "host"}); return err }, `bad side="host"`},
		{"bad count", func() error { return c.do(ctx, http.MethodGet, "/v1/capture?count=-1", nil, nil) }, "count"},
		{"bad json", func() error { return rawPost(ctx, s.Path(), "/v1/forwards", "{not json") }, "decode"},
		{"unknown field", func() error { return rawPost(ctx, s.Path(), "/v1/forwards", `{"spec":"1:1"}`) }, "unknown field"},
	} {
		err := tc.do()
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.mention)
		}
	}
	if _, err := c.Info(ctx); err != nil {
		t.Errorf("server stopped answering after bad requests: %v", err)
	}
}

func rawPost(ctx context.Context, sock, path, body string) error {
	c := NewClient(sock)
	defer c.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://x"+path, strings.NewReader(body))
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		b, _ := io.ReadAll(resp.Body)
		return errors.New("accepted: " + string(b))
	}
	return responseError(resp)
}

func TestListAndStaleSockets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tunstack")
	serve(t, dir, "alpha")
	serve(t, dir, "beta")
	// A dead instance's socket: bound, then its listener gone.
	stale := SocketPath(dir, "dead")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	infos, err := List(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Name != "alpha" || infos[1].Name != "beta" {
		t.Errorf("List: %+v", infos)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale socket %s not removed (%v)", stale, err)
	}
	if _, err := Connect(t.Context(), dir, ""); err == nil || !strings.Contains(err.Error(), "alpha, beta") {
		t.Errorf("Connect without a name among two: %v", err)
	}
	if _, err := Listen(ServerConfig{Path: SocketPath(dir, "alpha"), Backend: &fakeBackend{}}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second instance named alpha: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{"web": true, "ts-123": true, "a.b_c": true, "": false, ".hidden": false,
		"-x": false, "a/b": false, "a b": false, strings.Repeat("x", 65): false} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
	}
}

func TestCaptureStreamCount(t *testing.T) {
	// A real tap: the stream carries pcap and ends after Count packets.
	tap := capture.NewEndpoint(nil)
	b := &tapBackend{fakeBackend{name: "cap"}, tap}
	dir := filepath.Join(t.TempDir(), "tunstack")
	s, err := Listen(ServerConfig{Path: SocketPath(dir, "cap"), Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := NewClient(s.Path())
	defer c.Close()
	if _, err := c.Capture(t.Context(), CaptureRequest{Filter: "tcp and"}); err == nil || !strings.Contains(err.Error(), "ends early") {
		t.Errorf("bad filter: %v", err)
	}
	stream, err := c.Capture(t.Context(), CaptureRequest{Filter: "udp", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	pr, err := capture.NewPcapReader(stream)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 4 {
			time.Sleep(20 * time.Millisecond)
			tap.Offer(udpPacket(), capture.In)
		}
	}()
	for i := range 2 {
		if _, err := pr.Next(); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if _, err := pr.Next(); err != io.EOF {
		t.Errorf("after Count packets: %v, want EOF", err)
	}
}

type tapBackend struct {
	fakeBackend
	tap *capture.Endpoint
}

func (b *tapBackend) Capture(req CaptureRequest) (CaptureStream, error) {
	f, err := capture.ParseFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	return b.tap.Subscribe(f, req.SnapLen, 0), nil
}

func udpPacket() []byte {
	p := make([]byte, 28)
	p[0], p[9] = 0x45, 17
	p[3] = 28
	copy(p[12:], []byte{10, 0, 2, 100, 10, 0, 2, 3})
	p[20], p[21], p[22], p[23] = 0x13, 0x88, 0, 53
	return p
}
