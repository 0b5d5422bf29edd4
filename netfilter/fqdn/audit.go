package fqdn

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunstack/tunstack/netfilter"
)

// Verdict is a policy decision.
type Verdict string

// The verdicts.
const (
	Allow Verdict = "allow"
	Deny  Verdict = "deny"
)

// Decision is one allow or deny, as the audit stream records it (one JSON
// object a line). It is the allowlist's own decision: a rule the user put
// before the policy's jump may still accept a flow the allowlist denies.
type Decision struct {
	Time time.Time `json:"time"`
	// PID and Comm name the sandbox process that owns the flow, when it
	// could be found.
	PID  int    `json:"pid,omitempty"`
	Comm string `json:"comm,omitempty"`
	// Proto is tcp, udp, icmp, icmpv6 or dns (an answer's decision).
	Proto string `json:"proto"`
	// Destination and Port are the flow's destination.
	Destination string `json:"destination,omitempty"`
	Port        uint16 `json:"port,omitempty"`
	// Name is the DNS name asked for (dns) or the allowed name the
	// destination was learned from.
	Name    string  `json:"name,omitempty"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`

	src netip.AddrPort
	dst netip.Addr
}

// recorderQueue bounds the decisions waiting to be logged; beyond it they
// are counted and dropped, so a flood cannot stall the packet path.
const recorderQueue = 4096

// recorder logs denials (once per destination per interval) and writes
// the audit stream, off the packet path.
type recorder struct {
	cfg     Config
	q       chan Decision
	done    chan struct{}
	dropped atomic.Uint64
	once    sync.Once

	// last is when each destination's denial was last logged; only the
	// recorder's goroutine touches it.
	last map[string]time.Time
}

func startRecorder(cfg Config) *recorder {
	r := &recorder{cfg: cfg, q: make(chan Decision, recorderQueue), done: make(chan struct{}), last: map[string]time.Time{}}
	go r.run()
	return r
}

// record queues d without blocking.
func (r *recorder) record(d Decision) {
	if r == nil {
		return
	}
	d.Time = time.Now()
	select {
	case r.q <- d:
	default:
		r.dropped.Add(1)
	}
}

func (r *recorder) close() {
	r.once.Do(func() { close(r.q) })
	<-r.done
}

func (r *recorder) run() {
	defer close(r.done)
	var enc *json.Encoder
	if r.cfg.Audit != nil {
		enc = json.NewEncoder(r.cfg.Audit)
	}
	for d := range r.q {
		if d.Proto != "dns" && r.cfg.Owner != nil && d.src.IsValid() {
			d.PID, d.Comm = r.cfg.Owner(d.Proto, d.src, netip.AddrPortFrom(d.dst, d.Port))
		}
		if d.Verdict == Deny {
			r.logDenial(d)
		}
		if enc != nil {
			if err := enc.Encode(d); err != nil {
				r.cfg.Logger.Warn("allow-host: audit write failed; auditing stops", "err", err)
				enc = nil
			}
		}
	}
}

// logDenial logs d unless its destination was logged within the interval.
func (r *recorder) logDenial(d Decision) {
	key := d.Proto + " " + d.Destination + " " + d.Name
	if d.Port != 0 {
		key += ":" + strconv.Itoa(int(d.Port))
	}
	if t, ok := r.last[key]; ok && d.Time.Sub(t) < r.cfg.LogInterval {
		return
	}
	if len(r.last) >= maxLearned {
		clear(r.last)
	}
	r.last[key] = d.Time
	attrs := []any{"proto", d.Proto}
	if d.Destination != "" {
		attrs = append(attrs, "destination", d.Destination)
	}
	if d.Port != 0 {
		attrs = append(attrs, "port", d.Port)
	}
	if d.Name != "" {
		attrs = append(attrs, "name", d.Name)
	}
	if d.PID != 0 {
		attrs = append(attrs, "pid", d.PID, "comm", d.Comm)
	}
	if d.Reason != "" {
		attrs = append(attrs, "reason", d.Reason)
	}
	r.cfg.Logger.Warn("allow-host: denied", attrs...)
}

// Dropped returns how many decisions were not logged or audited because
// the queue was full.
func (p *Policy) Dropped() uint64 { return p.rec.dropped.Load() }

// observe is the policy's Go hook: it records the decision on each new
// flow of the sandbox's egress. The chain, not this hook, enforces it.
func (p *Policy) observe(pk *netfilter.Packet) netfilter.Verdict {
	if pk.Hook == netfilter.Forward && pk.OutInterface != p.cfg.HostInterface {
		return netfilter.Continue
	}
	if pk.CTState()&netfilter.CTNew == 0 {
		return netfilter.Continue
	}
	proto := protoName(pk.Protocol)
	if proto == "" {
		return netfilter.Continue
	}
	if isNDP(pk) {
		return netfilter.Continue
	}
	snap := p.snap.Load()
	v, reason := Allow, ""
	if !snap.allowed(pk.Protocol, pk.Dst, pk.DstPort) {
		v, reason = Deny, "destination not in allowlist"
	}
	if v == Allow && pk.DstPort == 53 && slices.Contains(snap.dns, pk.Dst) {
		return netfilter.Continue // the DNS relay's own decisions are recorded per answer
	}
	d := Decision{Proto: proto, Destination: pk.Dst.String(), Verdict: v, Reason: reason,
		src: netip.AddrPortFrom(pk.Src, pk.SrcPort), dst: pk.Dst, Name: p.nameOf(pk.Dst)}
	if pk.Protocol == protoTCP || pk.Protocol == protoUDP {
		d.Port = pk.DstPort
	}
	p.rec.record(d)
	return netfilter.Continue
}

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMP:
		return "icmp"
	case protoICMPv6:
		return "icmpv6"
	}
	return ""
}

// isNDP reports neighbour discovery and router solicitation messages,
// which the chain lets through and which are no one's egress.
func isNDP(pk *netfilter.Packet) bool {
	return pk.Protocol == protoICMPv6 && pk.ICMPType >= 133 && pk.ICMPType <= 137
}
