package views

import (
	"net/netip"
	"sort"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Link is one interface of the stack, as ip link and ip addr show it.
type Link struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	// Flags are ip's flags: POINTOPOINT, NOARP, UP, LOWER_UP, PROMISC,
	// LOOPBACK.
	Flags []string `json:"flags"`
	MTU   uint32   `json:"mtu"`
	// State is the operational state: UNKNOWN (up, as for a TUN), DOWN.
	State string `json:"state"`
	// Kind is the link type ("none" for a TUN: no link-layer address).
	Kind string `json:"kind"`
	// Offload describes the device's offload mode ("vnet_hdr tso" or
	// "off"), empty when unknown.
	Offload    string `json:"offload,omitempty"`
	TxQueueLen int    `json:"txqueuelen,omitempty"`
	// Addresses are the stack's own addresses on the link.
	Addresses []Address `json:"addresses,omitempty"`
	Stats     LinkStats `json:"stats"`
}

// Address is an address assigned to a link.
type Address struct {
	Prefix netip.Prefix `json:"prefix"`
	// Scope is "global", "link" or "host".
	Scope string `json:"scope"`
}

// Family returns "inet" or "inet6", as ip prints it.
func (a Address) Family() string {
	if a.Prefix.Addr().Is4() {
		return "inet"
	}
	return "inet6"
}

// LinkStats are a link's counters (ip -s link).
type LinkStats struct {
	RxBytes   uint64 `json:"rx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxErrors  uint64 `json:"rx_errors"`
	RxDropped uint64 `json:"rx_dropped"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxErrors  uint64 `json:"tx_errors"`
	TxDropped uint64 `json:"tx_dropped"`
	// RxGSO and TxGSO count super-packets moved with offload.
	RxGSO uint64 `json:"rx_gso,omitempty"`
	TxGSO uint64 `json:"tx_gso,omitempty"`
}

// LinkExtra is what the stack does not know about a link and its owner
// does: the device's counters and settings. A nil Stats keeps the stack's
// own packet and byte counts.
type LinkExtra struct {
	Offload    string
	TxQueueLen int
	Stats      *LinkStats
}

// Links returns the stack's NICs sorted by index. extra, if not nil,
// supplies device details by NIC ID.
func Links(gs *gstack.Stack, extra func(tcpip.NICID) LinkExtra) []Link {
	var out []Link
	for id, ni := range gs.NICInfo() {
		l := Link{Index: int(id), Name: ni.Name, MTU: ni.MTU, Kind: "none"}
		if ni.Flags.Loopback {
			l.Kind = "loopback"
			l.Flags = append(l.Flags, "LOOPBACK")
		} else if ni.LinkAddress == "" {
			l.Flags = append(l.Flags, "POINTOPOINT", "NOARP")
		} else {
			l.Kind = "ether"
		}
		l.State = "DOWN"
		if ni.Flags.Up {
			l.Flags = append(l.Flags, "UP")
			l.State = "UNKNOWN"
		}
		if ni.Flags.Running {
			l.Flags = append(l.Flags, "LOWER_UP")
		}
		if ni.Flags.Promiscuous {
			l.Flags = append(l.Flags, "PROMISC")
		}
		for _, pa := range ni.ProtocolAddresses {
			l.Addresses = append(l.Addresses, addressOf(pa))
		}
		sort.Slice(l.Addresses, func(i, j int) bool {
			a, b := l.Addresses[i].Prefix, l.Addresses[j].Prefix
			if a.Addr().Is4() != b.Addr().Is4() {
				return a.Addr().Is4()
			}
			return a.Addr().Less(b.Addr())
		})
		if ni.Stats.Rx.Packets != nil {
			l.Stats = LinkStats{
				RxBytes: ni.Stats.Rx.Bytes.Value(), RxPackets: ni.Stats.Rx.Packets.Value(),
				TxBytes: ni.Stats.Tx.Bytes.Value(), TxPackets: ni.Stats.Tx.Packets.Value(),
			}
			if ni.Stats.TxPacketsDroppedNoBufferSpace != nil {
				l.Stats.TxDropped = ni.Stats.TxPacketsDroppedNoBufferSpace.Value()
			}
		}
		if extra != nil {
			x := extra(id)
			l.Offload, l.TxQueueLen = x.Offload, x.TxQueueLen
			if x.Stats != nil {
				l.Stats = *x.Stats
			}
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

func addressOf(pa tcpip.ProtocolAddress) Address {
	a := addrPort(pa.AddressWithPrefix.Address, 0, pa.Protocol == header.IPv6ProtocolNumber).Addr()
	p := netip.PrefixFrom(a, pa.AddressWithPrefix.PrefixLen)
	scope := "global"
	switch {
	case a.IsLoopback():
		scope = "host"
	case a.IsLinkLocalUnicast():
		scope = "link"
	}
	return Address{Prefix: p, Scope: scope}
}
