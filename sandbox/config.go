package sandbox

import (
	"net/netip"
)

// childArg is argv[1] of the re-executed binary. The program's main must
// call ChildMain first thing when it sees it.
const childArg = "__tunstack-sandbox-child"

// childConfig is what the parent tells the child.
type childConfig struct {
	Command    []string     `json:"command"`
	TunName    string       `json:"tun_name"`
	Offload    string       `json:"offload"`
	MTU        int          `json:"mtu"`
	TxQueueLen int          `json:"txqueuelen"`
	Queues     int          `json:"queues"`
	Addr4      netip.Prefix `json:"addr4"`
	Gateway4   netip.Addr   `json:"gateway4"`
	Addr6      netip.Prefix `json:"addr6"`
	Gateway6   netip.Addr   `json:"gateway6"`
	// ResolvConf is the content for the sandbox's /etc/resolv.conf; empty
	// leaves the host's in place.
	ResolvConf string `json:"resolv_conf"`
	// HidePaths are directories covered with an empty tmpfs in the
	// sandbox (the control sockets' directory).
	HidePaths []string `json:"hide_paths,omitempty"`
	// Attach configures an existing namespace (the child was started in
	// it by nsenter) and exits instead of running a command.
	Attach bool `json:"attach,omitempty"`
	// TAP, Unconfigured and MAC are AttachConfig's.
	TAP          bool   `json:"tap,omitempty"`
	Unconfigured bool   `json:"unconfigured,omitempty"`
	MAC          string `json:"mac,omitempty"`
}

// childReply is the child's answer.
type childReply struct {
	Error   string   `json:"error,omitempty"`
	TunName string   `json:"tun_name,omitempty"`
	Offload bool     `json:"offload,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}
