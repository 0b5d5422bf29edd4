package harden

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary a child that confines itself (see
// TestMain): "filter" installs the filter alone, "apply" runs Apply.
const childEnv = "HARDEN_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "filter":
		os.Exit(childFilter())
	case "apply":
		os.Exit(childApply())
	}
	os.Exit(2)
}

// probe is one system call a child tries before and after confinement.
type probe struct {
	name string
	call func() error
}

// probes: the first group is never needed by the running stack and must be
// refused by the filter; the second must keep working.
var (
	forbidden = []probe{
		{"ptrace", func() error { return rawErr(unix.SYS_PTRACE, 0xffff, uintptr(os.Getpid()), 0) }},
		{"mount", func() error { return unix.Mount("none", "/nonexistent-harden-test", "tmpfs", 0, "") }},
		{"kexec_load", func() error { return rawErr(unix.SYS_KEXEC_LOAD, 0, 0xffff, 0) }},
		{"bpf", func() error { return rawErr(unix.SYS_BPF, 0xffff, 0, 0) }},
		{"unshare", func() error { return rawErr(unix.SYS_UNSHARE, unix.CLONE_NEWUTS, 0, 0) }},
		{"socket-netlink", func() error { return closeSocket(unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)) }},
		{"socket-packet", func() error { return closeSocket(unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, 0)) }},
		{"ioctl-tiocsti", func() error {
			c := byte('x')
			return rawErr(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
		}},
		{"fork-exec", func() error { return exec.Command("/bin/true").Run() }},
		{"setuid", func() error { return rawErr(unix.SYS_SETUID, uintptr(os.Getuid()), 0, 0) }},
		{"prlimit-of-another", func() error {
			var old unix.Rlimit
			return unix.Prlimit(os.Getppid(), unix.RLIMIT_NOFILE, nil, &old)
		}},
	}
	allowed = []probe{
		{"getpid", func() error { return rawErr(unix.SYS_GETPID, 0, 0, 0) }},
		{"socket-udp", func() error { return closeSocket(unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)) }},
		{"socket-ping", func() error { return closeSocket(unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)) }},
		{"socket-unix", func() error { return closeSocket(unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)) }},
		{"tcp-loopback", tcpLoopback},
		{"read-proc", func() error { _, err := os.ReadFile("/proc/self/status"); return err }},
		{"prlimit-own", func() error { var old unix.Rlimit; return unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &old) }},
		{"new-threads", newThreads},
	}
)

func rawErr(nr, a1, a2, a3 uintptr) error {
	if _, _, e := unix.RawSyscall(nr, a1, a2, a3); e != 0 {
		return e
	}
	return nil
}

func closeSocket(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// tcpLoopback connects to a listener and moves a few bytes.
func tcpLoopback() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		return fmt.Errorf("read %q: %v", buf, err)
	}
	return nil
}

// newThreads makes the runtime start new OS threads and checks that each
// inherited the filter.
func newThreads() error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
			st, err := readStatus(fmt.Sprintf("/proc/self/task/%d/status", unix.Gettid()))
			if err == nil && !st.seccomp {
				err = errors.New("a new thread has no filter")
			}
			errs <- err
			time.Sleep(10 * time.Millisecond)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// runProbes prints "phase name errno" for every probe ("ok" for success).
func runProbes(phase string, probes []probe) {
	for _, p := range probes {
		fmt.Printf("%s %s %s\n", phase, p.name, errName(p.call()))
	}
}

// errName is "ok", an errno's name, or the error's text without spaces.
func errName(err error) string {
	var en syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &en):
		return unix.ErrnoName(en)
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

func childFilter() int {
	runProbes("before", forbidden)
	if err := InstallFilter(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	runProbes("before", allowed)
	runProbes("after", forbidden)
	runProbes("after", allowed)
	// execve would replace the child: tried only once it must fail.
	err := syscall.Exec("/bin/true", []string{"true"}, nil)
	fmt.Printf("after execve %s\n", errName(err))
	return 0
}

// runChild runs the test binary in mode and returns its "phase name" →
// result lines.
func runChild(t *testing.T, mode string, env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, childEnv+"="+mode)...)
	cmd.Stdin = nil
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("child %s: %v\nstdout %s\nstderr %s", mode, err, out, stderr)
	}
	res := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 {
			res[f[0]+" "+f[1]] = f[2]
		}
	}
	return res
}

// TestFilterRefusesWhatTheStackNeverCalls installs the filter in a child
// process: calls off the allowlist that worked or failed otherwise before
// now fail with EPERM, and the calls the stack makes still work.
func TestFilterRefusesWhatTheStackNeverCalls(t *testing.T) {
	res := runChild(t, "filter")
	for _, p := range forbidden {
		before, after := res["before "+p.name], res["after "+p.name]
		t.Run("forbidden/"+p.name, func(t *testing.T) {
			if after != "EPERM" {
				t.Errorf("after the filter: %s, want EPERM", after)
			}
			// EPERM before as well would prove nothing about the filter.
			if before == "EPERM" {
				t.Skipf("%s fails with EPERM without the filter too (unprivileged?)", p.name)
			}
		})
	}
	if got := res["after execve"]; got != "EPERM" {
		t.Errorf("execve after the filter: %s, want EPERM", got)
	}
	for _, p := range allowed {
		t.Run("allowed/"+p.name, func(t *testing.T) {
			// Same outcome as without the filter (a ping socket may be
			// refused by net.ipv4.ping_group_range, not by the filter).
			before, after := res["before "+p.name], res["after "+p.name]
			if after != before || after == "EPERM" {
				t.Errorf("after the filter: %s, before: %s", after, before)
			}
		})
	}
}

// TestFilterAssembles builds the policy in both modes: every name in the
// allowlist that exists on this architecture is known to the library.
func TestFilterAssembles(t *testing.T) {
	for _, logOnly := range []bool{false, true} {
		p, err := filterPolicy(logOnly)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Assemble(); err != nil {
			t.Fatalf("logOnly=%v: %v", logOnly, err)
		}
	}
}

func childApply() int {
	if err := Apply(Options{Signals: os.Getenv("HARDEN_TEST_SIGNALS") == "1"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err := readStatus("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("status uid %d\nstatus caps %#x\nstatus nnp %v\nstatus seccomp %v\n", st.uid, st.caps, st.noNewPrivs, st.seccomp)
	// A port below 1024 from many goroutines, hence threads: every thread
	// must have kept CAP_NET_BIND_SERVICE.
	var wg sync.WaitGroup
	var mu sync.Mutex // guards bindErr
	var bindErr error
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err == nil {
				ln.Close()
				var fd int
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
				if err == nil {
					err = unix.Bind(fd, &unix.SockaddrInet4{Port: 1023 - int(unix.Gettid()%100), Addr: [4]byte{127, 0, 0, 1}})
					unix.Close(fd)
				}
			}
			if err != nil && !errors.Is(err, unix.EADDRINUSE) {
				mu.Lock()
				bindErr = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("after bind-low-port %s\n", errName(bindErr))
	// Root's other powers are gone: a file owned by root cannot be read.
	_, err = os.ReadFile(os.Getenv("HARDEN_TEST_SECRET"))
	fmt.Printf("after read-root-file %s\n", errName(err))
	return 0
}

// TestApplyAsRoot runs Apply in a child started as root: it ends up as
// nobody with only CAP_NET_BIND_SERVICE (plus CAP_KILL when asked), on every
// thread, with no_new_privs and the filter; low ports still bind, a
// root-only file no longer opens.
func TestApplyAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: tests the switch from root to nobody")
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	nobody, err := lookupUser("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		signals string
		caps    string
	}{
		{"0", fmt.Sprintf("%#x", 1<<unix.CAP_NET_BIND_SERVICE)},
		{"1", fmt.Sprintf("%#x", 1<<unix.CAP_NET_BIND_SERVICE|1<<unix.CAP_KILL)},
	} {
		t.Run("signals="+tc.signals, func(t *testing.T) {
			res := runChild(t, "apply", "HARDEN_TEST_SECRET="+secret, "HARDEN_TEST_SIGNALS="+tc.signals)
			want := map[string]string{
				"status uid": fmt.Sprint(nobody.uid), "status caps": tc.caps,
				"status nnp": "true", "status seccomp": "true",
				"after bind-low-port": "ok", "after read-root-file": "EACCES",
			}
			for k, v := range want {
				if res[k] != v {
					t.Errorf("%s: %q, want %q", k, res[k], v)
				}
			}
		})
	}
}

// TestLookupUser resolves the forms --user takes and refuses root.
func TestLookupUser(t *testing.T) {
	for _, tc := range []struct {
		spec     string
		uid, gid int
		wantErr  bool
	}{
		{"1234", 1234, 1234, false},
		{"1234:99", 1234, 99, false},
		{"0", 0, 0, true},
		{"1234:0", 0, 0, true},
		{"1234:x", 0, 0, true},
		{"no-such-user-harden", 0, 0, true},
	} {
		id, err := lookupUser(tc.spec)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.spec, err, tc.wantErr)
			continue
		}
		if err == nil && (id.uid != tc.uid || id.gid != tc.gid) {
			t.Errorf("%q: uid %d gid %d, want %d %d", tc.spec, id.uid, id.gid, tc.uid, tc.gid)
		}
	}
}
