package control

import (
	"context"
	"io"
	"net/netip"
	"time"
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
	Gateways []netip.Addr `json:"gateways,omitempty"`
	DNS      []netip.Addr `json:"dns,omitempty"`
	Started  time.Time    `json:"started"`
	Forwards []Forward    `json:"forwards"`
	// Socket is the control socket's path.
	Socket string `json:"socket"`
	// AllowHosts are the egress allowlist's patterns (run --allow-host);
	// empty when egress is not restricted.
	AllowHosts []string `json:"allow_hosts,omitempty"`
	// Limits are the instance's resource caps with what each turned
	// away.
	Limits []Limit `json:"limits,omitempty"`
	// Goroutines is the tunstack process's goroutine count (a leak shows
	// as a count that does not come back down).
	Goroutines int `json:"goroutines,omitempty"`
	// Firewall holds the firewall's counters: fragment reassembly,
	// conntrack entries and drops at its bound, LOG lines dropped.
	Firewall *FirewallStats `json:"firewall,omitempty"`
}

// Limit is one resource cap of an instance ("tcp-flows", "udp-flows",
// "ping-flows", "dns-queries", "dns-tcp-conns", "host-fds").
type Limit struct {
	Name string `json:"name"`
	// Max is the cap; 0 means none.
	Max int64 `json:"max"`
	// InUse is how many are open now.
	InUse int64 `json:"in_use"`
	// Dropped counts what was turned away at the cap since the start.
	Dropped uint64 `json:"dropped"`
}

// Error is the body of every failed request.
type Error struct {
	Error string `json:"error"`
	// ExitStatus, when not zero, is the status the command-line tool
	// being emulated exits with for this error (iptables: 1 for what the
	// kernel refuses, 2 for a bad command line).
	ExitStatus int `json:"exit_status,omitempty"`
}

// StatusError is an error that carries the exit status the emulated tool
// would end with; backends return it and the server passes the status on.
type StatusError struct {
	Err    error
	Status int
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

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
	// Side picks the sockets: SideStack (the default, when empty),
	// SideSandbox or SideAll.
	Side string
}

// RequestError is a request a backend refused as invalid: the server
// answers 400 rather than the status it gives the backend's other
// failures.
type RequestError struct{ Err error }

func (e *RequestError) Error() string { return e.Err.Error() }
func (e *RequestError) Unwrap() error { return e.Err }

// CaptureStream is a packet capture a backend opened for GET
// /v1/capture; the server writes it out as a pcap stream.
type CaptureStream interface {
	// WriteHeader writes the pcap file header to w; the packets follow.
	WriteHeader(w io.Writer) error
	// WriteNext waits for the next packet and writes it to w as one pcap
	// record. It returns false when the capture ended or ctx is done.
	WriteNext(ctx context.Context, w io.Writer) (bool, error)
	// Queued counts the packets ready to write without waiting.
	Queued() int
	// Dropped counts the packets lost to a slow reader.
	Dropped() uint64
	// Close ends the capture.
	Close()
}

// FirewallStats are the firewall's counters (Info.Firewall).
type FirewallStats struct {
	Defrag    DefragStats    `json:"defrag"`
	Conntrack ConntrackStats `json:"conntrack"`
	Log       LogStats       `json:"log"`
}

// DefragStats count fragment reassembly before the chains.
type DefragStats struct {
	Fragments   uint64 `json:"fragments"`
	Reassembled uint64 `json:"reassembled"`
	Failed      uint64 `json:"failed"`
	Timeouts    uint64 `json:"timeouts"`
	Overlaps    uint64 `json:"overlaps"`
	Oversize    uint64 `json:"oversize"`
	MemDrops    uint64 `json:"mem_drops"`
	// Held is the number of incomplete datagrams, Mem their accounted
	// memory in bytes.
	Held int `json:"held"`
	Mem  int `json:"mem"`
}

// ConntrackStats describe the connection tracking table.
type ConntrackStats struct {
	// Entries is the number of tracked flows, Max the bound.
	Entries int `json:"entries"`
	Max     int `json:"max"`
	// EarlyDrops are unassured flows evicted for new ones; Drops are new
	// flows left untracked because every candidate was assured.
	EarlyDrops uint64 `json:"early_drops"`
	Drops      uint64 `json:"drops"`
}

// LogStats count the LOG target's lines.
type LogStats struct {
	// Written lines reached the logger; Dropped found the queue full
	// (the logger was slow); RateLimited came over the rate.
	Written     uint64 `json:"written"`
	Dropped     uint64 `json:"dropped"`
	RateLimited uint64 `json:"rate_limited"`
}
