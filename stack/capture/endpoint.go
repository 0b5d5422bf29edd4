package capture

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DefaultSnapLen is the snapshot length when a subscriber asks for none:
// whole packets, including 64 KiB offload super-packets.
const DefaultSnapLen = 262144

// Direction says which way a packet crossed the endpoint.
type Direction uint8

const (
	// In is from the link (the sandbox) to the stack.
	In Direction = iota + 1
	// Out is from the stack to the link.
	Out
)

// Packet is one captured packet: an IPv4 or IPv6 datagram.
type Packet struct {
	Time time.Time
	// Data is the packet, truncated to the subscriber's snapshot length.
	// It is shared between subscribers and must not be modified.
	Data []byte
	// Len is the packet's length on the wire.
	Len int
	Dir Direction
	// IfIndex is the interface's index in a LINKTYPE_LINUX_SLL2 stream
	// (tcpdump -i any); 0 elsewhere.
	IfIndex uint32
}

// Endpoint is a link endpoint that copies packets to subscribers.
type Endpoint struct {
	// Endpoint (gVisor's) passes the link calls to lower and interposes
	// this endpoint as lower's dispatcher.
	nested.Endpoint
	lower gstack.LinkEndpoint

	mu sync.Mutex // guards the replacement of subs
	// subs is replaced (copy on write) under mu and read without it on
	// the packet path; nil or empty means nobody listens.
	subs atomic.Pointer[[]*Subscription]
	// onIdle, if set, runs (without mu) when the last subscription
	// closes.
	onIdle func()
}

var (
	_ gstack.LinkEndpoint      = (*Endpoint)(nil)
	_ gstack.GSOEndpoint       = (*Endpoint)(nil)
	_ gstack.NetworkDispatcher = (*Endpoint)(nil)
)

// NewEndpoint wraps lower. Give the result to the stack instead of lower.
func NewEndpoint(lower gstack.LinkEndpoint) *Endpoint {
	e := &Endpoint{lower: lower}
	e.Endpoint.Init(lower, e)
	return e
}

// Lower returns the wrapped endpoint.
func (e *Endpoint) Lower() gstack.LinkEndpoint { return e.lower }

// DeliverNetworkPacket implements stack.NetworkDispatcher for the lower
// endpoint: inbound packets are copied before the stack parses (and may
// modify) them.
func (e *Endpoint) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	if subs := e.subs.Load(); subs != nil && len(*subs) > 0 {
		e.tap(*subs, pkt, In)
	}
	e.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// WritePackets implements stack.LinkEndpoint.
func (e *Endpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if subs := e.subs.Load(); subs != nil && len(*subs) > 0 {
		for _, pkt := range pkts.AsSlice() {
			e.tap(*subs, pkt, Out)
		}
	}
	return e.lower.WritePackets(pkts)
}

// tap copies pkt once, up to the largest snapshot length, and offers it to
// each subscriber whose filter matches.
func (e *Endpoint) tap(subs []*Subscription, pkt *gstack.PacketBuffer, dir Direction) {
	snap := 0
	for _, s := range subs {
		snap = max(snap, s.snapLen)
	}
	data, wire := copyPacket(pkt, snap)
	p := Packet{Time: time.Now(), Data: data, Len: wire, Dir: dir}
	var d decoded
	d.decode(data)
	completeChecksum(data, &d)
	for _, s := range subs {
		s.offer(p, &d)
	}
}

// copyPacket copies up to snap bytes of pkt from its first header on.
func copyPacket(pkt *gstack.PacketBuffer, snap int) ([]byte, int) {
	vl, off := pkt.AsViewList()
	wire := 0
	for v := vl.Front(); v != nil; v = v.Next() {
		wire += v.Size()
	}
	wire -= off
	out := make([]byte, 0, min(wire, snap))
	for v := vl.Front(); v != nil && len(out) < snap; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		out = append(out, b[:min(len(b), snap-len(out))]...)
	}
	return out, wire
}

// Subscribe starts delivering packets matching f (nil: all) to a new
// subscription, truncated to snapLen bytes (0: DefaultSnapLen). queue is
// the channel's capacity (0: 4096).
func (e *Endpoint) Subscribe(f *Filter, snapLen, queue int) *Subscription {
	if snapLen <= 0 {
		snapLen = DefaultSnapLen
	}
	if queue <= 0 {
		queue = 4096
	}
	s := &Subscription{e: e, filter: f, snapLen: snapLen, c: make(chan Packet, queue), done: make(chan struct{})}
	e.mu.Lock()
	old := e.subs.Load()
	var next []*Subscription
	if old != nil {
		next = append(next, *old...)
	}
	next = append(next, s)
	e.subs.Store(&next)
	e.mu.Unlock()
	return s
}

func (e *Endpoint) unsubscribe(s *Subscription) {
	e.mu.Lock()
	old := e.subs.Load()
	if old == nil {
		e.mu.Unlock()
		return
	}
	var next []*Subscription
	for _, o := range *old {
		if o != s {
			next = append(next, o)
		}
	}
	e.subs.Store(&next)
	idle := e.onIdle
	e.mu.Unlock()
	if len(next) == 0 && idle != nil {
		idle()
	}
}

// SetOnIdle sets a function to run each time the last subscription
// closes. It runs outside the endpoint's locks, so it may race with a new
// Subscribe: check Subscribers under the caller's own lock.
func (e *Endpoint) SetOnIdle(fn func()) {
	e.mu.Lock()
	e.onIdle = fn
	e.mu.Unlock()
}

// Subscribers returns the number of open subscriptions.
func (e *Endpoint) Subscribers() int {
	if subs := e.subs.Load(); subs != nil {
		return len(*subs)
	}
	return 0
}

// OfferPacket hands a gVisor packet (from its network header on) to the
// subscribers as if it had crossed the endpoint in direction dir. It
// copies the packet only when someone listens; a tap outside the link
// (the netfilter hooks behind "tcpdump -i host") feeds captures with it.
func (e *Endpoint) OfferPacket(pkt *gstack.PacketBuffer, dir Direction) {
	if subs := e.subs.Load(); subs != nil && len(*subs) > 0 {
		e.tap(*subs, pkt, dir)
	}
}

// Subscription receives captured packets until Close.
type Subscription struct {
	e       *Endpoint
	filter  *Filter
	snapLen int
	c       chan Packet
	done    chan struct{}
	once    sync.Once
	// sendMu orders offers against Close, so nothing is sent on a
	// closed channel.
	sendMu sync.RWMutex // guards closed
	// +checklocks:sendMu
	closed  bool
	dropped atomic.Uint64
	matched atomic.Uint64
	// cooked and ifIndex make the pcap stream LINKTYPE_LINUX_SLL2 (see
	// Cooked); set before streaming starts.
	cooked  bool
	ifIndex uint32
}

// C delivers the packets; it is closed by Close.
func (s *Subscription) C() <-chan Packet { return s.c }

// Dropped counts matching packets lost because the subscriber was slow.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Matched counts packets that matched the filter.
func (s *Subscription) Matched() uint64 { return s.matched.Load() }

// Close stops the subscription and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.e.unsubscribe(s)
		s.sendMu.Lock()
		s.closed = true
		close(s.c)
		s.sendMu.Unlock()
	})
}

func (s *Subscription) offer(p Packet, d *decoded) {
	if s.filter != nil && !s.filter.match(d) {
		return
	}
	s.matched.Add(1)
	if len(p.Data) > s.snapLen {
		p.Data = p.Data[:s.snapLen]
	}
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	if s.closed {
		return
	}
	select {
	case s.c <- p:
	default:
		s.dropped.Add(1)
	}
}

// Offer hands a packet to the subscribers as if it had crossed the
// endpoint in direction dir; it lets tests and other packet sources (a
// host-side tap) feed captures.
func (e *Endpoint) Offer(data []byte, dir Direction) {
	subs := e.subs.Load()
	if subs == nil || len(*subs) == 0 {
		return
	}
	p := Packet{Time: time.Now(), Data: data, Len: len(data), Dir: dir}
	var d decoded
	d.decode(data)
	for _, s := range *subs {
		s.offer(p, &d)
	}
}
