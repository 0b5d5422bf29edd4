package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialEnv makes the test binary a client that asks the socket at its
// value for /v1/info and prints the instance's name (see TestMain).
const dialEnv = "TUNSTACK_CONTROL_TEST_DIAL"

func dialForTest(path string) int {
	c := NewClient(path)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		fmt.Println("refused:", err)
		return 1
	}
	fmt.Println("served:", info.Name)
	return 0
}

// TestPeerInOtherNetNSRefused: a client in our network namespace is
// served; the same client in a new network namespace (as a sandbox's
// "unshare -n" would be) is refused, as root and through a user namespace.
func TestPeerInOtherNetNSRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tunstack")
	s := serve(t, dir, "peer")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	userns := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Geteuid(), HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getegid(), HostID: os.Getegid(), Size: 1}},
	}
	for _, tc := range []struct {
		name     string
		attr     *syscall.SysProcAttr
		rootOnly bool
		served   bool
	}{
		{"same namespace", nil, false, true},
		{"new network namespace", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}, true, false},
		{"new user and network namespace", userns, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rootOnly && os.Geteuid() != 0 {
				t.Skip("needs root to create a network namespace")
			}
			cmd := exec.Command(self)
			cmd.Env = append(os.Environ(), dialEnv+"="+s.Path())
			cmd.SysProcAttr = tc.attr
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Skipf("cannot start a client in a new namespace here: %v", err)
			}
			got := strings.HasPrefix(string(out), "served: peer")
			if got != tc.served {
				t.Fatalf("served=%v, want %v: %s", got, tc.served, out)
			}
		})
	}
}

// TestPeerNetNSFailsClosed: the ways of naming a peer's namespace agree
// with our own for ourselves, and every failure is an error.
func TestPeerNetNSFailsClosed(t *testing.T) {
	own, err := ownNetNS()
	if err != nil {
		t.Fatal(err)
	}
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Skipf("no pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	for _, fd := range []int{-1, pidfd} {
		ns, err := peerNetNS(os.Getpid(), fd)
		if err != nil || !ns.same(own) {
			t.Errorf("peerNetNS(self, pidfd %d) = %v, %v; want the same namespace as %v", fd, ns, err, own)
		}
	}
	// A reaped child: its pid names nothing, and its pidfd says so.
	child := exec.Command("true")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	goneFD, err := unix.PidfdOpen(child.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(goneFD)
	child.Wait()
	for _, tc := range []struct {
		name       string
		pid, pidfd int
	}{
		{"pid 0", 0, -1},
		{"negative pid", -5, -1},
		{"reaped process by pid", child.Process.Pid, -1},
		{"reaped process by pidfd", child.Process.Pid, goneFD},
	} {
		if ns, err := peerNetNS(tc.pid, tc.pidfd); err == nil {
			t.Errorf("%s: peerNetNS = %v, want an error", tc.name, ns)
		}
	}
}

// TestNetNSSame: namespaces compare by an identity both sides know, and
// refuse when they share none.
func TestNetNSSame(t *testing.T) {
	a := netNS{ns: [2]uint64{1, 2}, proc: [2]uint64{3, 4}}
	tests := []struct {
		b    netNS
		want bool
	}{
		{netNS{ns: [2]uint64{1, 2}}, true},
		{netNS{ns: [2]uint64{1, 9}}, false},
		{netNS{proc: [2]uint64{3, 4}}, true},
		{netNS{proc: [2]uint64{3, 5}}, false},
		{netNS{}, false},
	}
	for _, tt := range tests {
		if got := a.same(tt.b); got != tt.want {
			t.Errorf("%v.same(%v) = %v, want %v", a, tt.b, got, tt.want)
		}
	}
}
