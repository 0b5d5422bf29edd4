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
// A SYN that no endpoint claims reaches handle, which passes it to gVisor's
// TCP forwarder and swallows its retransmissions meanwhile. The forwarder
// starts one goroutine for the flow, in which complete dials the host;
// when the dial succeeds, it completes the handshake and relays the flow in
// that same goroutine, so that a flow costs two goroutines (the forwarder's
// and the relay's second direction), each start a wake-up of another OS
// thread on a small host. When the dial fails, the saved SYN is answered
// with an RST or an ICMP error.
type tcpRelay struct {
	e   *Egress
	fwd *tcp.Forwarder

	mu sync.Mutex // guards pending
	// pending are the flows handed to the forwarder whose request is not
	// completed yet. It holds every id the forwarder has in flight, so a
	// SYN handle passes on always starts complete.
	// +checklocks:mu
	pending map[gstack.TransportEndpointID]*pendingConn
}

type pendingConn struct {
	// syn is the sandbox's SYN, kept to answer a failed dial.
	syn *gstack.PacketBuffer
	// release frees the flow's TCP slot and host descriptor; it runs
	// once, when the flow ends however it ends.
	release func()
}

func newTCPRelay(e *Egress) *tcpRelay {
	t := &tcpRelay{e: e, pending: make(map[gstack.TransportEndpointID]*pendingConn)}
	// Our own pending limit governs; the forwarder's must never drop a
	// SYN we pass on.
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
	// Close waits for the dial; complete ends the count.
	if !t.e.flows.Add() {
		t.forget(id)
		release()
		return true
	}
	pc.release, pc.syn = release, pkt.Clone()
	if !t.fwd.HandlePacket(id, pkt) {
		// Not a SYN the forwarder takes (a bad checksum): dropped, as
		// the stack drops it.
		t.forget(id)
		pc.syn.DecRef()
		release()
		t.e.flows.Done()
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

// complete runs in the forwarder's goroutine for each SYN handle passed
// on, counted in the flow group until the dial is over: it dials the host,
// then completes the handshake and relays the flow, or answers the SYN.
func (t *tcpRelay) complete(r *tcp.ForwarderRequest) {
	id := r.ID()
	t.mu.Lock()
	pc := t.pending[id]
	t.mu.Unlock()
	if pc == nil { // not ours (cannot happen: handle passes on every SYN)
		r.Complete(true)
		return
	}
	host, v := t.dial(id)
	// The handshake is not counted: Close comes before the stack's, and
	// a sandbox that never answers the SYN-ACK would hold it for minutes.
	t.e.flows.Done()
	if host == nil {
		// Complete before forget: a retransmitted SYN must find the
		// flow pending, not the forwarder still busy with it.
		r.Complete(false)
		t.forget(id)
		pc.release()
		if v != Drop {
			t.e.reject(pc.syn, v, true)
		}
		pc.syn.DecRef()
		return
	}
	pc.syn.DecRef()
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	// Until the endpoint is registered (or the request completed), a
	// retransmitted SYN must not start a second dial.
	r.Complete(err != nil)
	t.forget(id)
	if err != nil {
		// The handshake failed or the sandbox reset the connection
		// before it was accepted: the host connection is aborted too.
		closeReset(host)
		pc.release()
		return
	}
	ep.SocketOptions().SetKeepAlive(true)
	guest := &guestConn{TCPConn: gonet.NewTCPConn(&wq, ep), ep: ep}
	defer pc.release()
	if !t.e.flows.Add() {
		relay.Reset(guest)
		relay.Reset(host)
		return
	}
	defer t.e.flows.Done()
	t.e.flows.Pipe(guest, relay.AsConn(host))
}

// dial opens the host connection for flow id, or says how to answer the
// SYN when it cannot.
func (t *tcpRelay) dial(id gstack.TransportEndpointID) (net.Conn, Verdict) {
	src, dst := idString(id)
	to, v := t.e.cfg.Translate("tcp", dst)
	if v != Dial {
		return nil, v
	}
	ctx, cancel := context.WithTimeout(t.e.ctx, t.e.cfg.DialTimeout)
	c, err := t.e.cfg.Dialer.DialContext(ctx, networkOf("tcp", to.Addr()), to.String())
	cancel()
	if err == nil {
		return c, Dial
	}
	if outOfFDs(err) {
		t.e.cfg.FDs.Drop()
	}
	t.e.log.Debug("egress: tcp dial failed", "src", src, "dst", dst, "host", to, "err", err)
	return nil, verdictFor(err)
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
