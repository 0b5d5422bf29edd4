package netfilter

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// Assured is set once replies were seen.
	Assured bool
	Mark    uint32
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

type flow struct {
	key flowKey
	mu  sync.Mutex // guards reply, state, repSeen
	// +checklocks:mu
	reply Tuple
	// +checklocks:mu
	state gstack.ConnTrackState
	// +checklocks:mu
	repSeen  bool
	last     atomic.Int64 // unix nanoseconds
	oPk, oBy atomic.Uint64
	rPk, rBy atomic.Uint64
	mark     atomic.Uint32
}

const flowShards = 64

// flowTable is tunstack's view of gVisor's conntrack, which has no public
// enumeration: every packet seen at the first hook updates the flow
// keyed by gVisor's original tuple.
type flowTable struct {
	seed   maphash.Seed
	shards [flowShards]struct {
		mu sync.RWMutex // guards m (the flows themselves have their own mu)
		// +checklocks:mu
		m map[flowKey]*flow
	}
	count atomic.Int64
	max   int64
}

func newFlowTable(max int) *flowTable {
	t := &flowTable{seed: maphash.MakeSeed(), max: int64(max)}
	for i := range t.shards {
		t.shards[i].m = map[flowKey]*flow{}
	}
	return t
}

func (t *flowTable) shard(k *flowKey) int {
	a := k.src.As16()
	b := k.dst.As16()
	h := uint64(k.proto) ^ uint64(k.sport)<<8 ^ uint64(k.dport)<<24
	for i := 0; i < 16; i++ {
		h = h*31 + uint64(a[i]) ^ uint64(b[i])<<32
	}
	return int(h % flowShards)
}

func flowTimeout(proto uint8, st gstack.ConnTrackState) time.Duration {
	// gVisor's conntrack timeouts: 5 days for established TCP, 120 s for
	// everything else.
	if proto == 6 && (st == gstack.ConnTrackStateEstablished || st == gstack.ConnTrackStateEstablishedReply) {
		return 5 * 24 * time.Hour
	}
	return 120 * time.Second
}

// lookup finds or, when create is set, makes the packet's flow.
func (t *flowTable) lookup(p *Packet, create bool) *flow {
	if p.flowDone {
		return p.fl
	}
	p.flowDone = true
	var info gstack.ConnTrackInfo
	if p.pkt == nil || !p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{FillState: true}, &info) {
		return nil
	}
	k := flowKey{proto: uint8(info.TransProto), src: addrFromTCPIP(info.SrcAddr), dst: addrFromTCPIP(info.DstAddr), sport: info.SrcPort, dport: info.DstPort}
	s := &t.shards[t.shard(&k)]
	s.mu.RLock()
	f := s.m[k]
	s.mu.RUnlock()
	if f == nil && create {
		if t.count.Load() >= t.max {
			t.reap(time.Now())
		}
		s.mu.Lock()
		if f = s.m[k]; f == nil {
			f = &flow{key: k}
			s.m[k] = f
			t.count.Add(1)
		}
		s.mu.Unlock()
	}
	if f != nil {
		f.mu.Lock()
		f.state = info.State
		f.mu.Unlock()
	}
	p.fl = f
	return f
}

// update accounts p to its flow. Called once per packet.
func (t *flowTable) update(p *Packet) {
	f := t.lookup(p, true)
	if f == nil {
		return
	}
	f.last.Store(time.Now().UnixNano())
	if p.Src == f.key.src && (!p.hasPorts() || p.SrcPort == f.key.sport) {
		f.oPk.Add(1)
		f.oBy.Add(uint64(p.Length))
		if f.oPk.Load() <= 2 {
			t.fillReply(p, f)
		}
		return
	}
	f.rPk.Add(1)
	f.rBy.Add(uint64(p.Length))
	f.mu.Lock()
	seen := f.repSeen
	f.repSeen = true
	f.mu.Unlock()
	if !seen {
		t.fillReply(p, f)
	}
}

func (t *flowTable) fillReply(p *Packet, f *flow) {
	var info gstack.ConnTrackInfo
	if p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{UseReplyDir: true}, &info) {
		f.mu.Lock()
		f.reply = Tuple{Src: addrFromTCPIP(info.SrcAddr), Dst: addrFromTCPIP(info.DstAddr), SrcPort: info.SrcPort, DstPort: info.DstPort}
		f.mu.Unlock()
	}
}

func (t *flowTable) reap(now time.Time) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, f := range s.m {
			f.mu.Lock()
			st := f.state
			f.mu.Unlock()
			if now.Sub(time.Unix(0, f.last.Load())) > flowTimeout(k.proto, st) {
				delete(s.m, k)
				t.count.Add(-1)
			}
		}
		s.mu.Unlock()
	}
}

func (t *flowTable) list() []Flow {
	now := time.Now()
	t.reap(now)
	var out []Flow
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for k, f := range s.m {
			f.mu.Lock()
			fl := Flow{
				Protocol: k.proto, Orig: Tuple{k.src, k.dst, k.sport, k.dport}, Reply: f.reply,
				OrigPackets: f.oPk.Load(), OrigBytes: f.oBy.Load(),
				ReplyPackets: f.rPk.Load(), ReplyBytes: f.rBy.Load(),
				Assured: f.repSeen, Mark: f.mark.Load(),
			}
			if k.src.Is6() {
				fl.Family = IPv6
			}
			if !fl.Reply.Src.IsValid() {
				fl.Reply = Tuple{k.dst, k.src, k.dport, k.sport}
			}
			if k.proto == 6 {
				switch f.state {
				case gstack.ConnTrackStateNew:
					fl.State = "SYN_SENT"
				case gstack.ConnTrackStateEstablished, gstack.ConnTrackStateEstablishedReply:
					fl.State = "ESTABLISHED"
				default:
					fl.State = "CLOSE"
				}
			}
			fl.Timeout = flowTimeout(k.proto, f.state) - now.Sub(time.Unix(0, f.last.Load()))
			f.mu.Unlock()
			out = append(out, fl)
		}
		s.mu.RUnlock()
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
	if f := p.fw.flows.lookup(p, false); f != nil {
		return f.mark.Load()
	}
	return 0
}

// updateConnmark sets the connection mark to (ct & ^mask) ^ value.
func (p *Packet) updateConnmark(mask, value uint32) {
	if p.fw == nil {
		return
	}
	f := p.fw.flows.lookup(p, true)
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

// FormatConntrack formats flows as conntrack -L does.
func FormatConntrack(flows []Flow) string {
	var b strings.Builder
	for _, f := range flows {
		fam := "ipv4     2"
		if f.Family == IPv6 {
			fam = "ipv6     10"
		}
		fmt.Fprintf(&b, "%s %-8s%d %d ", fam, protoName(f.Protocol), f.Protocol, int(f.Timeout.Seconds()))
		if f.State != "" {
			b.WriteString(f.State + " ")
		}
		tuple := func(t Tuple, pk, by uint64) {
			fmt.Fprintf(&b, "src=%s dst=%s ", t.Src, t.Dst)
			if f.Protocol == 1 || f.Protocol == 58 {
				fmt.Fprintf(&b, "id=%d ", t.SrcPort)
			} else if f.Protocol == 6 || f.Protocol == 17 {
				fmt.Fprintf(&b, "sport=%d dport=%d ", t.SrcPort, t.DstPort)
			}
			fmt.Fprintf(&b, "packets=%d bytes=%d ", pk, by)
		}
		tuple(f.Orig, f.OrigPackets, f.OrigBytes)
		if !f.Assured && f.ReplyPackets == 0 {
			b.WriteString("[UNREPLIED] ")
		}
		tuple(f.Reply, f.ReplyPackets, f.ReplyBytes)
		if f.Assured {
			b.WriteString("[ASSURED] ")
		}
		fmt.Fprintf(&b, "mark=%d use=1\n", f.Mark)
	}
	fmt.Fprintf(&b, "conntrack v1.4.7 (tunstack): %d flow entries have been shown.\n", len(flows))
	return b.String()
}
