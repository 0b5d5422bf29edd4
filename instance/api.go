package instance

import (
	"time"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack/forward"
	"github.com/tunstack/tunstack/stack/views"
)

// Mapping between the control API's wire types (package control, which
// links neither the stack nor gVisor) and the domain types of the stack's
// packages. The instance maps them on its side of the control socket;
// the CLI maps what it received back, to format it with the stack's
// formatters.

// APISockets maps the stack's sockets to the control API's.
func APISockets(socks []views.Socket) []control.Socket {
	out := make([]control.Socket, 0, len(socks))
	for _, s := range socks {
		c := control.Socket{
			Side: s.Side, Netid: s.Netid, State: s.State, RecvQ: s.RecvQ, SendQ: s.SendQ,
			Local: s.Local, Peer: s.Peer, V6: s.V6, V6Only: s.V6Only, Inode: s.Inode,
		}
		for _, p := range s.Processes {
			c.Processes = append(c.Processes, control.Process(p))
		}
		if s.TCP != nil {
			t := control.TCPInfo(*s.TCP)
			c.TCP = &t
		}
		out = append(out, c)
	}
	return out
}

// ViewSockets maps the control API's sockets back to the stack's, for
// views.WriteSS.
func ViewSockets(socks []control.Socket) []views.Socket {
	out := make([]views.Socket, 0, len(socks))
	for _, c := range socks {
		s := views.Socket{
			Side: c.Side, Netid: c.Netid, State: c.State, RecvQ: c.RecvQ, SendQ: c.SendQ,
			Local: c.Local, Peer: c.Peer, V6: c.V6, V6Only: c.V6Only, Inode: c.Inode,
		}
		for _, p := range c.Processes {
			s.Processes = append(s.Processes, views.Process(p))
		}
		if c.TCP != nil {
			t := views.TCPInfo(*c.TCP)
			s.TCP = &t
		}
		out = append(out, s)
	}
	return out
}

// APILinks maps the stack's interfaces to the control API's.
func APILinks(links []views.Link) []control.Link {
	out := make([]control.Link, 0, len(links))
	for _, l := range links {
		c := control.Link{
			Index: l.Index, Name: l.Name, Flags: l.Flags, MTU: l.MTU, State: l.State, Kind: l.Kind,
			Offload: l.Offload, TxQueueLen: l.TxQueueLen, Stats: control.LinkStats(l.Stats),
		}
		for _, a := range l.Addresses {
			c.Addresses = append(c.Addresses, control.Address(a))
		}
		out = append(out, c)
	}
	return out
}

// ViewLinks maps the control API's interfaces back to the stack's, for
// views.WriteLinks and views.WriteAddrs.
func ViewLinks(links []control.Link) []views.Link {
	out := make([]views.Link, 0, len(links))
	for _, c := range links {
		l := views.Link{
			Index: c.Index, Name: c.Name, Flags: c.Flags, MTU: c.MTU, State: c.State, Kind: c.Kind,
			Offload: c.Offload, TxQueueLen: c.TxQueueLen, Stats: views.LinkStats(c.Stats),
		}
		for _, a := range c.Addresses {
			l.Addresses = append(l.Addresses, views.Address(a))
		}
		out = append(out, l)
	}
	return out
}

// APIRoutes maps the stack's routes to the control API's.
func APIRoutes(routes []views.Route) []control.Route {
	out := make([]control.Route, 0, len(routes))
	for _, r := range routes {
		out = append(out, control.Route(r))
	}
	return out
}

// ViewRoutes maps the control API's routes back to the stack's, for
// views.WriteRoutes.
func ViewRoutes(routes []control.Route) []views.Route {
	out := make([]views.Route, 0, len(routes))
	for _, r := range routes {
		out = append(out, views.Route(r))
	}
	return out
}

// APIForwards maps running forwards to the control API's.
func APIForwards(infos []forward.Info) []control.Forward {
	out := make([]control.Forward, 0, len(infos))
	for _, f := range infos {
		out = append(out, control.Forward{
			ID: f.ID, Spec: control.ForwardSpec(f.Spec), Listen: f.Listen,
			Active: f.Active, Total: f.Total, Spliced: f.Spliced, Created: f.Created,
		})
	}
	return out
}

// APIFlow maps a tracked connection to the control API's.
func APIFlow(f netfilter.Flow) control.Flow {
	return control.Flow{
		Family: Family(f.Family), Protocol: f.Protocol, State: f.State,
		Orig:      control.FlowTuple{Src: f.Orig.Src, Dst: f.Orig.Dst, SrcPort: f.Orig.SrcPort, DstPort: f.Orig.DstPort},
		Reply:     control.FlowTuple{Src: f.Reply.Src, Dst: f.Reply.Dst, SrcPort: f.Reply.SrcPort, DstPort: f.Reply.DstPort},
		TimeoutNS: int64(f.Timeout), OrigPackets: f.OrigPackets, OrigBytes: f.OrigBytes,
		ReplyPackets: f.ReplyPackets, ReplyBytes: f.ReplyBytes, Assured: f.Assured, Mark: f.Mark,
	}
}

// NetfilterFlow maps the control API's flow back, for
// netfilter.FormatConntrack.
func NetfilterFlow(f control.Flow) netfilter.Flow {
	return netfilter.Flow{
		Family: NetfilterFamily(f.Family), Protocol: f.Protocol, State: f.State,
		Orig:    netfilter.Tuple{Src: f.Orig.Src, Dst: f.Orig.Dst, SrcPort: f.Orig.SrcPort, DstPort: f.Orig.DstPort},
		Reply:   netfilter.Tuple{Src: f.Reply.Src, Dst: f.Reply.Dst, SrcPort: f.Reply.SrcPort, DstPort: f.Reply.DstPort},
		Timeout: time.Duration(f.TimeoutNS), OrigPackets: f.OrigPackets, OrigBytes: f.OrigBytes,
		ReplyPackets: f.ReplyPackets, ReplyBytes: f.ReplyBytes, Assured: f.Assured, Mark: f.Mark,
	}
}

// NetfilterFamily maps the control API's family (4 or 6) to netfilter's.
func NetfilterFamily(n int) netfilter.Family {
	if n == 6 {
		return netfilter.IPv6
	}
	return netfilter.IPv4
}

// Family maps netfilter's family to the control API's (4 or 6).
func Family(f netfilter.Family) int {
	if f == netfilter.IPv6 {
		return 6
	}
	return 4
}

// APIFirewallStats maps the firewall's counters to the control API.
func APIFirewallStats(st netfilter.Stats) *control.FirewallStats {
	d, c, l := st.Defrag, st.Conntrack, st.Log
	return &control.FirewallStats{
		Defrag: control.DefragStats{Fragments: d.Fragments, Reassembled: d.Reassembled, Failed: d.Failed,
			Timeouts: d.Timeouts, Overlaps: d.Overlaps, Oversize: d.Oversize, MemDrops: d.MemDrops, Held: d.Held, Mem: d.Mem},
		Conntrack: control.ConntrackStats{Entries: c.Entries, Max: c.Max, EarlyDrops: c.EarlyDrops, Drops: c.Drops},
		Log:       control.LogStats{Written: l.Written, Dropped: l.Dropped, RateLimited: l.RateLimited},
	}
}
