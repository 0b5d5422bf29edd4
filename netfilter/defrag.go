package netfilter

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Reassembly limits, as Linux's defaults (net.ipv4.ipfrag_high_thresh,
// ipfrag_time, net.ipv6.ip6frag_time).
const (
	// DefaultFragHighThresh is the memory fragments may hold, all queues
	// together; over it new fragments are dropped.
	DefaultFragHighThresh = 4 << 20
	// DefaultFragTimeout4 is how long an incomplete IPv4 datagram waits.
	DefaultFragTimeout4 = 30 * time.Second
	// DefaultFragTimeout6 is how long an incomplete IPv6 datagram waits.
	DefaultFragTimeout6 = 60 * time.Second
	// fragOverhead is charged per held fragment on top of its payload, as
	// the kernel charges an skb's truesize: many tiny fragments cost
	// memory too.
	fragOverhead = 256
	maxDatagram  = 65535
)

// DefragResult says what Reassembler.Add did with a packet.
type DefragResult uint8

const (
	// DefragPass: not a fragment; use the packet as it is.
	DefragPass DefragResult = iota
	// DefragHeld: a fragment, kept until its datagram is complete.
	DefragHeld
	// DefragDone: the fragment completed a datagram, returned whole.
	DefragDone
	// DefragDropped: a fragment dropped (malformed, duplicate,
	// overlapping, oversize or over the memory bound).
	DefragDropped
)

// DefragStats counts what the reassembler did, as the kernel's
// ReasmReqds/ReasmOKs/ReasmFails/ReasmTimeout and ReasmOverlaps.
type DefragStats struct {
	Fragments   uint64 `json:"fragments"`
	Reassembled uint64 `json:"reassembled"`
	Failed      uint64 `json:"failed"`
	Timeouts    uint64 `json:"timeouts"`
	Overlaps    uint64 `json:"overlaps"`
	Oversize    uint64 `json:"oversize"`
	MemDrops    uint64 `json:"mem_drops"`
	// Held is the number of incomplete datagrams, Mem their accounted
	// memory in bytes.
	Held int `json:"held"`
	Mem  int `json:"mem"`
}

type fragKey struct {
	v6       bool
	src, dst netip.Addr
	proto    uint8
	id       uint32
}

type fragment struct {
	off, end int
	data     []byte
}

type fragQueue struct {
	key      fragKey
	deadline time.Time
	frags    []fragment // sorted by off, never overlapping
	have     int        // payload bytes held
	length   int        // end of the datagram, known once the last fragment came
	lastIn   bool
	head     []byte // the first fragment's header (v4 with options; v6 up to the fragment header)
	nextHdr  uint8  // v6: the fragment header's next header
	nhOff    int    // v6: offset in head of the next-header byte pointing at the fragment header
	mem      int
	prev     *fragQueue
	next     *fragQueue
}

// Reassembler rebuilds IPv4 and IPv6 datagrams from their fragments, as
// Linux's nf_defrag does before conntrack and the chains, so rules see
// whole datagrams. It is bounded in memory (HighThresh) and time
// (Timeout4/6, counted from a datagram's first fragment), drops
// overlapping fragments (RFC 5722: the whole datagram) and datagrams
// over 65535 bytes. It is safe for concurrent use.
type Reassembler struct {
	highThresh         int
	timeout4, timeout6 time.Duration
	now                func() time.Time

	mu     sync.Mutex // guards queues, the list and mem
	queues map[fragKey]*fragQueue
	// first/last per family (0 v4, 1 v6): a list in creation order,
	// which is deadline order since a family's timeout is fixed.
	first, last [2]*fragQueue
	mem         int
	held        atomic.Int64 // len(queues), read without mu

	fragments, reassembled, failed, timeouts, overlaps, oversize, memDrops atomic.Uint64
}

// ReassemblerConfig sets a Reassembler's limits; zero values take the
// Linux defaults.
type ReassemblerConfig struct {
	HighThresh         int
	Timeout4, Timeout6 time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// NewReassembler returns a reassembler with c's limits.
func NewReassembler(c ReassemblerConfig) *Reassembler {
	r := &Reassembler{highThresh: c.HighThresh, timeout4: c.Timeout4, timeout6: c.Timeout6, now: c.Now, queues: map[fragKey]*fragQueue{}}
	if r.highThresh <= 0 {
		r.highThresh = DefaultFragHighThresh
	}
	if r.timeout4 <= 0 {
		r.timeout4 = DefaultFragTimeout4
	}
	if r.timeout6 <= 0 {
		r.timeout6 = DefaultFragTimeout6
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Stats returns the reassembler's counters.
func (r *Reassembler) Stats() DefragStats {
	r.mu.Lock()
	held, mem := len(r.queues), r.mem
	r.mu.Unlock()
	return DefragStats{
		Fragments: r.fragments.Load(), Reassembled: r.reassembled.Load(), Failed: r.failed.Load(),
		Timeouts: r.timeouts.Load(), Overlaps: r.overlaps.Load(), Oversize: r.oversize.Load(),
		MemDrops: r.memDrops.Load(), Held: held, Mem: mem,
	}
}

// IsFragment reports whether an IP packet is a fragment, cheaply (no
// copy): v4 with MF or an offset, v6 with a fragment header.
func IsFragment(b []byte) bool {
	if len(b) < 1 {
		return false
	}
	switch b[0] >> 4 {
	case 4:
		return len(b) >= header.IPv4MinimumSize && binary.BigEndian.Uint16(b[6:])&0x3fff != 0
	case 6:
		_, _, ok := v6FragHeader(b)
		return ok
	}
	return false
}

// v6FragHeader walks b's extension headers to a fragment header and
// returns its offset and the offset of the next-header byte naming it.
func v6FragHeader(b []byte) (fhOff, nhOff int, ok bool) {
	if len(b) < header.IPv6MinimumSize {
		return 0, 0, false
	}
	nh, off, nhOff := b[6], header.IPv6MinimumSize, 6
	for {
		switch nh {
		case uint8(header.IPv6FragmentExtHdrIdentifier):
			if off+header.IPv6FragmentExtHdrLength > len(b) {
				return 0, 0, false
			}
			return off, nhOff, true
		case uint8(header.IPv6HopByHopOptionsExtHdrIdentifier), uint8(header.IPv6RoutingExtHdrIdentifier), uint8(header.IPv6DestinationOptionsExtHdrIdentifier):
			if off+8 > len(b) {
				return 0, 0, false
			}
			nh, nhOff = b[off], off
			off += (int(b[off+1]) + 1) * 8
		default:
			return 0, 0, false
		}
	}
}

// Add offers one IP packet. For DefragDone it returns the whole datagram
// (a new slice the caller owns); b is never kept.
func (r *Reassembler) Add(b []byte) ([]byte, DefragResult) {
	if len(b) < 1 {
		return nil, DefragPass
	}
	switch b[0] >> 4 {
	case 4:
		return r.add4(b)
	case 6:
		return r.add6(b)
	}
	return nil, DefragPass
}

func (r *Reassembler) add4(b []byte) ([]byte, DefragResult) {
	if len(b) < header.IPv4MinimumSize {
		return nil, DefragPass
	}
	h := header.IPv4(b)
	fl := binary.BigEndian.Uint16(b[6:])
	if fl&0x3fff == 0 {
		return nil, DefragPass
	}
	r.fragments.Add(1)
	ihl, tot := int(h.HeaderLength()), int(h.TotalLength())
	if ihl < header.IPv4MinimumSize || tot < ihl || tot > len(b) {
		r.failed.Add(1)
		return nil, DefragDropped
	}
	more := fl&0x2000 != 0
	off := int(fl&0x1fff) * 8
	end := off + tot - ihl
	if more {
		end &^= 7 // Linux trims a non-last fragment to 8-byte units
	}
	k := fragKey{src: netip.AddrFrom4([4]byte(b[12:16])), dst: netip.AddrFrom4([4]byte(b[16:20])), proto: b[9], id: uint32(h.ID())}
	var head []byte
	if off == 0 {
		head = b[:ihl]
	}
	return r.insert(k, off, end, more, b[ihl:ihl+end-off], head, 0, 0, ihl)
}

func (r *Reassembler) add6(b []byte) ([]byte, DefragResult) {
	fh, nhOff, ok := v6FragHeader(b)
	if !ok {
		return nil, DefragPass
	}
	r.fragments.Add(1)
	tot := header.IPv6MinimumSize + int(binary.BigEndian.Uint16(b[4:]))
	if tot > len(b) || tot < fh+header.IPv6FragmentExtHdrLength {
		r.failed.Add(1)
		return nil, DefragDropped
	}
	f := header.IPv6Fragment(b[fh : fh+header.IPv6FragmentExtHdrLength])
	more := f.More()
	off := int(f.FragmentOffset()) * 8
	pay := b[fh+header.IPv6FragmentExtHdrLength : tot]
	end := off + len(pay)
	if !more && off == 0 {
		// An atomic fragment (RFC 6946): deliver it alone, minus the header.
		out := make([]byte, 0, tot-header.IPv6FragmentExtHdrLength)
		out = append(append(out, b[:fh]...), pay...)
		out[nhOff] = f.NextHeader()
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-header.IPv6MinimumSize))
		return out, DefragDone
	}
	if more && end&7 != 0 {
		r.failed.Add(1) // Linux answers a parameter problem and drops it
		return nil, DefragDropped
	}
	k := fragKey{v6: true, src: netip.AddrFrom16([16]byte(b[8:24])), dst: netip.AddrFrom16([16]byte(b[24:40])), id: f.ID()}
	var head []byte
	if off == 0 {
		head = b[:fh]
	}
	return r.insert(k, off, end, more, pay, head, f.NextHeader(), nhOff, fh)
}

// insert adds one fragment's payload [off,end) to its queue. hdrLen is
// the unfragmentable header length, to bound the datagram's size.
func (r *Reassembler) insert(k fragKey, off, end int, more bool, data, head []byte, nextHdr uint8, nhOff, hdrLen int) ([]byte, DefragResult) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	if hdrLen+end > maxDatagram {
		r.oversize.Add(1)
		r.failed.Add(1)
		if q := r.queues[k]; q != nil {
			r.killLocked(q)
		}
		return nil, DefragDropped
	}
	if r.mem > r.highThresh {
		r.memDrops.Add(1)
		r.failed.Add(1)
		return nil, DefragDropped
	}
	q := r.queues[k]
	if q == nil {
		t := r.timeout4
		if k.v6 {
			t = r.timeout6
		}
		q = &fragQueue{key: k, deadline: now.Add(t)}
		r.queues[k] = q
		r.held.Add(1)
		r.pushLocked(q)
	}
	if end == off {
		r.failed.Add(1)
		r.killLocked(q)
		return nil, DefragDropped
	}
	// Linux: a last fragment must not end before data already held or
	// disagree with an earlier last fragment; a non-last one must not
	// reach past a known end.
	if !more {
		if end < q.length || (q.lastIn && end != q.length) {
			r.failed.Add(1)
			r.killLocked(q)
			return nil, DefragDropped
		}
		q.lastIn, q.length = true, end
	} else if end > q.length {
		if q.lastIn {
			r.failed.Add(1)
			r.killLocked(q)
			return nil, DefragDropped
		}
		q.length = end
	}
	switch q.place(off, end) {
	case placeDup:
		return nil, DefragDropped
	case placeOverlap:
		r.overlaps.Add(1)
		r.failed.Add(1)
		r.killLocked(q)
		return nil, DefragDropped
	}
	fr := fragment{off: off, end: end, data: append([]byte(nil), data...)}
	i := sort.Search(len(q.frags), func(i int) bool { return q.frags[i].off >= off })
	q.frags = append(q.frags, fragment{})
	copy(q.frags[i+1:], q.frags[i:])
	q.frags[i] = fr
	q.have += end - off
	cost := len(fr.data) + fragOverhead
	if head != nil {
		q.head = append([]byte(nil), head...)
		q.nextHdr, q.nhOff = nextHdr, nhOff
		cost += len(head)
	}
	q.mem += cost
	r.mem += cost
	if !q.lastIn || q.have != q.length || q.head == nil {
		return nil, DefragHeld
	}
	out := q.assemble()
	r.killLocked(q)
	r.reassembled.Add(1)
	return out, DefragDone
}

type placement uint8

const (
	placeNew placement = iota
	placeDup
	placeOverlap
)

// place classifies [off,end) against the held fragments: new (touches
// none), a duplicate (entirely inside contiguous held data, dropped
// alone, as Linux's IPFRAG_DUP) or an overlap (kills the datagram).
func (q *fragQueue) place(off, end int) placement {
	i := sort.Search(len(q.frags), func(i int) bool { return q.frags[i].end > off })
	if i == len(q.frags) || q.frags[i].off >= end {
		return placeNew
	}
	if q.frags[i].off > off {
		return placeOverlap
	}
	cover := q.frags[i].end
	for j := i + 1; cover < end && j < len(q.frags) && q.frags[j].off == cover; j++ {
		cover = q.frags[j].end
	}
	if cover >= end {
		return placeDup
	}
	return placeOverlap
}

// assemble joins a complete queue into one datagram without fragment
// fields.
func (q *fragQueue) assemble() []byte {
	out := make([]byte, 0, len(q.head)+q.length)
	out = append(out, q.head...)
	for _, f := range q.frags {
		out = append(out, f.data...)
	}
	if !q.key.v6 {
		h := header.IPv4(out)
		h.SetTotalLength(uint16(len(out)))
		h.SetFlagsFragmentOffset(0, 0)
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		return out
	}
	out[q.nhOff] = q.nextHdr
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-header.IPv6MinimumSize))
	return out
}

func (k fragKey) fam() int {
	if k.v6 {
		return 1
	}
	return 0
}

func (r *Reassembler) pushLocked(q *fragQueue) {
	f := q.key.fam()
	q.prev = r.last[f]
	if r.last[f] != nil {
		r.last[f].next = q
	} else {
		r.first[f] = q
	}
	r.last[f] = q
}

func (r *Reassembler) killLocked(q *fragQueue) {
	if r.queues[q.key] != q {
		return
	}
	delete(r.queues, q.key)
	r.held.Add(-1)
	f := q.key.fam()
	if q.prev != nil {
		q.prev.next = q.next
	} else {
		r.first[f] = q.next
	}
	if q.next != nil {
		q.next.prev = q.prev
	} else {
		r.last[f] = q.prev
	}
	q.prev, q.next = nil, nil
	r.mem -= q.mem
}

// expireLocked drops datagrams past their deadline, oldest first; it
// stops at the first live one of each family.
func (r *Reassembler) expireLocked(now time.Time) {
	for f := range r.first {
		for q := r.first[f]; q != nil && now.After(q.deadline); q = r.first[f] {
			r.timeouts.Add(1)
			r.failed.Add(1)
			r.killLocked(q)
		}
	}
}

// Expire drops datagrams past their deadline now (Add does it too).
func (r *Reassembler) Expire() {
	if r.held.Load() == 0 {
		return
	}
	now := r.now()
	r.mu.Lock()
	r.expireLocked(now)
	r.mu.Unlock()
}
