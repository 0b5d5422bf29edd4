package netfilter

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Flow is one tracked connection as conntrack -L shows it.
type Flow struct {
	Family   Family
	Protocol uint8
	// State is the conntrack state ("ESTABLISHED", "SYN_SENT", ...) for
	// TCP and "" otherwise.
	State string
	// Orig is the tuple of the first packet; Reply the tuple replies
	// carry (after NAT, so a DNAT shows as a differing Reply.Src).
	Orig, Reply Tuple
	// Timeout is the time left before the flow expires.
	Timeout time.Duration
	// Packets and Bytes count both directions.
	OrigPackets, OrigBytes   uint64
	ReplyPackets, ReplyBytes uint64
	// Assured is conntrack's [ASSURED]: TCP past its handshake, UDP
	// replied and still active after 2 s.
	Assured bool
	// Unreplied is conntrack's [UNREPLIED]: no reply seen yet.
	Unreplied bool
	Mark      uint32
}

// Tuple is a connection's addresses and ports (ICMP: ident in SrcPort).
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

type flowKey struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
}

func (k flowKey) reverse() flowKey {
	return flowKey{proto: k.proto, src: k.dst, dst: k.src, sport: k.dport, dport: k.sport}
}

// tcpState is a TCP conntrack state, as Linux names them.
type tcpState uint8

const (
	tcpNone tcpState = iota
	tcpSynSent
	tcpSynRecv
	tcpEstablished
	tcpFinWait
	tcpCloseWait
	tcpLastAck
	tcpTimeWait
	tcpClose
)

var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"}

// Linux's default conntrack timeouts (nf_conntrack_tcp_timeout_*,
// nf_conntrack_udp_timeout{,_stream}, nf_conntrack_icmp_timeout,
// nf_conntrack_generic_timeout).
var tcpTimeouts = [...]time.Duration{
	tcpNone: 120 * time.Second, tcpSynSent: 120 * time.Second, tcpSynRecv: 60 * time.Second,
	tcpEstablished: 432000 * time.Second, tcpFinWait: 120 * time.Second, tcpCloseWait: 60 * time.Second,
	tcpLastAck: 30 * time.Second, tcpTimeWait: 120 * time.Second, tcpClose: 10 * time.Second,
}

const (
	udpTimeout       = 30 * time.Second
	udpStreamTimeout = 120 * time.Second
	udpStreamAfter   = 2 * time.Second // Linux's stream_ts: replied and still active after 2 s
	icmpTimeout      = 30 * time.Second
	genericTimeout   = 600 * time.Second
)

type flow struct {
	key     flowKey
	created time.Time

	mu       sync.Mutex // guards the fields below
	reply    Tuple      // NAT-aware reply tuple from gVisor, if known
	state    tcpState
	finDir   uint8
	replied  bool // IPS_SEEN_REPLY
	assured  bool // IPS_ASSURED
	deadline time.Time

	oPk, oBy atomic.Uint64
	rPk, rBy atomic.Uint64
	mark     atomic.Uint32
}

const flowShards = 64

// DefaultMaxFlows is the default bound on tracked flows, Linux's
// nf_conntrack_max on a machine with 4 GiB or more.
const DefaultMaxFlows = 65536

// flowTable is tunstack's connection tracker, as Linux's: it follows
// each flow's TCP state (or UDP/ICMP reply) from the packets in both
// directions and expires it on Linux's timeouts. It is bounded: at max
// entries it evicts an unassured flow (Linux's early drop) or leaves the
// new flow untracked and counts it. Flows of both directions hash to
// the same shard.
type flowTable struct {
	shards [flowShards]struct {
		mu       sync.Mutex // guards m, nextReap
		m        map[flowKey]*flow
		nextReap time.Time
	}
	count   atomic.Int64
	max     int64
	now     func() time.Time
	creates atomic.Uint64
	drops   atomic.Uint64 // new flows not tracked at the bound
	evicted atomic.Uint64 // early drops
}

func newFlowTable(max int) *flowTable {
	t := &flowTable{max: int64(max), now: time.Now}
	for i := range t.shards {
		t.shards[i].m = map[flowKey]*flow{}
	}
	return t
}

// shard hashes a flow's two endpoints symmetrically, so a packet and its
// reply find the same shard.
func (t *flowTable) shard(k *flowKey) int {
	end := func(a netip.Addr, port uint16) uint64 {
		b := a.As16()
		h := binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(b[8:])
		return (h ^ uint64(port)) * 0xbf58476d1ce4e5b9
	}
	h := end(k.src, k.sport) ^ end(k.dst, k.dport) ^ uint64(k.proto)
	return int((h ^ h>>29) % flowShards)
}

// obs is one packet as the tracker needs it.
type obs struct {
	key    flowKey
	flags  uint8 // TCP flags
	length int
	// icmpReply: an echo reply (its key is the request's, reversed).
	icmpReply bool
	// track: a protocol and packet that may start a flow.
	canStart bool
}

// observe accounts one packet and advances its flow. It returns the flow
// (nil when untracked).
func (t *flowTable) observe(o obs, now time.Time) *flow {
	si := t.shard(&o.key)
	s := &t.shards[si]
	s.mu.Lock()
	reap := -1
	f, dir := t.findLocked(s.m, o.key, now)
	if f == nil {
		if !o.canStart || o.icmpReply {
			s.mu.Unlock()
			return nil
		}
		if !t.reserve() {
			// Make room without holding this shard: makeRoom locks
			// shards one at a time.
			s.mu.Unlock()
			ok := t.makeRoom(si, now) && t.reserve()
			s.mu.Lock()
			if !ok {
				s.mu.Unlock()
				t.drops.Add(1)
				return nil
			}
			if f, dir = t.findLocked(s.m, o.key, now); f != nil {
				t.count.Add(-1) // another packet made it meanwhile
			}
		}
		if f == nil {
			f = &flow{key: o.key, created: now, deadline: now.Add(genericTimeout)}
			// Both directions' tuples name the flow: one lookup per
			// packet.
			s.m[o.key] = f
			s.m[o.key.reverse()] = f
			if n := t.creates.Add(1); n%256 == 0 {
				reap = int(n/256) % flowShards
			}
		}
	}
	s.mu.Unlock()
	if dir == 0 {
		f.oPk.Add(1)
		f.oBy.Add(uint64(o.length))
	} else {
		f.rPk.Add(1)
		f.rBy.Add(uint64(o.length))
	}
	if f.advance(dir, o, now) {
		s.mu.Lock()
		t.removeLocked(s.m, f)
		s.mu.Unlock()
		return nil
	}
	if reap >= 0 {
		t.reapShard(reap, now)
	}
	return f
}

func (f *flow) deadlineOf() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deadline
}

// reserve takes one of the max entries, so concurrent new flows never
// overshoot the bound.
func (t *flowTable) reserve() bool {
	if t.count.Add(1) <= t.max {
		return true
	}
	t.count.Add(-1)
	return false
}

// findLocked finds k's flow in a shard, in either direction (dir 1:
// k is the reply's tuple); an expired flow is removed and not found.
func (t *flowTable) findLocked(m map[flowKey]*flow, k flowKey, now time.Time) (*flow, uint8) {
	f := m[k]
	if f == nil {
		return nil, 0
	}
	if now.After(f.deadlineOf()) {
		t.removeLocked(m, f)
		return nil, 0
	}
	if f.key != k {
		return f, 1
	}
	return f, 0
}

// removeLocked deletes f (both of its keys) from its shard's map.
func (t *flowTable) removeLocked(m map[flowKey]*flow, f *flow) {
	if m[f.key] != f {
		return
	}
	delete(m, f.key)
	delete(m, f.key.reverse())
	t.count.Add(-1)
}

// earlyDropScan bounds how many flows makeRoom examines for one new
// flow, so the work at the bound is constant, not a scan of the table.
const earlyDropScan = 64

// makeRoom frees an entry at the bound: expired flows first (each shard
// reaped at most once a second), else one unassured flow (Linux's early
// drop), examining at most earlyDropScan flows in shards from start.
func (t *flowTable) makeRoom(start int, now time.Time) bool {
	budget := earlyDropScan
	for i := 0; i < flowShards && budget > 0; i++ {
		s := &t.shards[(start+i)%flowShards]
		s.mu.Lock()
		if now.After(s.nextReap) {
			t.reapShardLocked(s.m, now)
			s.nextReap = now.Add(time.Second)
		}
		ok := t.count.Load() < t.max || t.earlyDropLocked(s.m, &budget)
		s.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// earlyDropLocked evicts one flow that is not assured from a shard
// (map order is random, like Linux's random bucket), as Linux's
// early_drop does, examining at most *budget flows.
func (t *flowTable) earlyDropLocked(m map[flowKey]*flow, budget *int) bool {
	for k, f := range m {
		if k != f.key {
			continue // each flow once
		}
		if *budget <= 0 {
			return false
		}
		*budget--
		f.mu.Lock()
		assured := f.assured
		f.mu.Unlock()
		if !assured {
			t.removeLocked(m, f)
			t.evicted.Add(1)
			return true
		}
	}
	return false
}

func (t *flowTable) reapShardLocked(m map[flowKey]*flow, now time.Time) {
	for _, f := range m {
		if now.After(f.deadlineOf()) {
			t.removeLocked(m, f)
		}
	}
}

// reapShard expires shard i. Every 256th new flow reaps the next shard,
// round robin, so expiry costs a small constant per flow instead of a
// full scan.
func (t *flowTable) reapShard(i int, now time.Time) {
	s := &t.shards[i]
	s.mu.Lock()
	t.reapShardLocked(s.m, now)
	s.mu.Unlock()
}

// advance moves the flow's state for a packet in direction dir (0
// original, 1 reply) and sets its timeout, following Linux. It reports
// whether the flow ends at once: Linux deletes a TCP flow whose only
// reply is a RST (a refused connection leaves no entry).
func (f *flow) advance(dir uint8, o obs, now time.Time) (kill bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key.proto == 6 && o.flags&TCPRst != 0 && !f.replied {
		return true
	}
	if dir == 1 {
		f.replied = true
	}
	switch f.key.proto {
	case 6:
		f.advanceTCP(dir, o.flags)
		f.deadline = now.Add(tcpTimeouts[f.state])
	case 17, 136:
		t := udpTimeout
		if f.replied && now.Sub(f.created) > udpStreamAfter {
			t = udpStreamTimeout
			f.assured = true
		}
		f.deadline = now.Add(t)
	case 1, 58:
		f.deadline = now.Add(icmpTimeout)
	default:
		f.deadline = now.Add(genericTimeout)
	}
	return false
}

func (f *flow) advanceTCP(dir, fl uint8) {
	syn, ack, fin, rst := fl&TCPSyn != 0, fl&TCPAck != 0, fl&TCPFin != 0, fl&TCPRst != 0
	switch st := f.state; {
	case rst:
		if st != tcpNone {
			f.state = tcpClose
		}
	case syn && !ack:
		if dir == 0 && (st == tcpNone || st == tcpTimeWait || st == tcpClose) {
			f.state, f.replied, f.assured = tcpSynSent, false, false
		}
	case syn && ack:
		if dir == 1 && (st == tcpSynSent || st == tcpSynRecv) {
			f.state = tcpSynRecv
		}
	case fin:
		switch {
		case st == tcpSynRecv || st == tcpEstablished:
			f.state, f.finDir = tcpFinWait, dir
		case (st == tcpFinWait || st == tcpCloseWait) && dir != f.finDir:
			f.state = tcpLastAck
		}
	case ack:
		switch {
		case st == tcpNone:
			// Linux picks up a connection in the middle (tcp_loose).
			f.state = tcpEstablished
		case st == tcpSynRecv && dir == 0:
			f.state, f.assured = tcpEstablished, true
		case st == tcpFinWait && dir != f.finDir:
			f.state = tcpCloseWait
		case st == tcpLastAck && dir == f.finDir:
			f.state = tcpTimeWait
		}
	}
}

// tupleObs reads the tracking tuple of an IP packet (whole datagram or
// first fragment) from its bytes; ok is false for packets conntrack
// would not start or follow a flow for (non-first fragments, ICMP
// errors).
func tupleObs(b []byte) (o obs, ok bool) {
	if len(b) < 1 {
		return o, false
	}
	var th []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < header.IPv4MinimumSize {
			return o, false
		}
		h := header.IPv4(b)
		ihl := int(h.HeaderLength())
		if ihl < header.IPv4MinimumSize || len(b) < ihl || h.FragmentOffset() != 0 {
			return o, false
		}
		o.key = flowKey{proto: h.Protocol(), src: netip.AddrFrom4([4]byte(b[12:16])), dst: netip.AddrFrom4([4]byte(b[16:20]))}
		o.length = int(h.TotalLength())
		th = b[ihl:]
	case 6:
		if len(b) < header.IPv6MinimumSize {
			return o, false
		}
		o.key = flowKey{src: netip.AddrFrom16([16]byte(b[8:24])), dst: netip.AddrFrom16([16]byte(b[24:40]))}
		o.length = header.IPv6MinimumSize + int(binary.BigEndian.Uint16(b[4:]))
		nh, off := b[6], header.IPv6MinimumSize
		for nh == 0 || nh == 43 || nh == 60 {
			if off+8 > len(b) {
				return o, false
			}
			nh, off = b[off], off+(int(b[off+1])+1)*8
		}
		if nh == 44 || off > len(b) {
			return o, false // fragments: tracked once reassembled
		}
		o.key.proto = nh
		th = b[off:]
	default:
		return o, false
	}
	switch o.key.proto {
	case 6:
		if len(th) < header.TCPMinimumSize {
			return o, false
		}
		o.key.sport, o.key.dport = binary.BigEndian.Uint16(th), binary.BigEndian.Uint16(th[2:])
		o.flags = th[13]
		o.canStart = o.flags&(TCPSyn|TCPAck) != 0 && o.flags&(TCPRst|TCPFin) == 0
	case 17, 136:
		if len(th) < 8 {
			return o, false
		}
		o.key.sport, o.key.dport = binary.BigEndian.Uint16(th), binary.BigEndian.Uint16(th[2:])
		o.canStart = true
	case 1, 58:
		if len(th) < 8 {
			return o, false
		}
		req, rep := uint8(8), uint8(0)
		if o.key.proto == 58 {
			req, rep = 128, 129
		}
		id := binary.BigEndian.Uint16(th[4:])
		switch th[0] {
		case req:
			o.canStart = true
		case rep:
			o.icmpReply = true
		default:
			return o, false // errors are RELATED to the flow they quote
		}
		// The echo ident is both "ports", so a reply reverses onto the
		// request's key.
		o.key.sport, o.key.dport = id, id
	default:
		o.canStart = true
	}
	return o, true
}

// observeBytes tracks one packet seen on a link.
func (t *flowTable) observeBytes(b []byte, now time.Time) {
	if o, ok := tupleObs(b); ok {
		t.observe(o, now)
	}
}

// lookup finds the packet's flow from gVisor's original tuple (so after
// NAT too).
func (t *flowTable) lookup(p *Packet) *flow {
	if p.flowDone {
		return p.fl
	}
	p.flowDone = true
	var info gstack.ConnTrackInfo
	if p.pkt == nil || !p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{}, &info) {
		return nil
	}
	k := flowKey{proto: uint8(info.TransProto), src: addrFromTCPIP(info.SrcAddr), dst: addrFromTCPIP(info.DstAddr), sport: info.SrcPort, dport: info.DstPort}
	s := &t.shards[t.shard(&k)]
	s.mu.Lock()
	p.fl = s.m[k]
	s.mu.Unlock()
	return p.fl
}

// update tracks p at the first hook when no link stage does, and notes
// the NAT-aware reply tuple from gVisor's conntrack.
func (t *flowTable) update(p *Packet, observe bool) {
	if observe && p.pkt != nil {
		v := p.pkt.ToView()
		t.observeBytes(v.AsSlice(), t.now())
		v.Release()
	}
	f := t.lookup(p)
	if f == nil || f.oPk.Load() > 2 {
		return
	}
	var info gstack.ConnTrackInfo
	if p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{UseReplyDir: true}, &info) {
		f.mu.Lock()
		f.reply = Tuple{Src: addrFromTCPIP(info.SrcAddr), Dst: addrFromTCPIP(info.DstAddr), SrcPort: info.SrcPort, DstPort: info.DstPort}
		f.mu.Unlock()
	}
}

// forgetUnconfirmed removes the flow a dropped packet started: Linux
// confirms a conntrack entry only when its first packet leaves the
// hooks, so a SYN a rule dropped or rejected leaves no entry.
func (t *flowTable) forgetUnconfirmed(p *Packet) {
	f := t.lookup(p)
	if f == nil || f.oPk.Load() > 1 || f.rPk.Load() > 0 {
		return
	}
	s := &t.shards[t.shard(&f.key)]
	s.mu.Lock()
	t.removeLocked(s.m, f)
	s.mu.Unlock()
	p.fl = nil
}

// ConntrackStats counts the tracker's work at its bound.
type ConntrackStats struct {
	// Entries is the number of tracked flows, Max the bound.
	Entries int `json:"entries"`
	Max     int `json:"max"`
	// EarlyDrops are unassured flows evicted for new ones; Drops are new
	// flows left untracked because every candidate was assured.
	EarlyDrops uint64 `json:"early_drops"`
	Drops      uint64 `json:"drops"`
}

func (t *flowTable) stats() ConntrackStats {
	return ConntrackStats{Entries: int(t.count.Load()), Max: int(t.max), EarlyDrops: t.evicted.Load(), Drops: t.drops.Load()}
}

func (t *flowTable) list() []Flow {
	now := t.now()
	var out []Flow
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		t.reapShardLocked(s.m, now)
		for k, f := range s.m {
			if k != f.key {
				continue // the reply tuple's entry
			}
			f.mu.Lock()
			fl := Flow{
				Protocol: k.proto, Orig: Tuple{k.src, k.dst, k.sport, k.dport}, Reply: f.reply,
				OrigPackets: f.oPk.Load(), OrigBytes: f.oBy.Load(),
				ReplyPackets: f.rPk.Load(), ReplyBytes: f.rBy.Load(),
				Assured: f.assured, Unreplied: !f.replied, Mark: f.mark.Load(),
				Timeout: f.deadline.Sub(now),
			}
			if k.proto == 6 {
				fl.State = tcpStateNames[f.state]
			}
			f.mu.Unlock()
			if k.src.Is6() {
				fl.Family = IPv6
			}
			if !fl.Reply.Src.IsValid() {
				fl.Reply = Tuple{k.dst, k.src, k.dport, k.sport}
			}
			out = append(out, fl)
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Orig, out[j].Orig
		if c := a.Src.Compare(b.Src); c != 0 {
			return c < 0
		}
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c < 0
		}
		return a.SrcPort < b.SrcPort
	})
	return out
}

// connmark returns the mark of the packet's connection (0 if untracked).
func (p *Packet) connmark() uint32 {
	if p.fw == nil {
		return 0
	}
	if f := p.fw.flows.lookup(p); f != nil {
		return f.mark.Load()
	}
	return 0
}

// updateConnmark sets the connection mark to (ct & ^mask) ^ value.
func (p *Packet) updateConnmark(mask, value uint32) {
	if p.fw == nil {
		return
	}
	f := p.fw.flows.lookup(p)
	if f == nil {
		return
	}
	for {
		old := f.mark.Load()
		if f.mark.CompareAndSwap(old, old&^mask^value) {
			return
		}
	}
}

// ConntrackFormat selects conntrack -L's output options.
type ConntrackFormat struct {
	// Extended is -o extended: each line starts with the layer 3
	// protocol's name and number ("ipv4     2 ").
	Extended bool
}

// FormatConntrack formats flows as conntrack -L does (its default
// output: no family column, no counters, as with nf_conntrack_acct off),
// then its summary line.
func FormatConntrack(flows []Flow) string { return FormatConntrackWith(flows, ConntrackFormat{}) }

// FormatConntrackWith is FormatConntrack with conntrack's -o options.
func FormatConntrackWith(flows []Flow, o ConntrackFormat) string {
	var b strings.Builder
	for _, f := range flows {
		if o.Extended {
			// AF_INET and AF_INET6, as libnetfilter_conntrack prints them.
			if f.Family == IPv6 {
				fmt.Fprintf(&b, "%-8s %d ", "ipv6", 10)
			} else {
				fmt.Fprintf(&b, "%-8s %d ", "ipv4", 2)
			}
		}
		fmt.Fprintf(&b, "%-8s %d %d ", protoName(f.Protocol), f.Protocol, max(0, int(f.Timeout.Seconds())))
		if f.State != "" {
			b.WriteString(f.State + " ")
		}
		tuple := func(t Tuple, reply bool) {
			fmt.Fprintf(&b, "src=%s dst=%s ", t.Src, t.Dst)
			switch f.Protocol {
			case 1, 58:
				typ := map[[2]bool]int{{false, false}: 8, {false, true}: 0, {true, false}: 128, {true, true}: 129}[[2]bool{f.Protocol == 58, reply}]
				fmt.Fprintf(&b, "type=%d code=0 id=%d ", typ, t.SrcPort)
			case 6, 17, 132, 136:
				fmt.Fprintf(&b, "sport=%d dport=%d ", t.SrcPort, t.DstPort)
			}
		}
		tuple(f.Orig, false)
		if f.Unreplied || f.ReplyPackets == 0 {
			b.WriteString("[UNREPLIED] ")
		}
		tuple(f.Reply, true)
		if f.Assured {
			b.WriteString("[ASSURED] ")
		}
		fmt.Fprintf(&b, "mark=%d use=1\n", f.Mark)
	}
	// The last line is the summary conntrack prints on stderr.
	fmt.Fprintf(&b, "conntrack v1.4.7 (conntrack-tools): %d flow entries have been shown.\n", len(flows))
	return b.String()
}

// quotedKey reads the flow key of the packet an ICMP or ICMPv6 error
// (the whole IP packet b) quotes: its addresses and, for TCP, UDP and
// UDP-Lite, its ports (an error quotes at least 8 bytes of transport
// header), or an echo's ident.
func quotedKey(b []byte) (flowKey, bool) {
	var k flowKey
	inner, ok := icmpErrorBody(b)
	if !ok {
		return k, false
	}
	var th []byte
	switch {
	case len(inner) >= header.IPv4MinimumSize && inner[0]>>4 == 4:
		ihl := int(inner[0]&0xf) * 4
		if ihl < header.IPv4MinimumSize || len(inner) < ihl {
			return k, false
		}
		k = flowKey{proto: inner[9], src: netip.AddrFrom4([4]byte(inner[12:16])), dst: netip.AddrFrom4([4]byte(inner[16:20]))}
		th = inner[ihl:]
	case len(inner) >= header.IPv6MinimumSize && inner[0]>>4 == 6:
		k = flowKey{proto: inner[6], src: netip.AddrFrom16([16]byte(inner[8:24])), dst: netip.AddrFrom16([16]byte(inner[24:40]))}
		th = inner[header.IPv6MinimumSize:]
	default:
		return k, false
	}
	switch k.proto {
	case 6, 17, 136:
		if len(th) < 4 {
			return k, false
		}
		k.sport, k.dport = binary.BigEndian.Uint16(th), binary.BigEndian.Uint16(th[2:])
	case 1, 58:
		if len(th) < 8 {
			return k, false
		}
		k.sport = binary.BigEndian.Uint16(th[4:])
		k.dport = k.sport
	}
	return k, true
}

// icmpErrorBody returns what follows the ICMP header of the IPv4 or IPv6
// packet b.
func icmpErrorBody(b []byte) ([]byte, bool) {
	const icmpHeader = 8
	switch {
	case len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4:
		ihl := int(b[0]&0xf) * 4
		if ihl < header.IPv4MinimumSize || len(b) < ihl+icmpHeader {
			return nil, false
		}
		return b[ihl+icmpHeader:], true
	case len(b) >= header.IPv6MinimumSize+icmpHeader && b[0]>>4 == 6:
		return b[header.IPv6MinimumSize+icmpHeader:], true
	}
	return nil, false
}

// quotes reports whether the ICMP error p quotes a packet of a flow the
// tracker holds, in either direction.
func (t *flowTable) quotes(p *Packet) bool {
	if p.pkt == nil {
		return false
	}
	v := p.pkt.ToView()
	k, ok := quotedKey(v.AsSlice())
	v.Release()
	if !ok {
		return false
	}
	s := &t.shards[t.shard(&k)]
	s.mu.Lock()
	defer s.mu.Unlock()
	f, _ := t.findLocked(s.m, k, t.now())
	return f != nil
}
