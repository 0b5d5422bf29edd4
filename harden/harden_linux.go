package harden

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Options select how far Apply confines the process.
type Options struct {
	// Disabled skips everything (tunstack --no-sandbox).
	Disabled bool
	// NoSeccomp skips the seccomp filter (tunstack --no-seccomp);
	// no_new_privs and the user switch still apply.
	NoSeccomp bool
	// User is the user a root process switches to: NAME, UID or UID:GID
	// ("" means DefaultUser).
	User string
	// Signals keeps CAP_KILL after a switch from root: the command runs
	// as root and tunstack forwards signals to it.
	Signals bool
	// RemoveAtExit are unix sockets a root process removes when it exits
	// (its control socket, unix-socket forwards): once it runs as another
	// user it may not unlink them itself, so a helper does (CleanupMain).
	RemoveAtExit []string
	// SeccompLogOnly allows every call and has the kernel log those the
	// allowlist would refuse, for maintaining the allowlist.
	SeccompLogOnly bool
	// Logger receives what was done; nil discards it.
	Logger *slog.Logger
}

// Apply confines the calling process: no_new_privs, then (as root) the
// switch to o.User keeping only CAP_NET_BIND_SERVICE (and CAP_KILL with
// o.Signals), then the seccomp filter; it checks every thread afterwards.
// It cannot be undone. An unprivileged process keeps its user; file
// capabilities it may hold are lowered to CAP_NET_BIND_SERVICE.
func Apply(o Options) error {
	if o.Disabled {
		return nil
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := setNoNewPrivs(); err != nil {
		return fmt.Errorf("confine: %w", err)
	}
	var want status
	var err error
	if os.Geteuid() == 0 {
		want, err = dropRoot(o)
	} else {
		want.caps, err = lowerCaps(1 << unix.CAP_NET_BIND_SERVICE)
	}
	if err != nil {
		return fmt.Errorf("confine: %w", err)
	}
	log.Debug("confine: privileges dropped", "uid", os.Getuid(), "caps", fmt.Sprintf("%#x", want.caps))
	want.noNewPrivs = true
	if !o.NoSeccomp {
		if err := installFilter(o.SeccompLogOnly); err != nil {
			return fmt.Errorf("confine: %w", err)
		}
		want.seccomp = true
		if o.SeccompLogOnly {
			log.Warn("confine: the seccomp filter only logs the calls it would refuse (TUNSTACK_SECCOMP_LOG=1)")
		}
	}
	return checkThreads(want)
}

// dropRoot starts the cleanup helper for o.RemoveAtExit and switches to
// o.User with only the capabilities the running instance needs (root of a
// user namespace keeps its user and drops the rest); it returns what every
// thread must show.
func dropRoot(o Options) (status, error) {
	keep := []uintptr{unix.CAP_NET_BIND_SERVICE}
	if o.Signals {
		keep = append(keep, unix.CAP_KILL)
	}
	var mask uint64
	for _, c := range keep {
		mask |= 1 << c
	}
	if inUserNS() {
		// Root of a user namespace (podman's, rootlesskit's, "unshare
		// -r") is an unprivileged user outside it, and the files it
		// works with (an API socket in the caller's directory) are
		// owned by it: keep the user, hold only the kept capabilities.
		caps, err := lowerCaps(mask)
		if err != nil {
			return status{}, err
		}
		return status{caps: caps}, nil
	}
	id, err := lookupUser(o.User)
	if err != nil {
		return status{}, err
	}
	if len(o.RemoveAtExit) > 0 {
		if err := startCleanup(o.RemoveAtExit); err != nil {
			return status{}, err
		}
	}
	if err := switchUser(id, keep); err != nil {
		return status{}, fmt.Errorf("switch to uid %d gid %d: %w", id.uid, id.gid, err)
	}
	return status{uid: id.uid, checkUID: true, caps: mask}, nil
}

// inUserNS reports whether this process runs in a user namespace other
// than the initial one (whose uid map is the whole range onto itself).
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// status is the confinement every thread must show.
type status struct {
	uid        int
	checkUID   bool   // uid is checked only after a switch
	caps       uint64 // effective and permitted
	noNewPrivs bool
	seccomp    bool
}

// checkThreads reads every thread's status and fails if one is less
// confined than want: credentials, capabilities and seccomp belong to
// threads, and a thread missed would keep what the others gave up.
func checkThreads(want status) error {
	dirs, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(dirs) == 0 {
		return fmt.Errorf("confine: list threads: %v", err)
	}
	var errs []error
	for _, path := range dirs {
		got, err := readStatus(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil {
			return fmt.Errorf("confine: %w", err)
		}
		if (want.checkUID && got.uid != want.uid) || got.caps&^want.caps != 0 || got.noNewPrivs != want.noNewPrivs || (want.seccomp && !got.seccomp) {
			errs = append(errs, fmt.Errorf("%s: uid %d, capabilities %#x, no_new_privs %v, seccomp %v; want uid %d, capabilities %#x, no_new_privs %v, seccomp %v",
				path, got.uid, got.caps, got.noNewPrivs, got.seccomp, want.uid, want.caps, want.noNewPrivs, want.seccomp))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("confine: a thread is not confined: %w", errors.Join(errs...))
	}
	return nil
}

// readStatus parses the lines of /proc/.../status that confinement sets.
func readStatus(path string) (status, error) {
	f, err := os.Open(path)
	if err != nil {
		return status{}, err
	}
	defer f.Close()
	var st status
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		switch key {
		case "Uid":
			// Real, effective, saved and filesystem uid must all
			// be the one switched to; a mismatch reads as -1.
			st.uid, _ = strconv.Atoi(fields[0])
			for _, f := range fields[1:] {
				if f != fields[0] {
					st.uid = -1
				}
			}
		case "CapEff", "CapPrm":
			v, err := strconv.ParseUint(fields[0], 16, 64)
			if err != nil {
				return status{}, fmt.Errorf("%s: %s %q", path, key, fields[0])
			}
			st.caps |= v
		case "NoNewPrivs":
			st.noNewPrivs = fields[0] == "1"
		case "Seccomp":
			st.seccomp = fields[0] == "2"
		}
	}
	return st, sc.Err()
}
