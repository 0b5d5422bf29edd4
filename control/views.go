package control

import (
	"net/netip"
	"time"
)

// The wire types of the views (GET /v1/sockets, /v1/links, /v1/routes)
// and of the forwards (/v1/forwards). They are the control plane's own,
// so that a client links neither the stack nor gVisor; package instance
// maps them to and from the stack's types (stack/views, stack/forward).

// The sides of the sockets (Socket.Side) and the choice of them
// (SocketQuery.Side).
const (
	// SideStack are the userspace stack's sockets: its services and its
	// ends of the flows it relays.
	SideStack = "stack"
	// SideSandbox are the sockets of the sandbox's network namespace,
	// as ss inside it lists them.
	SideSandbox = "sandbox"
	// SideAll are both.
	SideAll = "all"
)

// Socket is one of the stack's sockets or one of the sandbox's (GET
// /v1/sockets), as ss shows it.
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
	// V6 is set for IPv6 endpoints.
	V6 bool `json:"v6,omitempty"`
	// V6Only is set for a sandbox IPv6 socket bound to any address that
	// takes no IPv4 (inferred: see package stack/views).
	V6Only bool `json:"v6only,omitempty"`
	// Processes hold the socket; for the stack's, the sandbox side of
	// the flow (with processes=true).
	Processes []Process `json:"processes,omitempty"`
	// Inode is the sandbox-side socket's inode, when it was looked up.
	Inode uint64 `json:"inode,omitempty"`
	// TCP holds TCP internals (with tcp_info=true).
	TCP *TCPInfo `json:"tcp_info,omitempty"`
}

// Process is a sandbox process holding a socket.
type Process struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	FD      int    `json:"fd"`
}

// TCPInfo is a TCP socket's internals (ss -i).
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

// Link is one of the stack's interfaces (GET /v1/links), as ip link
// shows it.
type Link struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	// Flags are ip's flags: POINTOPOINT, NOARP, UP, LOWER_UP, PROMISC,
	// LOOPBACK.
	Flags []string `json:"flags"`
	MTU   uint32   `json:"mtu"`
	// State is the operational state: UNKNOWN (up, as for a TUN), DOWN.
	State string `json:"state"`
	// Kind is the link type ("none" for a TUN).
	Kind string `json:"kind"`
	// Offload is the device's offload mode ("vnet_hdr tso" or "off"),
	// empty when unknown.
	Offload    string `json:"offload,omitempty"`
	TxQueueLen int    `json:"txqueuelen,omitempty"`
	// Addresses are the stack's own addresses on the link.
	Addresses []Address `json:"addresses,omitempty"`
	Stats     LinkStats `json:"stats"`
}

// Address is an address of a link.
type Address struct {
	Prefix netip.Prefix `json:"prefix"`
	// Scope is "global", "link" or "host".
	Scope string `json:"scope"`
}

// LinkStats are a link's counters.
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

// Route is one of the stack's routes (GET /v1/routes).
type Route struct {
	Destination netip.Prefix `json:"dst"`
	// Gateway is the next hop; invalid for on-link routes.
	Gateway netip.Addr `json:"gateway,omitzero"`
	Device  string     `json:"dev"`
	MTU     uint32     `json:"mtu,omitempty"`
}

// Forward is a running port forward (GET /v1/forwards).
type Forward struct {
	// ID names the forward for removal: its Spec in "tunstack run -p"
	// syntax.
	ID   string      `json:"id"`
	Spec ForwardSpec `json:"spec"`
	// Listen are the host addresses actually listened on.
	Listen []string `json:"listen"`
	// Active counts open connections (UDP: flows).
	Active int64 `json:"active"`
	// Total counts connections (UDP: flows) since the forward was added.
	Total int64 `json:"total"`
	// Spliced counts the TCP connections of Total that were spliced
	// kernel to kernel instead of crossing the stack (README, "Which path
	// a TCP forward takes").
	Spliced int64     `json:"spliced,omitempty"`
	Created time.Time `json:"created"`
}

// ForwardSpec is what a forward carries where.
type ForwardSpec struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// HostIP is the host address listened on; invalid means every
	// address (IPv4 and IPv6).
	HostIP netip.Addr `json:"host_ip,omitzero"`
	// HostPort is the host port; unused with HostPath.
	HostPort uint16 `json:"host_port,omitempty"`
	// HostPath is a unix socket path listened on instead of a port.
	HostPath string `json:"host_path,omitempty"`
	// SandboxPort is the port in the sandbox.
	SandboxPort uint16 `json:"sandbox_port"`
}
