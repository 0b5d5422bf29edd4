package egress_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack"
)

// BenchmarkConnectRequestClose measures one small flow through the egress
// path in-process, as the crr row of make bench does through a sandbox: a
// connection from the sandbox stack to the gateway (reaching a server on
// the host's loopback), a 1-byte request and response, and close. It
// reports ns and allocations per flow; no root is needed.
func BenchmarkConnectRequestClose(b *testing.B) {
	sb := sandbox(b)
	port := hostListener(b, "tcp", func(c net.Conn) {
		go func() {
			defer c.Close()
			var buf [1]byte
			if _, err := io.ReadFull(c, buf[:]); err == nil {
				c.Write(buf[:])
			}
		}()
	})
	addr := netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port)).String()
	ctx := context.Background()
	var buf [1]byte
	b.ReportAllocs()
	for b.Loop() {
		crrOnce(ctx, b, sb, addr, buf[:])
	}
}

// crrOnce is one benchmark iteration: connect to addr through sb, send a
// byte, read the echo into buf, close.
func crrOnce(ctx context.Context, b *testing.B, sb *stack.Stack, addr string, buf []byte) {
	c, err := sb.DialContext(ctx, "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write([]byte{'x'}); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		b.Fatal(err)
	}
	c.Close()
}

// TestPortReuseAfterGatewayClose: a sandbox connection whose host side
// closed first leaves the gateway's endpoint in TIME_WAIT; a new
// connection from the same sandbox port right after must be served, not
// have its SYNs swallowed until TIME_WAIT ends (a minute with gVisor's
// default).
func TestPortReuseAfterGatewayClose(t *testing.T) {
	sb := sandbox(t)
	port := hostListener(t, "tcp", func(c net.Conn) {
		c.Write([]byte{'x'})
		c.Close()
	})
	raddr := netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port))
	d := &stack.Dialer{Stack: sb, LocalAddr: netip.MustParseAddrPort("10.0.2.100:40001")}
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := d.DialContext(ctx, "tcp", raddr.String())
		cancel()
		if err != nil {
			t.Fatalf("connection %d from port 40001: %v", i+1, err)
		}
		if b, err := io.ReadAll(c); err != nil || string(b) != "x" {
			t.Fatalf("connection %d: read %q, %v", i+1, b, err)
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
}
