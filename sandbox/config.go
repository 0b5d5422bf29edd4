package sandbox

import (
	"errors"
	"fmt"
)

// childArg is argv[1] of the re-executed binary. The program's main must
// call ChildMain first thing when it sees it. argv[2] names the role:
// roleInit, roleExec, or nothing for an attach child started by nsenter.
const childArg = "__tunstack-sandbox-child"

// The roles of the re-executed binary (see doc.go).
const (
	roleInit = "init"
	roleExec = "exec"
)

// Privilege modes of a sandbox (childConfig.Mode).
const (
	// modeRootless: the caller is mapped to root in a one-uid user
	// namespace.
	modeRootless = "rootless"
	// modeRoot: root is mapped to root over the whole id range, in user
	// namespaces of their own, so root keeps its file access but holds
	// capabilities only over the sandbox's namespaces.
	modeRoot = "root"
	// modeHost: no user namespace; root keeps the host's capabilities.
	modeHost = "host"
)

// ErrNotFound is returned (wrapped) when the command does not exist.
var ErrNotFound = errors.New("command not found")

// ErrNotExecutable is returned (wrapped) when the command exists but
// cannot be executed: no execute permission, or a directory. Shells and
// podman exit 126 for it, 127 being for ErrNotFound.
var ErrNotExecutable = errors.New("not executable")

// childConfig is what the parent tells the child.
type childConfig struct {
	Command []string `json:"command"`
	// Device is the device to create and configure, defaults filled in
	// and validated by the parent.
	Device DeviceConfig `json:"device"`
	// ResolvConf is the content for the sandbox's /etc/resolv.conf; empty
	// leaves the host's in place.
	ResolvConf string `json:"resolv_conf"`
	// HidePaths are directories covered with an empty tmpfs in the
	// sandbox (the control sockets' directory).
	HidePaths []string `json:"hide_paths,omitempty"`
	// Mode is modeRootless, modeRoot or modeHost.
	Mode string `json:"mode,omitempty"`
	// PIDNS: the init child is PID 1 of a new PID namespace and mounts
	// its /proc.
	PIDNS bool `json:"pidns,omitempty"`
	// Notes are the init child's notes, passed on to the exec child.
	Notes []string `json:"notes,omitempty"`
	// Attach configures an existing namespace (the child was started in
	// it by nsenter) and exits instead of running a command.
	Attach bool `json:"attach,omitempty"`
}

// childReply is the child's answer: the device (passed with it), or why
// there is none.
type childReply struct {
	// Error is a setup failure (the child exits 125).
	Error string `json:"error,omitempty"`
	// NotFound is the command that does not exist (the child exits 127).
	NotFound string `json:"not_found,omitempty"`
	// NotExecutable is the command that exists but cannot be executed,
	// with the reason (the child exits 126).
	NotExecutable string   `json:"not_executable,omitempty"`
	TunName       string   `json:"tun_name,omitempty"`
	Offload       bool     `json:"offload,omitempty"`
	Notes         []string `json:"notes,omitempty"`
}

// err is the failure the reply reports, or nil.
func (r childReply) err() error {
	switch {
	case r.NotFound != "":
		return fmt.Errorf("%s: %w", r.NotFound, ErrNotFound)
	case r.NotExecutable != "":
		return fmt.Errorf("%s (%w)", r.NotExecutable, ErrNotExecutable)
	case r.Error != "":
		return fmt.Errorf("sandbox: %s", r.Error)
	}
	return nil
}
