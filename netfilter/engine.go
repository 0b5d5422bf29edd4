package netfilter

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// stepKind is one stage of a gVisor hook slot: a user chain, or the Go
// hooks that run before or after the tables of a user hook.
type stepKind uint8

const (
	stepTable stepKind = iota
	stepHooksBefore
	stepHooksAfter
)

type step struct {
	kind  stepKind
	table TableID
	hook  Hook
}

// A slot is one gVisor (hook, table) pair where tunstack installs a
// dispatcher. mode 0 is "local" (or embedded), 1 is "forwarded" in
// gateway mode.
type slotPlan [2][]step

func tbl(t TableID, h Hook) step { return step{kind: stepTable, table: t, hook: h} }
func before(h Hook) step         { return step{kind: stepHooksBefore, hook: h} }
func after(h Hook) step          { return step{kind: stepHooksAfter, hook: h} }

func same(s ...step) slotPlan { return slotPlan{s, s} }

// plans maps gVisor's (hook, table) slots to the iptables chains that run
// there. gVisor consults its nat table only for the first packet of a
// connection (later ones reuse the NAT decision), so Go hooks and
// mangle/filter chains live in the raw, mangle and filter slots.
var plans = map[[2]int]slotPlan{
	{int(gstack.Prerouting), int(gstack.RawID)}:    same(before(Prerouting), tbl(Raw, Prerouting)),
	{int(gstack.Prerouting), int(gstack.MangleID)}: same(tbl(Mangle, Prerouting), after(Prerouting)),
	{int(gstack.Prerouting), int(gstack.NATID)}:    same(tbl(NAT, Prerouting)),
	{int(gstack.Input), int(gstack.NATID)}:         {{tbl(NAT, Input)}, nil},
	{int(gstack.Input), int(gstack.FilterID)}: {
		{before(Input), tbl(Mangle, Input), tbl(Filter, Input), after(Input)},
		{before(Forward), tbl(Mangle, Forward), tbl(Filter, Forward), after(Forward)},
	},
	{int(gstack.Forward), int(gstack.FilterID)}: same(before(Forward), tbl(Mangle, Forward), tbl(Filter, Forward), after(Forward)),
	{int(gstack.Output), int(gstack.RawID)}:     {{before(Output), tbl(Raw, Output)}, nil},
	{int(gstack.Output), int(gstack.MangleID)}:  {{tbl(Mangle, Output)}, nil},
	{int(gstack.Output), int(gstack.NATID)}:     {{tbl(NAT, Output)}, nil},
	{int(gstack.Output), int(gstack.FilterID)}: {
		{tbl(Filter, Output), after(Output)},
		{before(Forward), tbl(Mangle, Forward), tbl(Filter, Forward), after(Forward)},
	},
	{int(gstack.Postrouting), int(gstack.MangleID)}: same(before(Postrouting), tbl(Mangle, Postrouting), after(Postrouting)),
	{int(gstack.Postrouting), int(gstack.NATID)}:    same(tbl(NAT, Postrouting)),
}

// dispatcher is the single gVisor Target installed in one slot. It runs
// the plan's chains with tunstack's evaluator and returns Accept or
// Drop, the only verdicts gVisor allows at a chain's underflow.
type dispatcher struct {
	fw    *Firewall
	fam   Family
	ghook gstack.Hook
	plan  slotPlan
	track bool // update the flow table here (once per packet)
}

// Action implements gstack.Target.
func (d *dispatcher) Action(pkt *gstack.PacketBuffer, hook gstack.Hook, r *gstack.Route, ep gstack.AddressableEndpoint) (gstack.RuleVerdict, int) {
	fw := d.fw
	c := fw.cur.Load()
	if c.empty && !d.track {
		return gstack.RuleAccept, 0
	}
	p := packetPool.Get().(*Packet)
	p.parse(pkt, d.fam)
	p.fw = fw
	switch hook {
	case gstack.Prerouting, gstack.Input:
		p.InInterface = fw.nicName(inNIC(pkt))
	case gstack.Forward:
		p.InInterface = fw.nicName(inNIC(pkt))
		if r != nil {
			p.OutInterface = fw.nicName(r.NICID())
		}
	case gstack.Output, gstack.Postrouting:
		if r != nil {
			p.OutInterface = fw.nicName(r.NICID())
		}
	}
	mode := 0
	if fw.cfg.Gateway {
		switch hook {
		case gstack.Input:
			if !fw.isLocal(p.Dst) {
				mode = 1
				p.OutInterface = fw.cfg.HostInterface
			}
		case gstack.Output:
			if !fw.isLocal(p.Src) {
				mode = 1
				p.InInterface = fw.cfg.HostInterface
			}
		}
	}
	if d.track {
		// With a link stage attached, it tracks every packet (rules or
		// not); here only gVisor's NAT-aware reply tuple is noted.
		fw.flows.update(p, !fw.linked.Load())
	}
	v := gstack.RuleAccept
	for _, s := range d.plan[mode] {
		p.Hook = s.hook
		switch s.kind {
		case stepHooksBefore:
			v = runGoHooks(c.hooks[s.hook], p, true, pkt, hook, r, ep)
		case stepHooksAfter:
			v = runGoHooks(c.hooks[s.hook], p, false, pkt, hook, r, ep)
		default:
			v = c.tables[d.fam][s.table].run(s.hook, p, pkt, hook, r, ep)
		}
		if v != gstack.RuleAccept {
			break
		}
	}
	if v == gstack.RuleDrop {
		fw.flows.forgetUnconfirmed(p)
	}
	*p = Packet{}
	packetPool.Put(p)
	return v, 0
}

// inNIC returns the NIC a packet arrived on. gVisor sets pkt.NICID only
// after PREROUTING has run (in handleValidatedPacket), so at that hook
// only InputNICID names the interface; -i matched against NICID there
// would never match (and ! -i always).
func inNIC(pkt *gstack.PacketBuffer) tcpip.NICID {
	if pkt.InputNICID != 0 {
		return pkt.InputNICID
	}
	return pkt.NICID
}

type frame struct{ chain, rule int }

// run evaluates the built-in chain of hook h. It never allocates: jumps
// use a fixed stack whose depth validation bounds.
func (t *cTable) run(h Hook, p *Packet, pkt *gstack.PacketBuffer, hook gstack.Hook, r *gstack.Route, ep gstack.AddressableEndpoint) gstack.RuleVerdict {
	start := t.hook[h]
	if start < 0 {
		return gstack.RuleAccept
	}
	var stack [maxDepth + 2]frame
	sp := 0
	ci, ri := start, 0
	for {
		ch := &t.chains[ci]
		if ri >= len(ch.rules) {
			if sp == 0 {
				return t.policy(start, p)
			}
			sp--
			ci, ri = stack[sp].chain, stack[sp].rule
			continue
		}
		cr := &ch.rules[ri]
		ri++
		if !cr.match(p) {
			continue
		}
		cr.ctr.add(p.Length)
		switch cr.kind {
		case kContinue:
			if cr.act != nil {
				cr.act.apply(p)
			}
		case kAccept:
			return gstack.RuleAccept
		case kDrop:
			return gstack.RuleDrop
		case kReturn:
			if sp == 0 {
				return t.policy(start, p)
			}
			sp--
			ci, ri = stack[sp].chain, stack[sp].rule
		case kJump:
			if sp >= len(stack) {
				return gstack.RuleDrop
			}
			stack[sp] = frame{ci, ri}
			sp++
			ci, ri = cr.jump, 0
		case kGoto:
			ci, ri = cr.jump, 0
		case kExternal:
			if cr.reject {
				undoDNAT(p)
			}
			v, _ := cr.ext.Action(pkt, hook, r, ep)
			if v == gstack.RuleDrop {
				return gstack.RuleDrop
			}
			return gstack.RuleAccept
		}
	}
}

func (t *cTable) policy(start int, p *Packet) gstack.RuleVerdict {
	ch := &t.chains[start]
	ch.pctr.add(p.Length)
	if ch.policy == PolicyDrop {
		return gstack.RuleDrop
	}
	return gstack.RuleAccept
}
