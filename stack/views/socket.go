package views

import (
	"net/netip"
	"sort"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// The sides a socket is on.
const (
	// SideStack is a socket of the userspace stack: a service of the
	// gateway, or the stack's end of a flow it relays.
	SideStack = "stack"
	// SideSandbox is a socket of the sandbox's network namespace, as ss
	// inside the namespace lists it.
	SideSandbox = "sandbox"
)

// Socket is one transport endpoint of the stack, or a socket of the
// sandbox's namespace, as ss shows a socket.
type Socket struct {
	// Side is SideStack or SideSandbox.
	Side string `json:"side"`
	// Netid is "tcp" or "udp".
	Netid string `json:"netid"`
	// State is ss's name for the state: ESTAB, LISTEN, SYN-SENT,
	// SYN-RECV, FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, CLOSE-WAIT, LAST-ACK,
	// CLOSING, CLOSE, UNCONN.
	State string `json:"state"`
	// RecvQ and SendQ are the bytes queued for reading and for sending.
	RecvQ int `json:"recv_q"`
	SendQ int `json:"send_q"`
	// Local and Peer are the endpoint's addresses; an unconnected peer is
	// the zero value.
	Local netip.AddrPort `json:"local"`
	Peer  netip.AddrPort `json:"peer"`
	// V6 is set for IPv6 endpoints (their addresses may still be
	// unspecified).
	V6 bool `json:"v6,omitempty"`
	// V6Only is set for an IPv6 socket with IPV6_V6ONLY: read from the
	// endpoint for the stack's sockets, and from sock_diag for the
	// sandbox's; from the /proc tables, which do not carry it, inferred
	// for a socket bound to any address from an IPv4 socket bound to the
	// same port beside it.
	V6Only bool `json:"v6only,omitempty"`
	// Processes hold the socket (on the stack's side: the sandbox side of
	// the flow), filled in on request.
	Processes []Process `json:"processes,omitempty"`
	// Inode is the sandbox-side socket's inode, when it was looked up.
	Inode uint64 `json:"inode,omitempty"`
	// TCP holds TCP internals (ss -i).
	TCP *TCPInfo `json:"tcp_info,omitempty"`
}

// Listening reports whether ss counts the socket as listening (-l): a TCP
// listener or an unconnected UDP socket.
func (s Socket) Listening() bool { return s.State == "LISTEN" || s.State == "UNCONN" }

// Process is a process holding a socket.
type Process struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	FD      int    `json:"fd"`
}

// TCPInfo are TCP internals of an endpoint.
type TCPInfo struct {
	// Congestion is the congestion control algorithm.
	Congestion string `json:"congestion,omitempty"`
	// CAState is the congestion control state (Open, Disorder, CWR,
	// Recovery, Loss).
	CAState string        `json:"ca_state,omitempty"`
	RTT     time.Duration `json:"rtt_ns"`
	RTTVar  time.Duration `json:"rttvar_ns"`
	RTO     time.Duration `json:"rto_ns"`
	// Cwnd and Ssthresh are in segments.
	Cwnd     uint32 `json:"cwnd"`
	Ssthresh uint32 `json:"ssthresh"`
	// Retransmits counts retransmitted segments, Timeouts RTO
	// expirations.
	Retransmits uint64 `json:"retransmits"`
	FastRetrans uint64 `json:"fast_retransmits"`
	Timeouts    uint64 `json:"timeouts"`
	SegsIn      uint64 `json:"segs_in"`
	SegsOut     uint64 `json:"segs_out"`
	ReorderSeen bool   `json:"reorder_seen,omitempty"`
}

// Sockets returns the stack's TCP and UDP endpoints, sorted by protocol,
// local and peer address. withTCPInfo adds TCP internals.
func Sockets(gs *gstack.Stack, withTCPInfo bool) []Socket {
	return SocketsWithBacklog(gs, withTCPInfo, nil)
}

// SocketsWithBacklog is Sockets where backlog, when not nil, gives a
// listener's backlog (its Send-Q, as ss shows it), which gVisor does
// not report.
func SocketsWithBacklog(gs *gstack.Stack, withTCPInfo bool, backlog func(tcpip.Endpoint) (int, bool)) []Socket {
	var out []Socket
	// A dual-stack endpoint is registered for IPv4 and IPv6: list it once.
	seen := map[tcpip.Endpoint]bool{}
	for _, te := range gs.RegisteredEndpoints() {
		ep, ok := te.(tcpip.Endpoint)
		if !ok || seen[ep] {
			continue
		}
		seen[ep] = true
		info, ok := ep.Info().(*gstack.TransportEndpointInfo)
		if !ok {
			continue
		}
		s, ok := socketOf(ep, info, withTCPInfo)
		if ok && s.State == "LISTEN" && backlog != nil {
			if n, found := backlog(ep); found {
				s.SendQ = n
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	SortSockets(out)
	return out
}

// SortSockets orders sockets the way the views list them: the stack's
// first, then by protocol, local and peer address.
func SortSockets(ss []Socket) {
	sort.SliceStable(ss, func(i, j int) bool {
		a, b := ss[i], ss[j]
		if a.Side != b.Side {
			return a.Side == SideStack
		}
		if a.Netid != b.Netid {
			return a.Netid < b.Netid
		}
		if c := a.Local.Compare(b.Local); c != 0 {
			return c < 0
		}
		return a.Peer.Compare(b.Peer) < 0
	})
}

func socketOf(ep tcpip.Endpoint, info *gstack.TransportEndpointInfo, withTCPInfo bool) (Socket, bool) {
	s := Socket{Side: SideStack, V6: info.NetProto == header.IPv6ProtocolNumber}
	id := info.ID
	s.Local = addrPort(id.LocalAddress, id.LocalPort, s.V6)
	if id.RemotePort != 0 || id.RemoteAddress.Len() != 0 {
		s.Peer = addrPort(id.RemoteAddress, id.RemotePort, s.V6)
	}
	switch info.TransProto {
	case tcp.ProtocolNumber:
		s.Netid = "tcp"
		s.State = tcpState(tcp.EndpointState(ep.State()))
	case udp.ProtocolNumber:
		s.Netid = "udp"
		s.State = "UNCONN"
		if transport.DatagramEndpointState(ep.State()) == transport.DatagramEndpointStateConnected {
			s.State = "ESTAB"
		}
	default:
		return s, false
	}
	if n, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
		s.RecvQ = n
	}
	if n, err := ep.GetSockOptInt(tcpip.SendQueueSizeOption); err == nil {
		s.SendQ = n
	}
	// Read, not inferred as for the sandbox's sockets. As Linux's bind,
	// an IPv6 address (not v4-mapped) implies IPV6_V6ONLY.
	la := s.Local.Addr()
	s.V6Only = s.V6 && (ep.SocketOptions().GetV6Only() || la.Is6() && !la.IsUnspecified())
	if withTCPInfo && s.Netid == "tcp" {
		s.TCP = tcpInfo(ep)
	}
	return s, true
}

// addrPort converts an endpoint address; an empty address is the
// unspecified address of the endpoint's family.
func addrPort(a tcpip.Address, port uint16, v6 bool) netip.AddrPort {
	var ip netip.Addr
	switch a.Len() {
	case 4:
		ip = netip.AddrFrom4(a.As4())
	case 16:
		ip = netip.AddrFrom16(a.As16()).Unmap()
	default:
		ip = netip.IPv4Unspecified()
		if v6 {
			ip = netip.IPv6Unspecified()
		}
	}
	return netip.AddrPortFrom(ip, port)
}

func tcpState(st tcp.EndpointState) string {
	switch st {
	case tcp.StateEstablished:
		return "ESTAB"
	case tcp.StateSynSent, tcp.StateConnecting:
		return "SYN-SENT"
	case tcp.StateSynRecv:
		return "SYN-RECV"
	case tcp.StateFinWait1:
		return "FIN-WAIT-1"
	case tcp.StateFinWait2:
		return "FIN-WAIT-2"
	case tcp.StateTimeWait:
		return "TIME-WAIT"
	case tcp.StateCloseWait:
		return "CLOSE-WAIT"
	case tcp.StateLastAck:
		return "LAST-ACK"
	case tcp.StateListen:
		return "LISTEN"
	case tcp.StateClosing:
		return "CLOSING"
	}
	return "CLOSE"
}

func tcpInfo(ep tcpip.Endpoint) *TCPInfo {
	var ti tcpip.TCPInfoOption
	if err := ep.GetSockOpt(&ti); err != nil {
		return nil
	}
	out := &TCPInfo{
		CAState: caState(ti.CcState), RTT: ti.RTT, RTTVar: ti.RTTVar, RTO: ti.RTO,
		Cwnd: ti.SndCwnd, Ssthresh: ti.SndSsthresh, ReorderSeen: ti.ReorderSeen,
	}
	var cc tcpip.CongestionControlOption
	if err := ep.GetSockOpt(&cc); err == nil {
		out.Congestion = string(cc)
	}
	if st, ok := ep.Stats().(*tcp.Stats); ok {
		out.Retransmits = st.SendErrors.Retransmits.Value()
		out.FastRetrans = st.SendErrors.FastRetransmit.Value()
		out.Timeouts = st.SendErrors.Timeouts.Value()
		out.SegsIn = st.SegmentsReceived.Value()
		out.SegsOut = st.SegmentsSent.Value()
	}
	return out
}

func caState(s tcpip.CongestionControlState) string {
	switch s {
	case tcpip.Open:
		return "Open"
	case tcpip.RTORecovery:
		return "Loss"
	case tcpip.FastRecovery:
		return "Recovery"
	case tcpip.SACKRecovery:
		return "Recovery"
	case tcpip.Disorder:
		return "Disorder"
	}
	return ""
}
