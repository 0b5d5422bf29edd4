package egress_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/egress"
	"github.com/tunstack/tunstack/stack/gateway"
	"github.com/tunstack/tunstack/stack/hostsock"
	"github.com/tunstack/tunstack/stack/stacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sandbox returns a stack playing the sandbox (10.0.2.100, default route to
// the gateway) joined by an in-memory link to a gateway stack whose egress
// reaches only the host's loopback.
func sandbox(t testing.TB) *stack.Stack {
	t.Helper()
	sb, _ := sandboxWith(t, gateway.Config{Dialer: loopbackDialer(t)})
	return sb
}

// loopbackDialer reaches only loopback, through a hostsock.Poller (the
// host path egress takes by default) stopped when the test ends.
func loopbackDialer(t testing.TB) *egress.LoopbackDialer {
	t.Helper()
	p, err := hostsock.NewPoller()
	if err != nil {
		t.Fatalf("hostsock.NewPoller: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return &egress.LoopbackDialer{TCP: p}
}

// sandboxWith is sandbox with a gateway configured by cfg (addresses are
// filled in).
func sandboxWith(t testing.TB, cfg gateway.Config) (*stack.Stack, *gateway.Gateway) {
	t.Helper()
	a, b := pipe.New("", "", 65520)
	return sandboxOn(t, cfg, a, b)
}

// sandboxOn is sandboxWith on the link a (sandbox side) - b (gateway side).
func sandboxOn(t testing.TB, cfg gateway.Config, a, b gstack.LinkEndpoint) (*stack.Stack, *gateway.Gateway) {
	t.Helper()
	stacktest.CheckLeaks(t)
	sb, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	nic, err := sb.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: a, Addresses: []netip.Prefix{
		netip.MustParsePrefix("10.0.2.100/24"), netip.MustParsePrefix("fd00::100/64")}})
	if err != nil {
		t.Fatal(err)
	}
	sb.AddDefaultRoutes(nic)

	gs, err := stack.New(stack.Options{NoLocalDelivery: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gs.Close() })
	gnic, err := gs.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: b, Promiscuous: true, Spoofing: true, Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.V4, _ = gateway.AddressesFor(gateway.DefaultCIDR)
	cfg.V6, _ = gateway.AddressesFor(gateway.DefaultCIDR6)
	gw, err := gateway.Start(gs, gnic, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return sb, gw
}

// hostListener listens on the host's loopback and serves each connection
// with handle until the test ends.
func hostListener(t testing.TB, network string, handle func(net.Conn)) int {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

func dial(t *testing.T, sb *stack.Stack, network string, addr netip.AddrPort) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return sb.DialContext(ctx, network, addr.String())
}

func TestTransferIntact(t *testing.T) {
	sb := sandbox(t)
	data := make([]byte, 8<<20)
	rand.Read(data)
	port := hostListener(t, "tcp", func(c net.Conn) {
		defer c.Close()
		io.Copy(c, c) // echo
	})
	c, err := dial(t, sb, "tcp", netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(data)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echoed %d bytes, sent %d: contents differ", len(got), len(data))
	}
}

func TestHalfClosePassesThrough(t *testing.T) {
	for _, network := range []string{"tcp", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			sb := sandbox(t)
			port := hostListener(t, network, func(c net.Conn) {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c) // to the sandbox's FIN
				c.Write([]byte("bye after " + itoa(n)))
			})
			gw := netip.MustParseAddr("10.0.2.2")
			if network == "tcp6" {
				gw = netip.MustParseAddr("fd00::2")
			}
			c, err := dial(t, sb, network, netip.AddrPortFrom(gw, uint16(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("hello"))
			c.(interface{ CloseWrite() error }).CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "bye after 5" {
				t.Fatalf("after half-close got %q, %v; want the host's reply then EOF", got, err)
			}
		})
	}
}

func TestHostResetReachesSandbox(t *testing.T) {
	sb := sandbox(t)
	port := hostListener(t, "tcp", func(c net.Conn) {
		buf := make([]byte, 1)
		c.Read(buf)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	c, err := dial(t, sb, "tcp", netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the host reset: %v, want ECONNRESET", err)
	}
}

func TestSandboxResetReachesHost(t *testing.T) {
	sb := sandbox(t)
	got := make(chan error, 1)
	port := hostListener(t, "tcp", func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		got <- err
	})
	c, err := dial(t, sb, "tcp", netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("x"))
	so := c.(*stack.TCPConn).Socket()
	so.SetSockOptLinger(&syscall.Linger{Onoff: 1, Linger: 0})
	c.Close()
	if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("host read after the sandbox reset: %v, want ECONNRESET", err)
	}
}

func TestDialOutcomes(t *testing.T) {
	sb := sandbox(t)
	closed := closedPort(t)
	tests := []struct {
		name string
		addr string
		want error
	}{
		{"closed host port is refused", "10.0.2.2:" + itoa(int64(closed)), syscall.ECONNREFUSED},
		{"closed host port over IPv6", "[fd00::2]:" + itoa(int64(closed)), syscall.ECONNREFUSED},
		{"DNS address serves only port 53", "10.0.2.3:80", syscall.ECONNREFUSED},
		{"empty sandbox address is unreachable", "10.0.2.77:80", syscall.EHOSTUNREACH},
		// The test dialer refuses all but loopback, standing in for a
		// host that refuses.
		{"host refusal of another address", "198.18.0.9:80", syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dial(t, sb, "tcp", netip.MustParseAddrPort(tt.addr))
			if err == nil {
				c.Close()
				t.Fatalf("dial %s succeeded, want %v", tt.addr, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("dial %s: %v, want %v", tt.addr, err, tt.want)
			}
		})
	}
}

func TestUDPFlow(t *testing.T) {
	sb := sandbox(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	c, err := dial(t, sb, "udp", netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for i := 0; i < 50; i++ {
		msg := "datagram " + itoa(int64(i))
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "echo:"+msg {
			t.Fatalf("datagram %d: got %q, %v", i, buf[:n], err)
		}
	}
}

func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestUDPClosedHostPortRefused: datagrams to a closed host port get an
// ICMP port unreachable back in the sandbox (a connected socket there
// reads ECONNREFUSED), as the closed port answers on a Linux host; the
// first datagram's included, though the forwarder claims it before the
// host has answered.
func TestUDPClosedHostPortRefused(t *testing.T) {
	sb := sandbox(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	for _, gw := range []string{"10.0.2.2", "fd00::2"} {
		t.Run(gw, func(t *testing.T) {
			c, err := dial(t, sb, "udp", netip.AddrPortFrom(netip.MustParseAddr(gw), uint16(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64)
			for i := 0; i < 3; i++ {
				c.Write([]byte("probe"))
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) && (err == nil || !strings.Contains(err.Error(), "refused")) {
					t.Fatalf("datagram %d to closed port %d: read %v, want connection refused", i+1, port, err)
				}
			}
		})
	}
}
