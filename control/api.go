package control

import (
	"net/netip"
	"time"

	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack/forward"
)

// APIVersion is the path prefix of this API.
const APIVersion = "v1"

// Info describes a running instance (GET /v1/info).
type Info struct {
	Name string `json:"name"`
	// PID is the tunstack process.
	PID int `json:"pid"`
	// Kind is "run" or "attach".
	Kind string `json:"kind"`
	// Command is the sandboxed command (run) or the target (attach).
	Command []string `json:"command"`
	// SandboxPID is the command's (or attach target's) PID.
	SandboxPID int `json:"sandbox_pid,omitempty"`
	// Interface is the TUN device in the sandbox.
	Interface string `json:"interface"`
	// Addresses are the sandbox's addresses.
	Addresses []netip.Prefix `json:"addresses"`
	// Gateways and DNS are the stack's addresses seen from the sandbox.
	Gateways []netip.Addr   `json:"gateways,omitempty"`
	DNS      []netip.Addr   `json:"dns,omitempty"`
	Started  time.Time      `json:"started"`
	Forwards []forward.Info `json:"forwards"`
	// Socket is the control socket's path.
	Socket string `json:"socket"`
	// Firewall holds the firewall's counters: fragment reassembly,
	// conntrack entries and drops at its bound, LOG lines dropped.
	Firewall *netfilter.Stats `json:"firewall,omitempty"`
}

// Error is the body of every failed request.
type Error struct {
	Error string `json:"error"`
}

// CaptureRequest selects packets to stream (GET /v1/capture).
type CaptureRequest struct {
	// Interface is the NIC to capture on ("" for the instance's TUN).
	Interface string
	// Filter is a tcpdump expression ("" captures everything).
	Filter string
	// Count stops the stream after this many packets (0: no limit).
	Count int
	// SnapLen truncates packets (0: 262144).
	SnapLen int
}

// SocketQuery selects socket details (GET /v1/sockets).
type SocketQuery struct {
	// Processes looks up the sandbox processes owning each flow.
	Processes bool
	// TCPInfo adds TCP internals.
	TCPInfo bool
}
