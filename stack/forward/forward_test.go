package forward

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"

	"github.com/tunstack/tunstack/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	sandboxAddr = netip.MustParseAddr("10.0.2.100")
	gatewayAddr = netip.MustParseAddr("10.0.2.2")
)

// pair is a tunstack-like gateway stack and a "sandbox" stack joined by an
// in-memory link, with a Manager on the gateway.
func pair(t *testing.T) (*Manager, *stack.Stack) {
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
	nic, err := gw.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: a, Promiscuous: true, Spoofing: true,
		Addresses: []netip.Prefix{netip.PrefixFrom(gatewayAddr, 24)}})
	if err != nil {
		t.Fatal(err)
	}
	gw.AddDefaultRoutes(nic)
	snic, err := sb.AddNIC(stack.NICConfig{Name: "eth0", Endpoint: b, Addresses: []netip.Prefix{netip.PrefixFrom(sandboxAddr, 24)}})
	if err != nil {
		t.Fatal(err)
	}
	sb.AddDefaultRoutes(snic)
	m, err := New(Config{Stack: gw, NIC: nic, V4: Target{Sandbox: sandboxAddr, Gateway: gatewayAddr}, UDPIdleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		gw.Close()
		sb.Close()
	})
	return m, sb
}

// echoServer answers each line on port with "PEER line" from the sandbox
// stack, so a test sees the source address the server saw.
func echoServer(t *testing.T, sb *stack.Stack, port uint16) {
	t.Helper()
	ln, err := gonet.ListenTCP(sb.GVisor(), tcpip.FullAddress{Port: port}, header.IPv4ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s %s", c.RemoteAddr(), line)
				}
			}()
		}
	}()
}

func freePort(t *testing.T, network string) uint16 {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestTCPForwardShowsClientAsGateway(t *testing.T) {
	m, sb := pair(t)
	echoServer(t, sb, 8080)
	hp := freePort(t, "tcp")
	specs, _ := ParseSpec(fmt.Sprintf("127.0.0.1:%d:8080", hp))
	if _, err := m.Add(specs); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, "hello")
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	// A loopback client keeps its port and appears as the gateway.
	want := fmt.Sprintf("10.0.2.2:%d hello\n", c.LocalAddr().(*net.TCPAddr).Port)
	if got != want {
		t.Errorf("server saw %q, want %q", got, want)
	}
	if l := m.List(); len(l) != 1 || l[0].Total != 1 {
		t.Errorf("List: %+v", l)
	}

	// In use: reported naming the port; nothing else changes.
	if _, err := m.Add(specs); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate add: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bp := busy.Addr().(*net.TCPAddr).Port
	two, _ := ParseSpec(fmt.Sprintf("127.0.0.1:%d:9000", freePort(t, "tcp")))
	bad, _ := ParseSpec(fmt.Sprintf("127.0.0.1:%d:9001", bp))
	_, err = m.Add(append(two, bad...))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("host port %d/tcp", bp)) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("port in use: %v", err)
	}
	if l := m.List(); len(l) != 1 {
		t.Errorf("a failed add left forwards behind: %+v", l)
	}

	if err := m.Remove(fmt.Sprintf("127.0.0.1:%d:8080", hp)); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hp)); err == nil {
		c.Close()
		t.Error("removed forward still accepts")
	}
}

func TestUDPForwardRoundTrip(t *testing.T) {
	m, sb := pair(t)
	pc, err := gonet.DialUDP(sb.GVisor(), &tcpip.FullAddress{Port: 5353}, nil, header.IPv4ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(from.String()+" "), buf[:n]...), from)
		}
	}()
	hp := freePort(t, "udp")
	specs, _ := ParseSpec(fmt.Sprintf("127.0.0.1:%d:5353/udp", hp))
	if _, err := m.Add(specs); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", hp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("10.0.2.2:%d ping", c.LocalAddr().(*net.UDPAddr).Port)
	if string(buf[:n]) != want {
		t.Errorf("reply %q, want %q", buf[:n], want)
	}
}

func TestSource(t *testing.T) {
	v4 := Target{Sandbox: sandboxAddr, Gateway: gatewayAddr}
	v6 := Target{Sandbox: netip.MustParseAddr("fd00::100"), Gateway: netip.MustParseAddr("fd00::2")}
	both := &Manager{cfg: Config{V4: v4, V6: v6}}
	only4 := &Manager{cfg: Config{V4: v4}}
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		m              *Manager
		client         netip.AddrPort
		wantSrc, wantD string
	}{
		{both, ap("198.18.0.2:5000"), "198.18.0.2:5000", "10.0.2.100:0"},
		{both, ap("[::ffff:198.18.0.2]:5000"), "198.18.0.2:5000", "10.0.2.100:0"},
		{both, ap("127.0.0.1:5000"), "10.0.2.2:5000", "10.0.2.100:0"},
		{both, ap("[::1]:5000"), "[fd00::2]:5000", "[fd00::100]:0"},
		{both, ap("[2001:db8::1]:7"), "[2001:db8::1]:7", "[fd00::100]:0"},
		{only4, ap("[2001:db8::1]:7"), "10.0.2.2:0", "10.0.2.100:0"},
		{both, netip.AddrPort{}, "10.0.2.2:0", "10.0.2.100:0"}, // unix socket client
	} {
		src, dst, _ := tc.m.source(tc.client)
		if src.String() != tc.wantSrc || dst.String() != tc.wantD {
			t.Errorf("source(%v) = %v → %v, want %s → %s", tc.client, src, dst, tc.wantSrc, tc.wantD)
		}
	}
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "8080:80", want: []string{"8080:80/tcp"}},
		{in: "8080:80/udp", want: []string{"8080:80/udp"}},
		{in: "127.0.0.1:8080:80/tcp", want: []string{"127.0.0.1:8080:80/tcp"}},
		{in: "[::1]:8080:80", want: []string{"[::1]:8080:80/tcp"}},
		{in: "8000-8002:9000-9002", want: []string{"8000:9000/tcp", "8001:9001/tcp", "8002:9002/tcp"}},
		{in: "/run/app.sock:8080", want: []string{"/run/app.sock:8080/tcp"}},
		{in: "8080", err: "want [HOSTIP:]"},
		{in: "8080:80/sctp", err: `protocol "sctp"`},
		{in: "8080:0", err: "not a port"},
		{in: "70000:80", err: "not a port"},
		{in: "8000-8002:9000-9001", err: "differ in length"},
		{in: "9-8:9-8", err: "ends before"},
		{in: "bogus:8080:80", err: `host address "bogus"`},
		{in: "/run/app.sock:8080/udp", err: "stream"},
	} {
		specs, err := ParseSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSpec(%q) error %v, want one mentioning %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		var got []string
		for _, s := range specs {
			got = append(got, s.String())
			if again, err := ParseSpec(s.String()); err != nil || again[0] != s {
				t.Errorf("ParseSpec(%q) does not round-trip: %v %v", s, again, err)
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ParseSpec(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
