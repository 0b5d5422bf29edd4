package instance

import (
	"log/slog"
	"os"
	"syscall"

	"github.com/tunstack/tunstack/control"
)

// FDReserve is how many file descriptors the relays leave free for the
// rest of the process: the control socket and its connections, forward
// listeners and their accepted clients (a spliced forward's connection
// holds two, its client and its socket in the sandbox, plus a pipe while
// bytes move; the sandbox's pool keeps up to 8 ready sockets per family),
// capture files. The relays stop taking new host sockets before they
// would eat into it.
const FDReserve = 64

// minFDBudget keeps the relays usable when the limit is tiny (ulimit -n
// 128): a few flows rather than none.
const minFDBudget = 16

// hostFDBudget makes sure RLIMIT_NOFILE's soft limit is raised to the hard
// limit and returns how many descriptors the relays may hold: the limit,
// less those open now, less FDReserve.
//
// Go's runtime already raises the soft limit at start, to one below the
// hard limit (its way of noticing a later prlimit), and restores the
// original for the programs it executes, so the sandboxed command keeps
// the usual limit. The raise here is only for when it did not, and is
// skipped otherwise so that restoring keeps working.
func hostFDBudget(log *slog.Logger) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read RLIMIT_NOFILE; no host fd budget", "err", err)
		return 0
	}
	if rl.Cur+1 < rl.Max {
		raised := syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			log.Warn("cannot raise RLIMIT_NOFILE to its hard limit", "soft", rl.Cur, "hard", rl.Max, "err", err)
		} else {
			rl = raised
		}
	}
	budget := int(min(rl.Cur, 1<<30)) - openFDs() - FDReserve
	if budget < minFDBudget {
		log.Warn("few file descriptors: the relays get a minimal budget (raise ulimit -n)", "limit", rl.Cur, "budget", minFDBudget)
		budget = minFDBudget
	}
	return budget
}

// openFDs counts the process's open descriptors.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// limitStats are the gateway's caps in the control API's terms.
func (in *Instance) limitStats() []control.Limit {
	if in.Gateway == nil {
		return nil
	}
	var out []control.Limit
	for _, s := range in.Gateway.Stats() {
		out = append(out, control.Limit{Name: s.Name, Max: s.Max, InUse: s.InUse, Dropped: s.Dropped})
	}
	return out
}
