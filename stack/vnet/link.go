package vnet

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Impairment describes what one direction of a link does to packets, in
// the manner of Linux's netem and tbf. The zero value is a perfect link
// that delivers every packet at once, in order (dropping only if the
// receiving stack falls more than 16384 packets behind).
type Impairment struct {
	// Loss is the probability, from 0 to 1, that a packet is dropped.
	Loss float64
	// Duplicate is the probability that a packet is delivered twice.
	Duplicate float64
	// Reorder is the probability that a packet is held back for
	// ReorderDelay, letting the packets after it overtake it.
	Reorder float64
	// ReorderDelay is how long a reordered packet is held back
	// (default 2 ms).
	ReorderDelay time.Duration
	// Delay is the one-way latency added to every packet.
	Delay time.Duration
	// Jitter spreads the delay uniformly over Delay±Jitter (never below
	// zero); packets may then arrive out of order, as with netem.
	Jitter time.Duration
	// Bandwidth, in bits per second, limits the rate packets leave the
	// queue; 0 is unlimited.
	Bandwidth int64
	// QueueLen bounds the packets waiting for delay or bandwidth; later
	// ones are dropped (tail drop). Default 1000, like a txqueuelen.
	QueueLen int
	// MTU, if positive, drops packets larger than this many bytes (IP
	// header included), like a hop with a smaller MTU that sends no ICMP.
	MTU int
}

func (im Impairment) isZero() bool { return im == Impairment{} }

// Stats counts what happened to packets in one direction.
type Stats struct {
	Sent, Delivered, Dropped, Duplicated uint64
}

// deliverFunc hands a packet to whatever is beyond a direction: a host's
// NIC or a switch. It takes ownership of buf.
type deliverFunc func(proto tcpip.NetworkProtocolNumber, buf buffer.Buffer)

// direction carries packets one way, applying an Impairment. One goroutine
// per direction delivers them: unimpaired packets in arrival order, the
// rest from a queue ordered by delivery time.
type direction struct {
	out deliverFunc

	mu sync.Mutex // guards imp through nextFree
	// +checklocks:mu
	imp Impairment
	// +checklocks:mu
	down bool // partitioned
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	rng *rand.Rand
	// +checklocks:mu
	q pktHeap // impaired packets, by delivery time
	// +checklocks:mu
	fifo []queued // unimpaired packets, in order
	// +checklocks:mu
	seq uint64
	// +checklocks:mu
	nextFree time.Time // when the bandwidth limiter is next idle

	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	sent, delivered, dropped, duplicated atomic.Uint64
}

func newDirection(seed, stream uint64, out deliverFunc) *direction {
	d := &direction{
		out:  out,
		rng:  rand.New(rand.NewPCG(seed, stream)),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	d.wg.Add(1)
	go d.run()
	return d
}

func (d *direction) setImpairment(im Impairment) {
	d.mu.Lock()
	d.imp = im
	d.mu.Unlock()
}

// setDown partitions (true) or heals (false) the direction. Packets in
// flight when it goes down are lost.
func (d *direction) setDown(down bool) {
	d.mu.Lock()
	d.down = down
	var lost []queued
	if down {
		lost = append(d.q, d.fifo...)
		d.q, d.fifo = nil, nil
	}
	d.mu.Unlock()
	for _, p := range lost {
		p.buf.Release()
		d.dropped.Add(1)
	}
}

func (d *direction) stats() Stats {
	return Stats{Sent: d.sent.Load(), Delivered: d.delivered.Load(), Dropped: d.dropped.Load(), Duplicated: d.duplicated.Load()}
}

// send takes ownership of buf.
func (d *direction) send(proto tcpip.NetworkProtocolNumber, buf buffer.Buffer) {
	d.sent.Add(1)
	d.mu.Lock()
	im := d.imp
	if d.down || d.closed || (im.MTU > 0 && buf.Size() > int64(im.MTU)) || (im.Loss > 0 && d.rng.Float64() < im.Loss) {
		d.mu.Unlock()
		buf.Release()
		d.dropped.Add(1)
		return
	}
	copies := 1
	if im.Duplicate > 0 && d.rng.Float64() < im.Duplicate {
		copies = 2
		d.duplicated.Add(1)
	}
	if im.isZero() {
		d.pushFIFOLocked(proto, buf, copies)
	} else {
		d.enqueueLocked(im, proto, buf, copies)
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// fifoLen bounds the queue of an unimpaired direction. It only fills
// when the receiving stack falls far behind; TCP windows keep a single
// connection well below it.
const fifoLen = 16384

// pushFIFOLocked queues a packet for immediate delivery. Delivering on the
// direction's goroutine rather than the sender's lets sender and receiver
// run in parallel and keeps replies sent during delivery (ICMP, RST) from
// recursing into the sending stack.
func (d *direction) pushFIFOLocked(proto tcpip.NetworkProtocolNumber, buf buffer.Buffer, copies int) {
	if len(d.fifo)+copies > fifoLen {
		buf.Release()
		d.dropped.Add(1)
		return
	}
	if copies == 2 {
		d.fifo = append(d.fifo, queued{proto: proto, buf: buf.Clone()})
	}
	d.fifo = append(d.fifo, queued{proto: proto, buf: buf})
}

func (d *direction) enqueueLocked(im Impairment, proto tcpip.NetworkProtocolNumber, buf buffer.Buffer, copies int) {
	qlen := im.QueueLen
	if qlen <= 0 {
		qlen = 1000
	}
	if len(d.q)+copies > qlen {
		buf.Release()
		d.dropped.Add(1)
		return
	}
	now := time.Now()
	at := now
	if im.Bandwidth > 0 {
		// Serialisation: the packet leaves when the ones before it have,
		// plus its own transmission time.
		start := now
		if d.nextFree.After(now) {
			start = d.nextFree
		}
		at = start.Add(time.Duration(buf.Size() * 8 * int64(time.Second) / im.Bandwidth))
		d.nextFree = at
	}
	delay := im.Delay
	if im.Jitter > 0 {
		delay += time.Duration(d.rng.Int64N(int64(2*im.Jitter)+1)) - im.Jitter
	}
	if im.Reorder > 0 && d.rng.Float64() < im.Reorder {
		rd := im.ReorderDelay
		if rd <= 0 {
			rd = 2 * time.Millisecond
		}
		delay += rd
	}
	at = at.Add(max(delay, 0))
	for i := range copies {
		b := buf
		if i < copies-1 {
			b = buf.Clone()
		}
		d.seq++
		heap.Push(&d.q, queued{at: at, seq: d.seq, proto: proto, buf: b})
	}
}

// run delivers queued packets when they are due.
func (d *direction) run() {
	defer d.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []queued
	for {
		d.mu.Lock()
		var wait time.Duration = -1
		if len(d.q) > 0 {
			now := time.Now()
			for len(d.q) > 0 && !d.q[0].at.After(now) {
				batch = append(batch, heap.Pop(&d.q).(queued))
			}
			if len(d.q) > 0 {
				wait = d.q[0].at.Sub(now)
			}
		}
		batch = append(batch, d.fifo...)
		clear(d.fifo)
		d.fifo = d.fifo[:0]
		d.mu.Unlock()
		for i, p := range batch {
			d.delivered.Add(1)
			d.out(p.proto, p.buf)
			batch[i] = queued{}
		}
		batch = batch[:0]
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-d.wake:
		case <-timer.C:
		case <-d.done:
			return
		}
	}
}

// close stops the goroutine and drops what is queued.
func (d *direction) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	close(d.done)
	d.wg.Wait()
	d.setDown(true)
}

type queued struct {
	at    time.Time
	seq   uint64 // keeps equal times in send order
	proto tcpip.NetworkProtocolNumber
	buf   buffer.Buffer
}

type pktHeap []queued

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *pktHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = queued{}
	*h = old[:len(old)-1]
	return x
}

// endpoint is a host's NIC on a link or switch port: a LinkEndpoint
// without link-layer addressing (like a TUN), so no ARP or NDP is needed.
type endpoint struct {
	mtu uint32
	out *direction // what WritePackets feeds

	mu sync.RWMutex // guards dispatcher
	// +checklocks:mu
	dispatcher gstack.NetworkDispatcher
}

var _ gstack.LinkEndpoint = (*endpoint)(nil)

// deliver injects an inbound packet; it takes ownership of buf.
func (e *endpoint) deliver(proto tcpip.NetworkProtocolNumber, buf buffer.Buffer) {
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d == nil {
		buf.Release()
		return
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buf})
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// WritePackets implements stack.LinkEndpoint.
func (e *endpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		e.out.send(pkt.NetworkProtocolNumber, pkt.ToBuffer())
	}
	return pkts.Len(), nil
}

// Attach implements stack.LinkEndpoint.
func (e *endpoint) Attach(d gstack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (e *endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// MTU implements stack.LinkEndpoint.
func (e *endpoint) MTU() uint32 { return e.mtu }

// SetMTU implements stack.LinkEndpoint; the MTU is fixed at creation.
func (e *endpoint) SetMTU(uint32) {}

// Capabilities implements stack.LinkEndpoint. Checksums are offloaded:
// packets never leave memory and this link never corrupts them, so
// computing and verifying them would only cost time.
func (*endpoint) Capabilities() gstack.LinkEndpointCapabilities {
	return gstack.CapabilityRXChecksumOffload | gstack.CapabilityTXChecksumOffload
}

// MaxHeaderLength implements stack.LinkEndpoint.
func (*endpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint.
func (*endpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.
func (*endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Wait implements stack.LinkEndpoint.
func (*endpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint.
func (*endpoint) AddHeader(*gstack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint.
func (*endpoint) ParseHeader(*gstack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint.
func (e *endpoint) Close() { e.Attach(nil) }

// SetOnCloseAction implements stack.LinkEndpoint.
func (*endpoint) SetOnCloseAction(func()) {}
