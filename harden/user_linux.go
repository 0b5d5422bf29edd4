package harden

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// DefaultUser is the user a root instance switches to.
const DefaultUser = "nobody"

// ids is a resolved user to switch to.
type ids struct {
	uid, gid int
}

// lookupUser resolves NAME, UID or UID:GID (a user without a group gets the
// user's primary group, or the GID equal to the UID when the user is not in
// the password database). Root is refused: switching to it confines nothing.
func lookupUser(spec string) (ids, error) {
	if spec == "" {
		spec = DefaultUser
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	var id ids
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		id = ids{uid: n, gid: n}
		if u, err := user.LookupId(name); err == nil {
			id.gid, _ = strconv.Atoi(u.Gid)
		}
	} else {
		u, err := user.Lookup(name)
		switch {
		case err == nil:
			id.uid, _ = strconv.Atoi(u.Uid)
			id.gid, _ = strconv.Atoi(u.Gid)
		case name == DefaultUser:
			// A minimal system without nobody in /etc/passwd: the
			// overflow uid every Linux maps unknown users to.
			id = ids{uid: 65534, gid: 65534}
		default:
			return ids{}, fmt.Errorf("--user %q: %w", spec, err)
		}
	}
	if hasGroup {
		g, err := strconv.Atoi(group)
		if err != nil || g < 0 {
			return ids{}, fmt.Errorf("--user %q: group %q is not a numeric GID", spec, group)
		}
		id.gid = g
	}
	if id.uid == 0 || id.gid == 0 {
		return ids{}, fmt.Errorf("--user %q: uid %d gid %d: must not be root", spec, id.uid, id.gid)
	}
	return id, nil
}

// allThreads runs a system call on every thread of the process (psx: with
// cgo through its own signal, without through Go's AllThreadsSyscall).
func allThreads(what string, nr, a1, a2, a3 uintptr) error {
	// Syscall6: prctl wants its unused arguments zero.
	if _, _, e := psx.Syscall6(nr, a1, a2, a3, 0, 0, 0); e != 0 {
		return fmt.Errorf("%s: %w", what, e)
	}
	return nil
}

// setNoNewPrivs sets no_new_privs on every thread.
func setNoNewPrivs() error {
	return allThreads("prctl(PR_SET_NO_NEW_PRIVS)", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0)
}

// switchUser makes every thread run as id with only the capabilities in
// keep: effective and permitted hold keep, the bounding set nothing else,
// the inheritable and ambient sets nothing. The process never executes a
// program after setup, so ambient capabilities would add nothing.
func switchUser(id ids, keep []uintptr) error {
	// The bounding set first, while CAP_SETPCAP is still held.
	mask, err := trimBounding(keep)
	if err != nil {
		return err
	}
	// KEEPCAPS lets the permitted set survive the uid change below.
	if err := allThreads("prctl(PR_SET_KEEPCAPS)", unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
		return err
	}
	// Go applies these to every thread (syscall docs, since Go 1.16).
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(id.gid, id.gid, id.gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", id.gid, err)
	}
	if err := syscall.Setresuid(id.uid, id.uid, id.uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", id.uid, err)
	}
	if err := allThreads("prctl(PR_SET_KEEPCAPS, 0)", unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
		return err
	}
	return capsetAll(mask)
}

// trimBounding drops every capability not in keep from the bounding set of
// every thread, and returns keep as a capability mask.
func trimBounding(keep []uintptr) (uint64, error) {
	last, err := lastCap()
	if err != nil {
		return 0, err
	}
	var mask uint64
	for _, c := range keep {
		mask |= 1 << c
	}
	for c := uintptr(0); c <= last; c++ {
		if mask&(1<<c) != 0 {
			continue
		}
		if err := allThreads(fmt.Sprintf("drop capability %d from the bounding set", c), unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0); err != nil {
			return 0, err
		}
	}
	return mask, nil
}

// capsetAll sets the effective and permitted capabilities of every thread
// to mask, and the inheritable ones to none.
func capsetAll(mask uint64) error {
	// psx.Syscall3 is go:uintptrescapes: the pointers stay valid while
	// the kernel reads them on every thread.
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	lo, hi := uint32(mask), uint32(mask>>32)
	data := &[2]unix.CapUserData{{Effective: lo, Permitted: lo}, {Effective: hi, Permitted: hi}}
	if _, _, e := psx.Syscall3(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset %#x: %w", mask, e)
	}
	return nil
}

// lowerCaps lowers the effective and permitted capabilities of every
// thread to those in keep that the process holds, and returns them.
func lowerCaps(keep uint64) (uint64, error) {
	st, err := readStatus("/proc/self/status")
	if err != nil {
		return 0, err
	}
	if st.caps == 0 {
		return 0, nil
	}
	return st.caps & keep, capsetAll(st.caps & keep)
}

// lastCap is the highest capability number the kernel knows.
func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("capabilities: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("capabilities: /proc/sys/kernel/cap_last_cap: %q", b)
	}
	return uintptr(n), nil
}
