package slirp4netns

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/forward"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	guest   = netip.MustParseAddr("10.0.2.100")
	gateway = netip.MustParseAddr("10.0.2.2")
)

// apiServer serves an API whose forwards (a real forward.Manager) reach a
// sandbox stack joined to the gateway stack by an in-memory link, where a
// server on port 80 answers each connection with the peer it saw.
func apiServer(t *testing.T) string {
	t.Helper()
	gw, err := stack.New(stack.Options{NoLocalDelivery: true})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := pipe.New("", "", 1500)
	nic, err := gw.AddNIC(stack.NICConfig{Name: "tap0", Endpoint: a, Promiscuous: true, Spoofing: true,
		Addresses: []netip.Prefix{netip.PrefixFrom(gateway, 24)}})
	if err != nil {
		t.Fatal(err)
	}
	gw.AddDefaultRoutes(nic)
	snic, err := sb.AddNIC(stack.NICConfig{Name: "eth0", Endpoint: b, Addresses: []netip.Prefix{netip.PrefixFrom(guest, 24)}})
	if err != nil {
		t.Fatal(err)
	}
	sb.AddDefaultRoutes(snic)
	m, err := forward.New(forward.Config{Stack: gw, NIC: nic, V4: forward.Target{Sandbox: guest, Gateway: gateway}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := gonet.ListenTCP(sb.GVisor(), tcpip.FullAddress{Port: 80}, header.IPv4ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "peer %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	path := filepath.Join(t.TempDir(), "api.sock")
	srv, err := Listen(path, NewAPI(m, guest, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		ln.Close()
		m.Close()
		gw.Close()
		sb.Close()
	})
	return path
}

// call sends one request as rootlesskit and podman do (write, half-close,
// read to EOF) and returns the reply.
func call(t *testing.T, path, req string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read reply to %s: %v", req, err)
	}
	return string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestAPIForwards(t *testing.T) {
	path := apiServer(t)
	p1, p2 := freePort(t), freePort(t)
	add := func(port int) string {
		return call(t, path, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"10.0.2.100","guest_port":80}}`+"\n", port))
	}
	if got := add(p1); got != `{"return":{"id":1}}` {
		t.Fatalf("add_hostfwd: %s", got)
	}
	// podman's form: no guest_addr, a trailing newline.
	if got := call(t, path, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_port":80}}`+"\n", p2)); got != `{"return":{"id":2}}` {
		t.Fatalf("add_hostfwd without guest_addr: %s", got)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p1))
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "peer 10.0.2.2:") {
		t.Fatalf("server behind the forward saw %q, want the loopback client as the gateway", line)
	}
	want := fmt.Sprintf(`{"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"10.0.2.100","guest_port":80},`+
		`{"id":2,"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"10.0.2.100","guest_port":80}]}`, p1, p2)
	if got := call(t, path, `{"execute":"list_hostfwd"}`); got != want {
		t.Fatalf("list_hostfwd:\n got %s\nwant %s", got, want)
	}
	if got := call(t, path, `{"execute":"remove_hostfwd","arguments":{"id":1}}`); got != `{"return":{}}` {
		t.Fatalf("remove_hostfwd: %s", got)
	}
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p1)); err == nil {
		t.Fatalf("port %d still open after remove_hostfwd", p1)
	}
	if got := call(t, path, `{"execute":"remove_hostfwd","arguments":{"id":1}}`); got != `{"error":{"desc":"bad request: remove_hostfwd: bad arguments.id"}}` {
		t.Fatalf("second remove_hostfwd: %s", got)
	}
	// Ids are never reused.
	if got := add(p1); got != `{"return":{"id":3}}` {
		t.Fatalf("add_hostfwd after remove: %s", got)
	}
	// The port is taken now.
	if got := add(p1); got != `{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}` {
		t.Fatalf("add_hostfwd of a taken port: %s", got)
	}
}

func TestAPIBadRequests(t *testing.T) {
	path := apiServer(t)
	tests := []struct{ req, desc string }{
		{`not json`, "cannot parse JSON"},
		{``, "cannot parse JSON"},
		{`[1,2]`, "json_object() failed"},
		{`{}`, "no execute found"},
		{`{"execute":42}`, "no execute found"},
		{`{"execute":"reboot"}`, "unknown execute"},
		{`{"execute":"add_hostfwd"}`, "add_hostfwd: bad arguments.proto"},
		{`{"execute":"add_hostfwd","arguments":{"host_port":8080,"guest_port":80}}`, "add_hostfwd: bad arguments.proto"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":8080,"guest_port":80}}`, "add_hostfwd: bad arguments.proto"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":8080,"guest_port":80}}`, "add_hostfwd: bad arguments.host_addr"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"x","host_port":8080,"guest_port":80}}`, "add_hostfwd: bad arguments.host_addr"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","guest_port":80}}`, "add_hostfwd: bad arguments.host_port"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":"8080","guest_port":80}}`, "add_hostfwd: bad arguments.host_port"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":70000,"guest_port":80}}`, "add_hostfwd: bad arguments.host_port"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_addr":"fd00::100","guest_port":80}}`, "add_hostfwd: bad arguments.guest_addr"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080}}`, "add_hostfwd: bad arguments.guest_port"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_addr":"10.0.2.50","guest_port":80}}`, "add_hostfwd: slirp_add_hostfwd failed"},
		{`{"execute":"remove_hostfwd"}`, "remove_hostfwd: bad arguments.id"},
		{`{"execute":"remove_hostfwd","arguments":{"id":"1"}}`, "remove_hostfwd: bad arguments.id"},
		{strings.Repeat(" ", maxRequest) + "{}", "too large message"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			want := fmt.Sprintf(`{"error":{"desc":"bad request: %s"}}`, tc.desc)
			if got := call(t, path, tc.req); got != want {
				t.Fatalf("%.80s:\n got %s\nwant %s", tc.req, got, want)
			}
		})
	}
	if got := call(t, path, `{"execute":"list_hostfwd"}`); got != `{"entries":[]}` {
		t.Fatalf("after bad requests, list_hostfwd = %s", got)
	}
}

// TestAPIRequestWithoutHalfClose: a client that keeps its end open gets
// its answer once the request is a complete JSON value.
func TestAPIRequestWithoutHalfClose(t *testing.T) {
	path := apiServer(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, `{"execute":"list_hostfwd"}`)
	b, err := io.ReadAll(c)
	if err != nil || string(b) != `{"entries":[]}` {
		t.Fatalf("reply %q, %v", b, err)
	}
}
