package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

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
		f.conns.Go(func() { f.acceptLoop(ln) })
	}
}

func (f *fwd) acceptLoop(ln net.Listener) {
	var backoff relay.AcceptBackoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.ctx.Err() != nil {
				return
			}
			// Out of file descriptors (or another passing error): wait
			// and accept again; the forward never stops by itself.
			if !backoff.Failing() {
				f.m.log.Warn("forward: accept failed; retrying with back-off", "forward", f.spec.String(), "err", err)
			}
			if backoff.Wait(f.ctx, err) {
				continue
			}
			return
		}
		if backoff.Failing() {
			f.m.log.Info("forward: accepting again", "forward", f.spec.String())
			backoff.Reset()
		}
		if !f.conns.Track(c) {
			c.Close()
			return
		}
		if !f.conns.Go(func() {
			defer f.conns.Untrack(c)
			f.serveTCP(c)
		}) {
			f.conns.Untrack(c)
			c.Close()
		}
	}
}

// serveTCP connects the stack to the sandbox port from the client's
// address, or a socket inside the sandbox's namespace (the splice path,
// see splices), and relays until both directions end. A refused or failed
// connect resets the client; a reset on either side during the relay
// resets the other.
func (f *fwd) serveTCP(client net.Conn) {
	f.active.Add(1)
	f.total.Add(1)
	defer f.active.Add(-1)
	clientAddr := addrPortOf(client.RemoteAddr())
	src, dst, _ := f.m.source(clientAddr)
	dst = netip.AddrPortFrom(dst.Addr(), f.spec.SandboxPort)
	ctx, cancel := context.WithTimeout(f.ctx, dialTimeout)
	if f.m.splices(clientAddr) && f.splice(ctx, cancel, client, dst) {
		return
	}
	guest, err := f.m.dialTCP(ctx, src, dst)
	if err != nil && src.Port() != 0 && ctx.Err() == nil {
		// The client's port may be taken on that address in the stack
		// (another forward, a relayed flow); any port will do.
		guest, err = f.m.dialTCP(ctx, netip.AddrPortFrom(src.Addr(), 0), dst)
	}
	cancel()
	if err != nil {
		f.m.log.Debug("forward: connect to sandbox failed", "forward", f.spec.String(), "src", src, "dst", dst, "err", err)
		relay.Reset(client) // the client sees the refusal as a reset
		return
	}
	f.conns.Pipe(relay.AsConn(client), relay.AsConn(guest))
}

// splice serves client on the splice path and reports true, or reports
// false, having done nothing, when the sandbox's init gave no socket (it
// is gone, say): the stack path still works then. A refusal inside resets
// the client, as on the stack path. It calls cancel once the connect is
// over.
func (f *fwd) splice(ctx context.Context, cancel context.CancelFunc, client net.Conn, dst netip.AddrPort) bool {
	inner, err := f.m.cfg.Inner(ctx, dst)
	switch {
	case err == nil:
		cancel()
		f.spliced.Add(1)
		f.conns.Pipe(relay.AsConn(client), inner)
		return true
	case errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil:
		cancel()
		f.m.log.Debug("forward: connect in the sandbox failed", "forward", f.spec.String(), "dst", dst, "err", err)
		relay.Reset(client)
		return true
	}
	f.m.log.Debug("forward: splice path unavailable; taking the stack path", "forward", f.spec.String(), "err", err)
	return false
}

// splices reports whether a connection from client takes the splice
// path: one from the host's loopback or a unix socket (which the sandbox
// would see as the gateway anyway), while the firewall is empty (a spliced
// flow does not cross it), under PathAuto; every one under PathSplice.
func (m *Manager) splices(client netip.AddrPort) bool {
	switch {
	case m.cfg.Inner == nil || m.cfg.Path == PathStack:
		return false
	case m.cfg.Path == PathSplice:
		return true
	}
	c := client.Addr().Unmap()
	if c.IsValid() && !c.IsLoopback() {
		return false
	}
	return m.cfg.FirewallEmpty == nil || m.cfg.FirewallEmpty()
}

// dialTCP connects through the stack's own Dialer, from src (the client's
// address, which the sandbox NIC's spoofing lets the stack bind).
func (m *Manager) dialTCP(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	d := stack.Dialer{Stack: m.cfg.Stack, LocalAddr: src}
	return d.DialContext(ctx, "tcp", dst.String())
}
