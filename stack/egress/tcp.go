package egress

import (
	"context"
	"errors"
	"net"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tunstack/tunstack/stack/relay"
)

// tcpRelay answers sandbox SYNs only once the host connection is up.
//
// A SYN that no endpoint claims reaches handle, which starts a host dial and
// swallows the SYN (and its retransmissions) meanwhile. When the dial
// succeeds, the saved SYN is replayed into gVisor's TCP forwarder, whose
// handler completes the handshake and starts the relay. When it fails, the
// saved SYN is answered with an RST or an ICMP error.
type tcpRelay struct {
	e   *Egress
	fwd *tcp.Forwarder

	mu sync.Mutex // guards pending
	// +checklocks:mu
	pending map[gstack.TransportEndpointID]*pendingConn
}

type pendingConn struct {
	host net.Conn
}

func newTCPRelay(e *Egress) *tcpRelay {
	t := &tcpRelay{e: e, pending: make(map[gstack.TransportEndpointID]*pendingConn)}
	// Our own pending limit governs; the forwarder's must never drop a
	// replayed SYN.
	t.fwd = tcp.NewForwarder(e.gs, 0, 1<<30, t.complete)
	return t
}

func (t *tcpRelay) handle(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	h := header.TCP(pkt.TransportHeader().Slice())
	if len(h) < header.TCPMinimumSize {
		return false
	}
	if f := h.Flags(); !f.Contains(header.TCPFlagSyn) || f.Contains(header.TCPFlagAck) {
		return false // the stack answers stray segments with RST
	}
	t.mu.Lock()
	if _, dup := t.pending[id]; dup || len(t.pending) >= t.e.cfg.MaxPendingDials {
		t.mu.Unlock()
		return true
	}
	pc := &pendingConn{}
	t.pending[id] = pc
	t.mu.Unlock()
	syn := pkt.Clone()
	if !t.e.goTracked(func() { t.dial(id, syn, pc) }) {
		t.forget(id)
		syn.DecRef()
	}
	return true
}

func (t *tcpRelay) forget(id gstack.TransportEndpointID) {
	t.mu.Lock()
	delete(t.pending, id)
	t.mu.Unlock()
}

func (t *tcpRelay) dial(id gstack.TransportEndpointID, syn *gstack.PacketBuffer, pc *pendingConn) {
	defer syn.DecRef()
	src, dst := idString(id)
	to, v := t.e.cfg.Translate("tcp", dst)
	if v == Dial {
		ctx, cancel := context.WithTimeout(t.e.ctx, t.e.cfg.DialTimeout)
		c, err := t.e.cfg.Dialer.DialContext(ctx, networkOf("tcp", to.Addr()), to.String())
		cancel()
		if err == nil {
			pc.host = c
			// The forwarder's handler (complete) takes over from here,
			// unless the forwarder refuses the SYN (a bad checksum).
			if !t.fwd.HandlePacket(id, syn) {
				t.forget(id)
				c.Close()
			}
			return
		}
		v = verdictFor(err)
		t.e.log.Debug("egress: tcp dial failed", "src", src, "dst", dst, "host", to, "err", err)
	}
	t.forget(id)
	if v != Drop {
		t.e.reject(syn, v, true)
	}
}

// complete runs in a forwarder goroutine for each replayed SYN.
func (t *tcpRelay) complete(r *tcp.ForwarderRequest) {
	id := r.ID()
	t.mu.Lock()
	pc := t.pending[id]
	t.mu.Unlock()
	if pc == nil || pc.host == nil {
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	// Forget only now: until the endpoint is registered, a retransmitted
	// SYN must not start a second dial.
	t.forget(id)
	if err != nil {
		// The handshake failed or the sandbox reset the connection
		// before it was accepted: the host connection was aborted too.
		r.Complete(true)
		closeReset(pc.host)
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	c := &tcpConn{e: t.e, ep: ep, guest: gonet.NewTCPConn(&wq, ep), host: pc.host}
	if !t.e.track(c) {
		c.abort()
		return
	}
	if !t.e.goTracked(c.guestToHost) {
		c.abort()
		t.e.untrack(c)
		return
	}
	c.hostToGuest()
	c.finish()
}

// tcpConn is one relayed connection.
type tcpConn struct {
	e     *Egress
	ep    tcpip.Endpoint
	guest *gonet.TCPConn
	host  net.Conn
	done  sync.WaitGroup
}

func (c *tcpConn) abort() {
	c.ep.Abort()
	closeReset(c.host)
}

// guestToHost copies sandbox → host; at EOF it half-closes the host side,
// on a reset it resets the host connection.
func (c *tcpConn) guestToHost() {
	c.done.Add(1)
	defer c.done.Done()
	err := relay.Copy(c.host, c.guest)
	switch {
	case err == nil:
		closeWrite(c.host)
	case errors.Is(err, relay.ErrWrite):
		c.ep.Abort()
	default:
		closeReset(c.host)
	}
}

// hostToGuest copies host → sandbox; at EOF it sends FIN to the sandbox, on
// a reset it resets the sandbox connection.
func (c *tcpConn) hostToGuest() {
	err := relay.Copy(c.guest, c.host)
	switch {
	case err == nil:
		c.guest.CloseWrite()
	case errors.Is(err, relay.ErrWrite):
		closeReset(c.host)
	default:
		c.ep.Abort()
	}
}

// finish waits for the other direction and releases both sides.
func (c *tcpConn) finish() {
	c.done.Wait()
	c.guest.Close()
	c.host.Close()
	c.e.untrack(c)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// closeReset closes c so that the peer sees a reset (SO_LINGER 0).
func closeReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
