package test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slirpLink is a symlink named slirp4netns to the tunstack binary.
func slirpLink(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	link := filepath.Join(dir, "slirp4netns")
	if err := os.Symlink(binPath, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// TestSlirp4netnsHelpVersion: --help exits 0 listing the options callers
// look for; --version starts with slirp4netns's line and names tunstack;
// both through the symlink and as "tunstack slirp4netns".
func TestSlirp4netnsHelpVersion(t *testing.T) {
	link := slirpLink(t)
	for _, argv := range [][]string{{link}, {binPath, "slirp4netns"}} {
		out, err := exec.Command(argv[0], append(argv[1:], "--help")...).Output()
		if err != nil {
			t.Fatalf("%v --help: %v", argv, err)
		}
		for _, s := range []string{"--netns-type", "--enable-ipv6", "--cidr", "--disable-host-loopback", "--api-socket", "--enable-sandbox", "--enable-seccomp", "--mtu", "--outbound-addr"} {
			if !strings.Contains(string(out), s) {
				t.Errorf("%v --help lacks %s", argv, s)
			}
		}
		out, err = exec.Command(argv[0], append(argv[1:], "-v")...).Output()
		lines := strings.Split(string(out), "\n")
		if err != nil || lines[0] != "slirp4netns version 1.2.0" || !strings.HasPrefix(lines[1], "tunstack ") {
			t.Errorf("%v -v: %v %q", argv, err, out)
		}
		cmd := exec.Command(argv[0], append(argv[1:], "--mtu=0", "1", "tap0")...)
		if err := cmd.Run(); cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("%v with a bad --mtu: %v, want exit 1", argv, err)
		}
	}
}

// slirpTarget starts a process in a new network namespace (as root) and
// returns its PID.
func slirpTarget(t *testing.T) int {
	t.Helper()
	needRoot(t)
	needTun(t, 0)
	needProg(t, "unshare", "nsenter", "ip")
	cmd := exec.Command("unshare", "--net", "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// unshare execs sleep once the namespace exists.
	self, _ := os.Readlink("/proc/self/ns/net")
	for i := 0; i < 100; i++ {
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)); ns != "" && ns != self {
			return cmd.Process.Pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("unshare did not create a network namespace")
	return 0
}

// slirpRun is a running slirp4netns-mode tunstack with its ready and exit
// pipes.
type slirpRun struct {
	cmd    *exec.Cmd
	ready  *os.File // read end
	exitW  *os.File // write end of the exit pipe
	done   chan struct{}
	stderr bytes.Buffer
}

func startSlirp(t *testing.T, env []string, args ...string) *slirpRun {
	t.Helper()
	readyR, readyW, _ := os.Pipe()
	exitR, exitW, _ := os.Pipe()
	s := &slirpRun{ready: readyR, exitW: exitW, done: make(chan struct{})}
	s.cmd = exec.Command(slirpLink(t), append([]string{"-r", "3", "-e", "4"}, args...)...)
	s.cmd.ExtraFiles = []*os.File{readyW, exitR}
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	exitR.Close()
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		readyR.Close()
		exitW.Close()
	})
	return s
}

// readReady reads the ready pipe to EOF.
func (s *slirpRun) readReady(t *testing.T) string {
	t.Helper()
	s.ready.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(s.ready)
	if err != nil {
		t.Fatalf("ready fd: %v (stderr: %s)", err, s.stderr.String())
	}
	return string(b)
}

func (s *slirpRun) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("still running after %v (stderr: %s)", within, s.stderr.String())
	}
	return 0
}

// TestSlirp4netnsConfigureAndExitFD: with -c the TAP device is created and
// configured as slirp4netns does it, "1" comes on the ready fd only once
// it is served (a fetch from the host works right after), the instance is
// in tunstack ps under TUNSTACK_NAME, and closing the exit fd ends it with
// status 0.
func TestSlirp4netnsConfigureAndExitFD(t *testing.T) {
	for _, mtu := range []int{65520, 1500} {
		t.Run(fmt.Sprint("mtu", mtu), func(t *testing.T) { testConfigureAndExitFD(t, mtu) })
	}
}

func testConfigureAndExitFD(t *testing.T, mtu int) {
	pid := slirpTarget(t)
	port := startHTTP(t, "127.0.0.1:0")
	_, sum := testPayload()
	name := fmt.Sprintf("slirp-e2e-%d", pid)
	s := startSlirp(t, []string{"TUNSTACK_NAME=" + name}, "-c", fmt.Sprintf("--mtu=%d", mtu), fmt.Sprint(pid), "tap0")
	if got := s.readReady(t); got != "1" {
		t.Fatalf("ready fd gave %q, want \"1\" (stderr: %s)", got, s.stderr.String())
	}
	ns := func(args ...string) string {
		out, err := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(pid), "-n"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := ns("ip", "-4", "addr", "show", "tap0"); !strings.Contains(out, "inet 10.0.2.100/24") || !strings.Contains(out, fmt.Sprintf("mtu %d", mtu)) {
		t.Errorf("tap0 not configured: %s", out)
	}
	if out := ns("ip", "link", "show", "tap0"); !strings.Contains(out, "link/ether") {
		t.Errorf("tap0 is not an Ethernet device: %s", out)
	}
	if out := ns("ip", "route"); !strings.Contains(out, "default via 10.0.2.2 dev tap0") {
		t.Errorf("no default route via 10.0.2.2: %s", out)
	}
	if out := ns("ip", "link", "show", "lo"); !strings.Contains(out, "UP") {
		t.Errorf("lo not up: %s", out)
	}
	if out := ns("sh", "-c", fmt.Sprintf("curl -sS http://10.0.2.2:%d/file | sha256sum", port)); !strings.Contains(out, sum) {
		t.Errorf("fetch through tap0: %s", out)
	}
	// The other direction: the sandbox's (segmentation-offloaded) frames
	// arrive intact.
	payload, _ := testPayload()
	upload := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(upload, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := ns("curl", "-sS", "--data-binary", "@"+upload, fmt.Sprintf("http://10.0.2.2:%d/upload", port)); out != fmt.Sprintf("%s %d\n", sum, len(payload)) {
		t.Errorf("upload through tap0: server got %q, want %s %d", out, sum, len(payload))
	}
	if out := ns("ip", "neigh", "show", "10.0.2.2"); !strings.Contains(out, "52:55:0a:00:02:02") {
		t.Errorf("gateway's MAC is not slirp4netns's: %s", out)
	}
	ps := mustRun(t, runOpts{}, "ps")
	if !strings.Contains(ps.stdout, name) {
		t.Errorf("tunstack ps does not list %s:\n%s", name, ps.stdout)
	}
	ip := mustRun(t, runOpts{}, "ip", "addr", "--name", name)
	if !strings.Contains(ip.stdout, "tap0") || !strings.Contains(ip.stdout, "10.0.2.2") {
		t.Errorf("tunstack ip addr --name %s:\n%s", name, ip.stdout)
	}
	s.exitW.Close()
	if code := s.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d after exit fd hangup, want 0 (stderr: %s)", code, s.stderr.String())
	}
}

// TestSlirp4netnsFailureNoReady: a target that does not exist makes it
// exit 1 without writing to the ready fd.
func TestSlirp4netnsFailureNoReady(t *testing.T) {
	needRoot(t)
	needTun(t, 0)
	s := startSlirp(t, nil, "-c", "999999999", "tap0")
	if got := s.readReady(t); got != "" {
		t.Fatalf("ready fd gave %q on failure", got)
	}
	if code := s.waitExit(t, 10*time.Second); code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
}

// TestSlirp4netnsSIGTERM: SIGTERM ends it promptly, without -c the
// pre-created tap0 keeps the caller's configuration.
func TestSlirp4netnsSIGTERM(t *testing.T) {
	pid := slirpTarget(t)
	nsenter := func(args ...string) string {
		out, _ := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(pid), "-n"}, args...)...).CombinedOutput()
		return string(out)
	}
	// As rootlesskit does: a persistent tap0, configured by the caller.
	nsenter("ip", "tuntap", "add", "name", "tap0", "mode", "tap")
	nsenter("ip", "addr", "add", "10.0.2.100/24", "dev", "tap0")
	nsenter("ip", "link", "set", "tap0", "mtu", "1500", "up")
	s := startSlirp(t, nil, "--mtu", "1500", fmt.Sprint(pid), "tap0")
	if got := s.readReady(t); got != "1" {
		t.Fatalf("ready fd gave %q (stderr: %s)", got, s.stderr.String())
	}
	if out := nsenter("ip", "route"); strings.Contains(out, "default") {
		t.Errorf("without -c a route was added: %s", out)
	}
	if out := nsenter("ip", "-4", "addr", "show", "tap0"); strings.Count(out, "inet ") != 1 {
		t.Errorf("without -c the addresses changed: %s", out)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.waitExit(t, 10*time.Second)
}

// TestSlirp4netnsOutboundAddr: --outbound-addr binds the host side of the
// sandbox's connections: the host server sees them come from 127.0.0.2.
func TestSlirp4netnsOutboundAddr(t *testing.T) {
	pid := slirpTarget(t)
	port := startHTTP(t, "127.0.0.1:0")
	s := startSlirp(t, nil, "-c", "--outbound-addr=127.0.0.2", fmt.Sprint(pid), "tap0")
	if got := s.readReady(t); got != "1" {
		t.Fatalf("ready fd gave %q (stderr: %s)", got, s.stderr.String())
	}
	out, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", "curl", "-sS", fmt.Sprintf("http://10.0.2.2:%d/", port)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), " to 127.0.0.2:") {
		t.Fatalf("host server saw %q (%v), want the client at 127.0.0.2", out, err)
	}
}

// TestSlirp4netnsDisableDNS: with --disable-dns nothing answers at the DNS
// address (a TCP connection to port 53 times out); without it the relay
// accepts one (no query is sent, so no upstream is contacted).
func TestSlirp4netnsDisableDNS(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  bool
	}{{nil, true}, {[]string{"--disable-dns"}, false}} {
		t.Run(fmt.Sprint(tc.flags), func(t *testing.T) {
			pid := slirpTarget(t)
			s := startSlirp(t, nil, append(tc.flags, "-c", fmt.Sprint(pid), "tap0")...)
			if got := s.readReady(t); got != "1" {
				t.Fatalf("ready fd gave %q (stderr: %s)", got, s.stderr.String())
			}
			cmd := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", helperPath, "10.0.2.3:53")
			cmd.Env = append(os.Environ(), helperEnv+"=dial", "DIAL_TIMEOUT=2s")
			out, _ := cmd.CombinedOutput()
			if got := strings.TrimSpace(string(out)) == "ok"; got != tc.want {
				t.Fatalf("TCP to 10.0.2.3:53: %q, want connected %v", out, tc.want)
			}
		})
	}
}
