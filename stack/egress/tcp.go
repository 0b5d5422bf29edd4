package egress

import (
	"context"
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
	// release frees the flow's TCP slot and host descriptor; it runs
	// once, when the flow ends however it ends.
	release func()
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
	pc := &pendingConn{release: func() {}}
	t.pending[id] = pc
	t.mu.Unlock()
	// Outside the lock: a rejection may come straight back through an
	// in-memory link into handle.
	release, ok := t.admit(id, pkt)
	if !ok {
		t.forget(id)
		return true
	}
	pc.release = release
	syn := pkt.Clone()
	if !t.e.flows.Go(func() { t.dial(id, syn, pc) }) {
		t.forget(id)
		syn.DecRef()
		release()
	}
	return true
}

// admit takes a TCP slot and a host descriptor for a new flow. Past the
// TCP cap the SYN is answered with administratively prohibited; without a
// descriptor it is dropped (the sandbox retries in a second).
func (t *tcpRelay) admit(id gstack.TransportEndpointID, syn *gstack.PacketBuffer) (release func(), ok bool) {
	flows, fds := t.e.cfg.TCPFlows, t.e.cfg.FDs
	if !flows.Acquire() {
		src, dst := idString(id)
		t.e.log.Debug("egress: tcp flow cap reached; prohibited", "src", src, "dst", dst)
		// Answered from another goroutine, as dial failures are: the
		// packet path may hold the sender's locks (an in-memory link).
		pkt := syn.Clone()
		if !t.e.flows.Go(func() {
			defer pkt.DecRef()
			t.e.reject(pkt, Prohibit, true)
		}) {
			pkt.DecRef()
		}
		return nil, false
	}
	if !fds.Acquire() {
		flows.Release()
		return nil, false
	}
	return sync.OnceFunc(func() {
		fds.Release()
		flows.Release()
	}), true
}

func (t *tcpRelay) forget(id gstack.TransportEndpointID) {
	t.mu.Lock()
	delete(t.pending, id)
	t.mu.Unlock()
}

func (t *tcpRelay) dial(id gstack.TransportEndpointID, syn *gstack.PacketBuffer, pc *pendingConn) {
	defer syn.DecRef()
	established := false
	defer func() {
		if !established {
			pc.release()
		}
	}()
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
				return
			}
			established = true
			return
		}
		if outOfFDs(err) {
			t.e.cfg.FDs.Drop()
		}
		v = verdictFor(err)
		t.e.log.Debug("egress: tcp dial failed", "src", src, "dst", dst, "host", to, "err", err)
	}
	t.forget(id)
	if v != Drop {
		t.e.reject(syn, v, true)
	}
}

// complete runs in a forwarder goroutine for each replayed SYN, and relays
// the connection in it until both sides have ended.
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
		pc.release()
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	guest := &guestConn{TCPConn: gonet.NewTCPConn(&wq, ep), ep: ep}
	// The relay runs in this goroutine (the forwarder's, started for
	// this connection alone).
	if !t.e.flows.Run(func() {
		defer pc.release()
		t.e.flows.Pipe(guest, relay.AsConn(pc.host))
	}) {
		relay.Reset(guest)
		relay.Reset(pc.host)
		pc.release()
	}
}

// guestConn is the sandbox side of a relayed connection; relay.Reset
// aborts its endpoint (gonet has no SO_LINGER).
type guestConn struct {
	*gonet.TCPConn
	ep tcpip.Endpoint
}

// Abort resets the sandbox connection.
func (g *guestConn) Abort() { g.ep.Abort() }

// closeReset closes c so that the peer sees a reset (SO_LINGER 0).
func closeReset(c net.Conn) { relay.Reset(c) }
