package harden

import (
	"fmt"
	"runtime"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// allowlist is the system calls the host-side process makes once it is set
// up, found by tracing the end-to-end tests (forwards over TCP, UDP and unix
// sockets, tcpdump and --pcap, every control request including the fd
// handover, ping, the DNS relay, attach, signals to the command) and by
// reading the Go runtime. Names this architecture does not have are
// skipped. The hot path comes first: the filter compares in this order.
//
// Calls whose arguments are checked (clone, socket, socketpair, ioctl)
// are not here; see filterPolicy.
var allowlist = []string{
	// Hot path: the TUN device, relayed sockets, the scheduler.
	"read", "write", "readv", "writev", "pread64", "pwrite64",
	"recvfrom", "sendto", "recvmsg", "sendmsg", "recvmmsg", "sendmmsg",
	"futex", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_ctl",
	"nanosleep", "clock_nanosleep", "sched_yield", "getpid", "gettid",
	"tgkill", "rt_sigreturn", "madvise", "mmap", "munmap",
	"clock_gettime", "gettimeofday", "getrandom",

	// Go runtime: signals, threads (clone is checked below), memory.
	"rt_sigaction", "rt_sigprocmask", "sigaltstack", "mprotect", "exit",
	"exit_group", "restart_syscall", "sched_getaffinity", "set_robust_list",
	"rseq", "brk", "uname", "getrlimit",

	// Files: pcap output, /proc of the sandbox for "ss -p", the control
	// socket's removal.
	"openat", "close", "fstat", "newfstatat", "statx", "lseek", "getdents64",
	"readlinkat", "fcntl", "unlinkat",

	// The fd handover polls a returned descriptor for a hang-up.
	"ppoll", "poll",

	// Sockets (socket itself is checked below): forwards, relays, the
	// control socket and its fd handover.
	"bind", "listen", "accept4", "connect", "getsockname", "getpeername",
	"setsockopt", "getsockopt", "shutdown",

	// The command: signals forwarded to it, its exit status.
	"kill", "pidfd_send_signal", "wait4", "waitid",

	// The control socket's peer check.
	"getuid", "geteuid", "getgid", "getegid",
}

// socketDomains are the address families the running stack opens: unix
// (control, unix-socket forwards), IPv4 and IPv6 (relays, forwards, ping
// sockets). Netlink, packet, alg, vsock and the rest stay closed.
var socketDomains = []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}

// ioctls are the device requests made after setup: TUNGETIFF is how an
// attached instance notices its namespace is gone; PIDFD_GET_NET_NAMESPACE
// is how the control socket names a client's network namespace (package
// control).
var ioctls = []uint64{unix.TUNGETIFF, unix.PIDFD_GET_NET_NAMESPACE}

// filterPolicy builds the seccomp policy: the allowlist, clone only for
// threads, socket only for socketDomains, socketpair only for AF_UNIX,
// ioctl only for ioctls, prlimit64 only on itself, and clone3 answered
// ENOSYS.
//
// The default action is EPERM, not killing the process. A call the trace
// missed then fails like any refused call, with an error the caller
// already handles and reports (one forward or control request fails, the
// instance and the sandboxed command go on), while kill-process would end
// the instance, and the command with it, with nothing but a SIGSYS in the
// kernel log. Either way the refused call never runs, so an attacker gains
// nothing from the difference. logOnly turns every refusal into "allow
// and log" for tracing (see the package doc).
func filterPolicy(logOnly bool) (seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Policy{}, fmt.Errorf("seccomp: %w", err)
	}
	deny := seccomp.ActionErrno // EPERM
	if logOnly {
		deny = seccomp.ActionLog
	}
	allow := seccomp.SyscallGroup{Action: seccomp.ActionAllow}
	for _, name := range allowlist {
		if _, ok := info.SyscallNames[name]; ok {
			allow.Names = append(allow.Names, name)
		}
	}
	// Go starts threads with clone(CLONE_VM|...|CLONE_THREAD); a clone
	// without CLONE_THREAD would be a fork, which the stack never does.
	allow.NamesWithCondtions = append(allow.NamesWithCondtions, seccomp.NameWithConditions{
		Name:       "clone",
		Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_THREAD}},
	})
	for _, d := range socketDomains {
		allow.NamesWithCondtions = append(allow.NamesWithCondtions, seccomp.NameWithConditions{
			Name:       "socket",
			Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: d}},
		})
	}
	// Its own resource limits only (pid 0): reading the descriptor limit
	// to keep a reserve is harmless, and setting it can only stay under
	// the hard limit now that CAP_SYS_RESOURCE is gone.
	allow.NamesWithCondtions = append(allow.NamesWithCondtions, seccomp.NameWithConditions{
		Name:       "prlimit64",
		Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: 0}},
	})
	// Unix socket pairs carry the fd handover's UDP flows.
	allow.NamesWithCondtions = append(allow.NamesWithCondtions, seccomp.NameWithConditions{
		Name:       "socketpair",
		Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: unix.AF_UNIX}},
	})
	for _, req := range ioctls {
		allow.NamesWithCondtions = append(allow.NamesWithCondtions, seccomp.NameWithConditions{
			Name:       "ioctl",
			Conditions: seccomp.ArgumentConditions{{Argument: 1, Operation: seccomp.Equal, Value: req}},
		})
	}
	groups := []seccomp.SyscallGroup{allow}
	if _, ok := info.SyscallNames["clone3"]; ok {
		// clone3's flags live in memory the filter cannot read, so it
		// cannot be limited to threads; ENOSYS makes glibc's
		// pthread_create (cgo builds) fall back to clone, which is.
		groups = append(groups, seccomp.SyscallGroup{
			Names:  []string{"clone3"},
			Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
		})
	}
	return seccomp.Policy{DefaultAction: deny, Syscalls: groups}, nil
}

// InstallFilter sets no_new_privs and installs the allowlist filter on
// every thread of the process (SECCOMP_FILTER_FLAG_TSYNC): from then on a
// system call not on the list fails with EPERM. It cannot be undone.
func InstallFilter() error { return installFilter(false) }

func installFilter(logOnly bool) error {
	policy, err := filterPolicy(logOnly)
	if err != nil {
		return err
	}
	// no_new_privs is set on this thread and TSYNC copies it with the
	// filter to the others; both calls must run on the same thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = seccomp.LoadFilter(seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy:     policy,
	})
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}
