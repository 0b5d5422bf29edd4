package views

import (
	"net/netip"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Route is an entry of the stack's route table.
type Route struct {
	Destination netip.Prefix `json:"dst"`
	// Gateway is the next hop; invalid for on-link routes.
	Gateway netip.Addr `json:"gateway,omitzero"`
	Device  string     `json:"dev"`
	MTU     uint32     `json:"mtu,omitempty"`
}

// Routes returns the stack's route table in lookup order.
func Routes(gs *gstack.Stack) []Route {
	names := map[int32]string{}
	for id, ni := range gs.NICInfo() {
		names[int32(id)] = ni.Name
	}
	var out []Route
	for _, r := range gs.GetRouteTable() {
		v6 := r.Destination.ID().Len() == 16
		dst := netip.PrefixFrom(addrPort(r.Destination.ID(), 0, v6).Addr(), r.Destination.Prefix())
		rt := Route{Destination: dst, Device: names[int32(r.NIC)], MTU: r.MTU}
		if r.Gateway.Len() != 0 {
			rt.Gateway = addrPort(r.Gateway, 0, v6).Addr()
		}
		out = append(out, rt)
	}
	return out
}
