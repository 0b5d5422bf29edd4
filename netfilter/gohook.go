package netfilter

import (
	"sort"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Verdict is a Go hook's decision.
type Verdict uint8

const (
	// Continue passes the packet to the next hook function or table.
	Continue Verdict = iota
	// AcceptPacket ends this hook's Go functions for the packet; the
	// iptables tables of the hook still run, as NF_ACCEPT in Linux.
	AcceptPacket
	// DropPacket discards the packet.
	DropPacket
	// RejectPacket discards the packet and answers with a TCP reset (for
	// TCP) or ICMP port unreachable. At PREROUTING and POSTROUTING,
	// where gVisor cannot send rejections, it drops.
	RejectPacket
)

// HookFunc inspects a packet and decides its fate. It runs on the
// packet path: it must be fast, goroutine-safe and must not keep p.
type HookFunc func(p *Packet) Verdict

type goHook struct {
	id       uint64
	priority int
	fn       HookFunc
}

// hookPriorityTables is where the iptables tables sit among Go hooks: a
// negative priority runs before them, zero or more after.
const hookPriorityTables = 0

func sortHooks(hs []*goHook) {
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].priority < hs[j].priority })
}

func runGoHooks(hs []*goHook, p *Packet, beforeTables bool, pkt *gstack.PacketBuffer, hook gstack.Hook, r *gstack.Route, ep gstack.AddressableEndpoint) gstack.RuleVerdict {
	for _, h := range hs {
		if (h.priority < hookPriorityTables) != beforeTables {
			continue
		}
		switch h.fn(p) {
		case AcceptPacket:
			return gstack.RuleAccept
		case DropPacket:
			return gstack.RuleDrop
		case RejectPacket:
			if hook == gstack.Input || hook == gstack.Output || hook == gstack.Forward {
				p.fw.rejectNow(p, pkt, hook, r, ep)
			}
			return gstack.RuleDrop
		}
	}
	return gstack.RuleAccept
}
