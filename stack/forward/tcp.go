package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/relay"
)

// dialTimeout bounds the stack's connect to the sandbox (a silent
// sandbox, or a firewall dropping the SYN).
const dialTimeout = 20 * time.Second

func (f *fwd) listenTCP() error {
	for _, a := range f.spec.hostAddrs() {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("forward %s: host port %d/tcp: %w", f.spec, f.spec.HostPort, err)
		}
		f.lns = append(f.lns, ln)
	}
	f.serveListeners()
	return nil
}

func (f *fwd) serveListeners() {
	for _, ln := range f.lns {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.acceptLoop(ln)
		}()
	}
}

func (f *fwd) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.ctx.Err() == nil {
				f.m.log.Warn("forward: accept failed; forward stopped", "forward", f.spec.String(), "err", err)
			}
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.serveTCP(c)
		}()
	}
}

// serveTCP connects the stack to the sandbox port from the client's
// address and relays until both directions end.
func (f *fwd) serveTCP(client net.Conn) {
	f.active.Add(1)
	f.total.Add(1)
	defer f.active.Add(-1)
	defer client.Close()
	src, dst, _ := f.m.source(addrPortOf(client.RemoteAddr()))
	dst = netip.AddrPortFrom(dst.Addr(), f.spec.SandboxPort)
	ctx, cancel := context.WithTimeout(f.ctx, dialTimeout)
	guest, err := f.m.dialTCP(ctx, src, dst)
	if err != nil && src.Port() != 0 {
		// The client's port may be taken on that address in the stack
		// (another forward, a relayed flow); any port will do.
		guest, err = f.m.dialTCP(ctx, netip.AddrPortFrom(src.Addr(), 0), dst)
	}
	cancel()
	if err != nil {
		f.m.log.Debug("forward: connect to sandbox failed", "forward", f.spec.String(), "src", src, "dst", dst, "err", err)
		if tc, ok := client.(*net.TCPConn); ok {
			tc.SetLinger(0) // the client sees the refusal as a reset
		}
		return
	}
	if !f.track(guest) {
		guest.Close()
		return
	}
	defer f.untrack(guest)
	defer guest.Close()
	bridge(client, guest)
}

func (m *Manager) dialTCP(ctx context.Context, src, dst netip.AddrPort) (*gonet.TCPConn, error) {
	proto := tcpip.NetworkProtocolNumber(header.IPv4ProtocolNumber)
	if dst.Addr().Is6() {
		proto = header.IPv6ProtocolNumber
	}
	local := stack.FullAddr(src)
	local.NIC = m.cfg.NIC
	remote := stack.FullAddr(dst)
	remote.NIC = m.cfg.NIC
	return gonet.DialTCPWithBind(ctx, m.cfg.Stack.GVisor(), local, remote, proto)
}

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// bridge copies both ways; EOF on one side half-closes the other.
func bridge(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(b, a)
	}()
	copyHalf(a, b)
	<-done
}

func copyHalf(dst, src net.Conn) {
	// relay.Copy, not io.Copy: 32 KiB writes into gVisor halved a
	// forward's host→sandbox throughput (bench, docs/PERFORMANCE.md).
	err := relay.Copy(dst, src)
	if hc, ok := dst.(halfCloser); ok && err == nil {
		hc.CloseWrite()
		return
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		dst.Close()
		src.Close()
		return
	}
	dst.Close()
}
