package control

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fdBackend hands out one end of a socketpair whose other end says hello.
type fdBackend struct {
	fakeBackend
}

func (f *fdBackend) FD(ctx context.Context, req FDRequest) (*os.File, FDInfo, error) {
	switch req.Addr {
	case "refused:1":
		return nil, FDInfo{}, errors.New("connect: connection refused")
	case "bad":
		return nil, FDInfo{}, &RequestError{Err: errors.New(`address "bad": missing port`)}
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, FDInfo{}, err
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	peer.Write([]byte("hello " + req.Op + " " + req.Addr))
	peer.Close()
	return os.NewFile(uintptr(fds[0]), "ours"), FDInfo{Local: "10.0.2.2:1234", Remote: req.Addr}, nil
}

func TestFDHandover(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tunstack")
	s, err := Listen(ServerConfig{Path: SocketPath(dir, "fd"), Backend: &fdBackend{fakeBackend{name: "fd"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	c := NewClient(s.Path())
	defer c.Close()
	for i := 0; i < 3; i++ { // repeated: no fd or connection is left behind
		f, info, err := c.FD(ctx, FDRequest{Op: FDConnect, Addr: "10.0.2.100:80"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(b) != "hello connect 10.0.2.100:80" {
			t.Fatalf("read %q, %v", b, err)
		}
		if info.Local != "10.0.2.2:1234" || info.Remote != "10.0.2.100:80" {
			t.Errorf("info %+v", info)
		}
	}

	// Bad requests get an error and the server keeps serving.
	for _, tc := range []struct {
		name    string
		do      func() error
		mention string
	}{
		{"unknown op", func() error { _, _, err := c.FD(ctx, FDRequest{Op: "bind", Addr: "1:1"}); return err }, `op "bind"`},
		{"backend error", func() error { _, _, err := c.FD(ctx, FDRequest{Op: FDConnect, Addr: "refused:1"}); return err }, "refused"},
		{"bad address", func() error { _, _, err := c.FD(ctx, FDRequest{Op: FDListen, Addr: "bad"}); return err }, "missing port"},
		{"bad json", func() error { return rawPost(ctx, s.Path(), "/v1/fd", "{not json") }, "decode"},
		{"unknown field", func() error { return rawPost(ctx, s.Path(), "/v1/fd", `{"op":"connect","port":1}`) }, "unknown field"},
	} {
		err := tc.do()
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.mention)
		}
	}
	if in, err := c.Info(ctx); err != nil || in.Name != "fd" {
		t.Fatalf("Info after bad requests: %+v, %v", in, err)
	}
	f, _, err := c.FD(ctx, FDRequest{Op: FDUDP, Addr: "10.0.2.100:53"})
	if err != nil {
		t.Fatalf("FD after bad requests: %v", err)
	}
	f.Close()
}

func TestFDNotSupported(t *testing.T) {
	s := serve(t, filepath.Join(t.TempDir(), "tunstack"), "plain")
	c := NewClient(s.Path())
	defer c.Close()
	_, _, err := c.FD(t.Context(), FDRequest{Op: FDConnect, Addr: ":80"})
	if err == nil || !strings.Contains(err.Error(), "does not hand out") {
		t.Fatalf("error %v, want one saying the instance does not hand out fds", err)
	}
}
