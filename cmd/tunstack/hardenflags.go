package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/tunstack/tunstack/harden"
)

// seccompLogEnv, set to 1, makes the seccomp filter log instead of refuse
// (for maintaining the allowlist; see package harden).
const seccompLogEnv = "TUNSTACK_SECCOMP_LOG"

// hardenFlags confine tunstack itself once the instance is set up.
type hardenFlags struct {
	noSandbox, noSeccomp bool
	user                 string
}

func (h *hardenFlags) add(f *pflag.FlagSet) {
	f.BoolVar(&h.noSandbox, "no-sandbox", false, "do not confine tunstack itself after setup: no user switch, no seccomp filter, no no_new_privs (debugging)")
	f.BoolVar(&h.noSeccomp, "no-seccomp", false, "confine tunstack itself without the seccomp filter (debugging)")
	f.StringVar(&h.user, "user", harden.DefaultUser, "as root, the user NAME, UID or UID:GID tunstack switches to after setup")
}

// options are the confinement for an instance; signals says whether
// tunstack forwards signals to a command (which runs as root when tunstack
// does).
func (h *hardenFlags) options(signals bool) *harden.Options {
	return &harden.Options{
		Disabled: h.noSandbox, NoSeccomp: h.noSeccomp, User: h.user, Signals: signals,
		SeccompLogOnly: os.Getenv(seccompLogEnv) == "1",
	}
}
