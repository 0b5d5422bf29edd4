package egress_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/gateway"
	"github.com/tunstack/tunstack/stack/relay"
)

// stat returns the named limit of gw.
func stat(t *testing.T, gw *gateway.Gateway, name string) relay.LimitStat {
	t.Helper()
	for _, s := range gw.Stats() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no limit %q in %+v", name, gw.Stats())
	return relay.LimitStat{}
}

// holdServer accepts connections on the host's loopback and holds them
// open until the test ends.
func holdServer(t *testing.T) netip.AddrPort {
	port := hostListener(t, "tcp", func(c net.Conn) {
		go func() {
			defer c.Close()
			c.Read(make([]byte, 1)) // until the peer goes
		}()
	})
	return netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port))
}

// dialFor dials with its own deadline and returns the error.
func dialFor(sb *stack.Stack, network string, addr netip.AddrPort, d time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return sb.DialContext(ctx, network, addr.String())
}

// TestTCPFlowCap: past the cap a new connection fails at once with
// EHOSTUNREACH (ICMP administratively prohibited), the refusal is
// counted, and a slot freed by a closed flow is usable again.
func TestTCPFlowCap(t *testing.T) {
	tests := []struct {
		name    string
		limits  gateway.Limits
		counter string
		// wantErr is the error past the bound; nil means a timeout.
		wantErr error
	}{
		{"flow cap is prohibited", gateway.Limits{TCPFlows: 2}, "tcp-flows", syscall.EHOSTUNREACH},
		{"fd budget is a lost SYN, not a refusal", gateway.Limits{HostFDs: 2}, "host-fds", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, gw := sandboxWith(t, gateway.Config{Dialer: loopbackDialer(t), Limits: tt.limits})
			srv := holdServer(t)
			var held []net.Conn
			for i := range 2 {
				c, err := dialFor(sb, "tcp", srv, 5*time.Second)
				if err != nil {
					t.Fatalf("connection %d within the bound: %v", i, err)
				}
				held = append(held, c)
			}
			start := time.Now()
			c, err := dialFor(sb, "tcp", srv, 1500*time.Millisecond)
			if err == nil {
				c.Close()
				t.Fatal("a connection past the bound succeeded")
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || time.Since(start) > time.Second {
					t.Fatalf("past the bound: %v after %v, want %v at once", err, time.Since(start), tt.wantErr)
				}
			} else if errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("past the bound: %v, want a timeout (never refused)", err)
			}
			if s := stat(t, gw, tt.counter); s.Dropped == 0 || s.InUse != 2 {
				t.Errorf("%s: %+v, want 2 in use and a drop counted", tt.counter, s)
			}
			held[0].Close()
			deadline := time.Now().Add(5 * time.Second)
			for stat(t, gw, tt.counter).InUse != 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			c, err = dialFor(sb, "tcp", srv, 5*time.Second)
			if err != nil {
				t.Fatalf("after a flow closed, a new one: %v", err)
			}
			c.Close()
			held[1].Close()
		})
	}
}

// TestHostEMFILEIsNotRefused: a host dial failing with EMFILE is a lost
// SYN for the sandbox (it times out and may retry), and the fd counter
// counts it.
func TestHostEMFILEIsNotRefused(t *testing.T) {
	sb, gw := sandboxWith(t, gateway.Config{Dialer: dialerFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.EMFILE}
	})})
	_, err := dialFor(sb, "tcp", netip.MustParseAddrPort("10.0.2.2:80"), 1500*time.Millisecond)
	if errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial while the host is out of fds: %v, want a timeout", err)
	}
	if s := stat(t, gw, "host-fds"); s.Dropped == 0 {
		t.Errorf("host-fds: %+v, want the EMFILE dials counted", s)
	}
}

type dialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// TestUDPFlowCap: datagrams of a flow past the cap are dropped and
// counted; flows within it are served.
func TestUDPFlowCap(t *testing.T) {
	sb, gw := sandboxWith(t, gateway.Config{Dialer: loopbackDialer(t), Limits: gateway.Limits{UDPFlows: 2}})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go udpEchoServer(pc)
	dst := netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(pc.LocalAddr().(*net.UDPAddr).Port))
	answered := 0
	for i := range 3 {
		c, err := dialFor(sb, "udp", dst, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Read(make([]byte, 16)); err == nil {
			answered++
		} else if i < 2 {
			t.Fatalf("flow %d within the cap: %v", i, err)
		}
	}
	if answered != 2 {
		t.Errorf("%d flows answered, want 2 (the cap)", answered)
	}
	if s := stat(t, gw, "udp-flows"); s.Dropped != 1 || s.InUse != 2 {
		t.Errorf("udp-flows: %+v, want 2 in use and 1 dropped", s)
	}
}

func udpEchoServer(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}
