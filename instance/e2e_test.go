package instance

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/sandbox"
	"github.com/tunstack/tunstack/stack/forward"
	"github.com/tunstack/tunstack/stack/gateway"
)

// helperEnv makes the test binary a server that answers each connection
// on :8080 with the peer address it saw.
const helperEnv = "TUNSTACK_INSTANCE_TEST_HELPER"

func TestMain(m *testing.M) {
	if sandbox.IsChild() {
		sandbox.ChildMain()
		return
	}
	if addr, ok := strings.CutPrefix(os.Getenv(helperEnv), "client:"); ok {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			os.Exit(3)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print(line)
		os.Exit(0)
	}
	if os.Getenv(helperEnv) == "peer-server" {
		ln, err := net.Listen("tcp", ":8080")
		if err != nil {
			os.Exit(3)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(0)
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}
	os.Exit(m.Run())
}

// needTUN skips without the means to create sandboxes, unless
// TUNSTACK_REQUIRE_TUN=1 makes that a failure.
func needTUN(t *testing.T, root bool) {
	t.Helper()
	why := ""
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		why = "no usable /dev/net/tun: " + err.Error()
	} else {
		f.Close()
	}
	if root && os.Geteuid() != 0 {
		why = "needs root (creates a network namespace and a veth pair)"
	}
	if why == "" {
		return
	}
	if os.Getenv("TUNSTACK_REQUIRE_TUN") == "1" {
		t.Fatalf("TUNSTACK_REQUIRE_TUN=1 but %s", why)
	}
	t.Skip(why)
}

func testConfig(t *testing.T, command ...string) Config {
	v4, _ := gateway.AddressesFor(gateway.DefaultCIDR)
	v6, _ := gateway.AddressesFor(gateway.DefaultCIDR6)
	return Config{
		Name: "e2e", Command: command, V4: v4, V6: v6, MTU: 65520, TxQueueLen: 1000,
		DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")},
		ControlDir:   filepath.Join(t.TempDir(), "ctl"),
	}
}

// TestSSFindsCurlAndCaptureSeesHandshake: ss -p names the sandbox's curl
// for its relayed connection, and the capture stream, read back by real
// tcpdump, shows the handshake.
func TestSSFindsCurlAndCaptureSeesHandshake(t *testing.T) {
	needTUN(t, false)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("start\n"))
		w.(http.Flusher).Flush()
		<-release // hold the connection open while the test looks
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	in, err := Start(testConfig(t, "curl", "-s", "-o", "/dev/null", fmt.Sprintf("http://10.0.2.2:%d/", port)))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	c := control.NewClient(in.ControlPath())
	defer c.Close()
	stream, err := c.Capture(t.Context(), control.CaptureRequest{Filter: fmt.Sprintf("tcp port %d", port)})
	if err != nil {
		t.Fatal(err)
	}
	var pcap strings.Builder
	captured := make(chan struct{})
	go func() {
		defer close(captured)
		io.Copy(&pcap, stream)
	}()
	done := make(chan int, 1)
	go func() {
		code, _ := in.Run(nil)
		done <- code
	}()

	var found bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !found; time.Sleep(50 * time.Millisecond) {
		socks, err := c.Sockets(t.Context(), control.SocketQuery{Processes: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			if s.Netid == "tcp" && s.State == "ESTAB" && s.Local.Port() == uint16(port) && len(s.Processes) > 0 {
				found = true
				p := s.Processes[0]
				if p.Command != "curl" || p.PID != in.Sandbox.Pid() {
					t.Errorf("ss -p names %+v, want curl with pid %d", p, in.Sandbox.Pid())
				}
				if s.Peer.Addr() != netip.MustParseAddr("10.0.2.100") {
					t.Errorf("peer %v, want the sandbox 10.0.2.100", s.Peer)
				}
			}
		}
	}
	if !found {
		t.Error("ss -p never listed curl's connection")
	}
	close(release)
	if code := <-done; code != 0 {
		t.Errorf("curl exited %d", code)
	}
	time.Sleep(200 * time.Millisecond) // the FINs
	stream.Close()
	<-captured
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		cmd := exec.Command(tcpdump, "-nr", "-")
		cmd.Stdin = strings.NewReader(pcap.String())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tcpdump -r: %v", err)
		}
		if !strings.Contains(string(out), "Flags [S]") || !strings.Contains(string(out), "Flags [S.]") {
			t.Errorf("tcpdump shows no handshake:\n%s", out)
		}
	}
}

// TestForwardSeesRealClient: a client in another network namespace,
// behind a veth pair, reaches a sandbox server through a forward, and the
// server sees the client's own address.
func TestForwardSeesRealClient(t *testing.T) {
	needTUN(t, true)
	ns := fmt.Sprintf("tsfwd%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	defer exec.Command("ip", "netns", "del", ns).Run()
	veth := fmt.Sprintf("tsv%d", os.Getpid()%100000)
	run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	defer exec.Command("ip", "link", "del", veth).Run()
	run("ip", "addr", "add", "198.18.0.1/30", "dev", veth)
	run("ip", "link", "set", veth, "up")
	run("ip", "-n", ns, "addr", "add", "198.18.0.2/30", "dev", "eth0")
	run("ip", "-n", ns, "link", "set", "eth0", "up")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "env", helperEnv+"=peer-server", self)
	cfg.Forwards, _ = forward.ParseSpec("198.18.0.1:18090:8080")
	in, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	go in.Run(nil)
	defer in.Sandbox.Kill()

	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command("ip", "netns", "exec", ns, "env", helperEnv+"=client:198.18.0.1:18090", self).Output()
		if err == nil && len(out) > 0 {
			got = strings.TrimSpace(string(out))
			break
		}
	}
	if !strings.HasPrefix(got, "198.18.0.2:") {
		t.Errorf("the sandbox server saw %q, want the client 198.18.0.2:PORT", got)
	}
	// A port in use is reported, naming it, and changes nothing.
	if _, err := in.Forwards.Add(cfg.Forwards); err == nil {
		t.Error("adding the same forward twice succeeded")
	}
	busy, err := net.Listen("tcp", "198.18.0.1:18091")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	specs, _ := forward.ParseSpec("198.18.0.1:18091:8080")
	if _, err := in.Forwards.Add(specs); err == nil || !strings.Contains(err.Error(), "18091") {
		t.Errorf("port in use: %v", err)
	}
	if n := len(in.Forwards.List()); n != 1 {
		t.Errorf("%d forwards after a failed add, want 1", n)
	}
}
