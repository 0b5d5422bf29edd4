package netfilter

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// cRule is a rule prepared for evaluation: header tests inline, the
// verdict decoded, gVisor targets built.
type cRule struct {
	proto          uint8
	protoCheck     bool
	protoInv       bool
	src, dst       netip.Prefix
	srcAny, dstAny bool
	srcInv, dstInv bool
	in, out        Iface
	matches        []Match
	kind           verdictKind
	jump           int
	ext            gstack.Target
	reject         bool // ext is REJECT: undo DNAT first (undoDNAT)
	act            actor
	ctr            *Counters
}

type cChain struct {
	rules   []cRule
	builtin bool
	policy  Policy
	pctr    *Counters
}

type cTable struct {
	chains []cChain
	hook   [numHooks]int // chain index of each built-in chain, -1 if none
}

// compiled is the evaluation form of a Ruleset plus the Go hooks; it is
// swapped in atomically and never changed.
type compiled struct {
	rs     *Ruleset
	tables [numFamilies][numTables]cTable
	hooks  [numHooks][]*goHook
	empty  bool // no rules, all policies ACCEPT, no Go hooks
}

// rejectHandlers give gVisor's REJECT targets their ICMP/RST senders.
type rejectHandlers struct {
	v4 gstack.RejectIPv4WithHandler
	v6 gstack.RejectIPv6WithHandler
}

var reject4 = map[string]gstack.RejectIPv4WithICMPType{
	"icmp-net-unreachable":  gstack.RejectIPv4WithICMPNetUnreachable,
	"icmp-host-unreachable": gstack.RejectIPv4WithICMPHostUnreachable,
	"icmp-port-unreachable": gstack.RejectIPv4WithICMPPortUnreachable,
	// icmp-proto-unreachable is refused (Reject.check): gVisor cannot
	// send it.
	"icmp-net-prohibited":   gstack.RejectIPv4WithICMPNetProhibited,
	"icmp-host-prohibited":  gstack.RejectIPv4WithICMPHostProhibited,
	"icmp-admin-prohibited": gstack.RejectIPv4WithICMPAdminProhibited,
	"tcp-reset":             gstack.RejectIPv4WithTCPReset,
}

var reject6 = map[string]gstack.RejectIPv6WithICMPType{
	"icmp6-no-route":         gstack.RejectIPv6WithICMPNoRoute,
	"icmp6-adm-prohibited":   gstack.RejectIPv6WithICMPAdminProhibited,
	"icmp6-addr-unreachable": gstack.RejectIPv6WithICMPAddrUnreachable,
	"icmp6-port-unreachable": gstack.RejectIPv6WithICMPPortUnreachable,
	// icmp6-policy-fail and icmp6-reject-route are refused
	// (Reject.check): gVisor cannot send them.
	"tcp-reset": gstack.RejectIPv6WithTCPReset,
}

func tcpipAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

func netProto(f Family) tcpip.NetworkProtocolNumber {
	if f == IPv6 {
		return header.IPv6ProtocolNumber
	}
	return header.IPv4ProtocolNumber
}

// compile builds the evaluation form. rs must be valid.
func compile(rs *Ruleset, hooks [numHooks][]*goHook, rh rejectHandlers) *compiled {
	c := &compiled{rs: rs, hooks: hooks, empty: true}
	for _, hs := range hooks {
		if len(hs) > 0 {
			c.empty = false
		}
	}
	for f := range rs.tables {
		fam := Family(f)
		for ti, t := range rs.tables[f] {
			ct := &c.tables[f][ti]
			for h := range ct.hook {
				ct.hook[h] = -1
			}
			idx := map[string]int{}
			for i, ch := range t.chains {
				idx[ch.Name] = i
			}
			ct.chains = make([]cChain, len(t.chains))
			for i, ch := range t.chains {
				cc := &ct.chains[i]
				cc.builtin, cc.policy, cc.pctr = ch.Builtin, ch.Policy, ch.policyCounters
				if cc.pctr == nil {
					cc.pctr = new(Counters)
				}
				if ch.Builtin {
					ct.hook[ch.Hook] = i
					if ch.Policy != PolicyAccept {
						c.empty = false
					}
				}
				cc.rules = make([]cRule, len(ch.Rules))
				for j, r := range ch.Rules {
					c.empty = false
					cc.rules[j] = compileRule(fam, r, idx, rh)
				}
			}
		}
	}
	return c
}

func compileRule(f Family, r *Rule, idx map[string]int, rh rejectHandlers) cRule {
	cr := cRule{
		proto: r.Protocol, protoCheck: r.Protocol != 0, protoInv: r.ProtocolInvert,
		src: r.Src.Prefix, dst: r.Dst.Prefix, srcInv: r.Src.Invert, dstInv: r.Dst.Invert,
		srcAny: r.Src.any(), dstAny: r.Dst.any(),
		in: r.In, out: r.Out, matches: r.Matches, ctr: r.counters,
	}
	if cr.ctr == nil {
		cr.ctr = new(Counters)
	}
	np := netProto(f)
	switch t := r.Target.(type) {
	case nil:
		cr.kind = kContinue
	case Accept:
		cr.kind = kAccept
	case Drop:
		cr.kind = kDrop
	case Return:
		cr.kind = kReturn
	case Jump:
		cr.kind, cr.jump = kJump, idx[t.Chain]
	case Goto:
		cr.kind, cr.jump = kGoto, idx[t.Chain]
	case *Reject:
		cr.kind, cr.reject = kExternal, true
		w := t.with(f)
		if f == IPv4 && rh.v4 != nil {
			cr.ext = &gstack.RejectIPv4Target{Handler: rh.v4, RejectWith: reject4[w]}
		} else if f == IPv6 && rh.v6 != nil {
			cr.ext = &gstack.RejectIPv6Target{Handler: rh.v6, RejectWith: reject6[w]}
		} else {
			cr.kind = kDrop
		}
	case *DNAT:
		cr.kind = kExternal
		d := &gstack.DNATTarget{NetworkProtocol: np, ChangeAddress: t.To.From.IsValid(), ChangePort: t.To.hasPorts(), Port: t.To.PortLo}
		if d.ChangeAddress {
			d.Addr = tcpipAddr(t.To.From)
		}
		cr.ext = d
	case *SNAT:
		cr.kind = kExternal
		s := &gstack.SNATTarget{NetworkProtocol: np, ChangeAddress: t.To.From.IsValid(), ChangePort: t.To.hasPorts(), Port: t.To.PortLo}
		if s.ChangeAddress {
			s.Addr = tcpipAddr(t.To.From)
		}
		cr.ext = s
	case *Masquerade:
		cr.kind = kExternal
		if t.Ports && t.PortLo != 0 {
			cr.ext = masqueradePort{np, t.PortLo}
		} else {
			cr.ext = &gstack.MasqueradeTarget{NetworkProtocol: np}
		}
	case *Redirect:
		cr.kind = kExternal
		if t.Ports {
			cr.ext = &gstack.RedirectTarget{NetworkProtocol: np, Port: t.PortLo}
		} else {
			cr.ext = redirectKeepPort{np}
		}
	default:
		cr.kind = kContinue
		if a, ok := r.Target.(actor); ok {
			cr.act = a
		}
	}
	return cr
}

func matchIface(name string, f Iface) bool {
	if f.Name == "" {
		return true
	}
	var ok bool
	if n := len(f.Name); f.Name[n-1] == '+' {
		ok = len(name) >= n-1 && name[:n-1] == f.Name[:n-1]
	} else {
		ok = name == f.Name
	}
	return ok != f.Invert
}

func (cr *cRule) match(p *Packet) bool {
	if cr.protoCheck && (p.Protocol == cr.proto) == cr.protoInv {
		return false
	}
	if !cr.srcAny && cr.src.Contains(p.Src) == cr.srcInv {
		return false
	}
	if !cr.dstAny && cr.dst.Contains(p.Dst) == cr.dstInv {
		return false
	}
	if !matchIface(p.InInterface, cr.in) || !matchIface(p.OutInterface, cr.out) {
		return false
	}
	for _, m := range cr.matches {
		if !m.matches(p) {
			return false
		}
	}
	return true
}

// masqueradePort is MASQUERADE --to-ports PORT: gVisor's
// MasqueradeTarget never maps to a given port, Linux maps the source
// port to it. The address is the one gVisor's target would choose.
type masqueradePort struct {
	np   tcpip.NetworkProtocolNumber
	port uint16
}

// Action implements gstack.Target.
func (t masqueradePort) Action(pkt *gstack.PacketBuffer, hook gstack.Hook, r *gstack.Route, ep gstack.AddressableEndpoint) (gstack.RuleVerdict, int) {
	if hook != gstack.Postrouting || ep == nil {
		return gstack.RuleDrop, 0
	}
	a := ep.AcquireOutgoingPrimaryAddress(pkt.Network().DestinationAddress(), tcpip.Address{}, false)
	if a == nil {
		// No source address to masquerade as, as gVisor's target.
		return gstack.RuleDrop, 0
	}
	addr := a.AddressWithPrefix().Address
	a.DecRef()
	s := gstack.SNATTarget{NetworkProtocol: t.np, Addr: addr, Port: t.port, ChangeAddress: true, ChangePort: true}
	return s.Action(pkt, hook, r, ep)
}

// redirectKeepPort is REDIRECT without --to-ports: gVisor's
// RedirectTarget always rewrites the port, Linux keeps it.
type redirectKeepPort struct{ np tcpip.NetworkProtocolNumber }

// Action implements gstack.Target.
func (t redirectKeepPort) Action(pkt *gstack.PacketBuffer, hook gstack.Hook, r *gstack.Route, ep gstack.AddressableEndpoint) (gstack.RuleVerdict, int) {
	var addr tcpip.Address
	switch {
	case hook == gstack.Output && t.np == header.IPv4ProtocolNumber:
		addr = tcpip.AddrFrom4([4]byte{127, 0, 0, 1})
	case hook == gstack.Output:
		addr = header.IPv6Loopback
	case hook == gstack.Prerouting && ep != nil:
		addr = ep.MainAddress().Address
	default:
		return gstack.RuleDrop, 0
	}
	d := gstack.DNATTarget{Addr: addr, NetworkProtocol: t.np, ChangeAddress: true}
	return d.Action(pkt, hook, r, ep)
}
