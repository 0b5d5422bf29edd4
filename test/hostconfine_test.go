package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procStatus is what /proc/PID/task/TID/status says about confinement.
type procStatus struct {
	uid, noNewPrivs, seccomp, capEff, capPrm, capBnd string
}

func (s procStatus) String() string {
	return fmt.Sprintf("Uid %s NoNewPrivs %s Seccomp %s CapEff %s CapPrm %s CapBnd %s",
		s.uid, s.noNewPrivs, s.seccomp, s.capEff, s.capPrm, s.capBnd)
}

// threadStatuses reads the status of every thread of pid.
func threadStatuses(pid int) ([]procStatus, error) {
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no threads of %d: %v", pid, err)
	}
	var out []procStatus
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue // the thread exited
		}
		var s procStatus
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			v = strings.Join(strings.Fields(v), " ")
			switch k {
			case "Uid":
				s.uid = v
			case "NoNewPrivs":
				s.noNewPrivs = v
			case "Seccomp":
				s.seccomp = v
			case "CapEff":
				s.capEff = v
			case "CapPrm":
				s.capPrm = v
			case "CapBnd":
				s.capBnd = v
			}
		}
		f.Close()
		out = append(out, s)
	}
	return out, nil
}

// waitStatus polls pid's threads until every one shows want, and fails
// with what they show after 10 s.
func waitStatus(t *testing.T, p *bgProc, want procStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sts, err := threadStatuses(p.cmd.Process.Pid)
		bad := ""
		for _, s := range sts {
			if s != want {
				bad = s.String()
			}
		}
		if err == nil && bad == "" {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("host-side tunstack (exited %v): a thread shows %s (err %v)\nwant %s", p.exited(), bad, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeLowPort finds a free port below 1024 on 127.0.0.1 (root only).
func freeLowPort(t *testing.T) int {
	t.Helper()
	for port := 900; port > 600; port-- {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port between 600 and 900")
	return 0
}

// freePort finds a free port on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// httpGet fetches url and returns the body.
func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

const (
	capNetBindService = "0000000000000400"
	capNetBindKill    = "0000000000000420" // + CAP_KILL
	capNone           = "0000000000000000"
	nobodyUid         = "65534 65534 65534 65534"
)

// TestHostProcessConfined: once set up, every thread of the host-side
// tunstack has no_new_privs and the seccomp filter; as root it runs as
// nobody with only CAP_NET_BIND_SERVICE (and CAP_KILL, to signal the root
// command), unprivileged with no capability. The instance still works: a
// forward added afterwards (below port 1024 as root) reaches a server in
// the sandbox, and a view answers.
func TestHostProcessConfined(t *testing.T) {
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			ctl := controlDir(t, u.uid)
			env := []string{"TUNSTACK_CONTROL_DIR=" + ctl, helperEnv + "=server"}
			name := "conf-" + u.name
			p := startBG(t, u.uid, env, binPath, "run", "--name", name, "--",
				"sh", "-c", "sleep 60 | exec "+helperPath+" 0.0.0.0:8080")
			want := procStatus{uid: nobodyUid, noNewPrivs: "1", seccomp: "2", capEff: capNone, capPrm: capNone, capBnd: ""}
			if u.uid == 0 {
				want.capEff, want.capPrm, want.capBnd = capNetBindKill, capNetBindKill, capNetBindKill
			} else {
				want.capBnd = readCapBnd(t)
			}
			waitStatus(t, p, want)

			port := freePort(t)
			if u.uid == 0 {
				port = freeLowPort(t)
			}
			o := runOpts{uid: u.uid, env: env}
			spec := fmt.Sprintf("127.0.0.1:%d:8080", port)
			mustRun(t, o, "forward", "--name", name, "add", spec)
			var body string
			var err error
			for i := 0; i < 50; i++ { // the server in the sandbox may still be starting
				if body, err = httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !strings.HasPrefix(body, "hello from") {
				t.Fatalf("GET through the forward %s added after confinement: %q, %v", spec, body, err)
			}
			checkRuntimeForwards(t, o, name)
			if r := mustRun(t, o, "ip", "--name", name, "addr"); !strings.Contains(r.stdout, "inet 10.0.2.2/24") {
				t.Errorf("ip addr after confinement:\n%s", r.stdout)
			}
		})
	}
}

// checkRuntimeForwards adds a unix-socket and a UDP forward to the
// sandbox's port 8080 (HTTP and UDP echo) and uses both.
func checkRuntimeForwards(t *testing.T, o runOpts, name string) {
	t.Helper()
	// Directly in /tmp (t.TempDir's parent is 0700): the confined
	// instance runs as nobody.
	dir := sharedDir(t, "tunstack-fwd-", 0o777)
	uds := filepath.Join(dir, "fwd.sock")
	udpPort := freePort(t)
	mustRun(t, o, "forward", "--name", name, "add", uds+":8080", fmt.Sprintf("127.0.0.1:%d:8080/udp", udpPort))
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", uds)
		}}}
	resp, err := c.Get("http://sandbox/")
	if err != nil {
		t.Fatalf("GET through the unix-socket forward %s: %v", uds, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "hello from") {
		t.Fatalf("GET through the unix-socket forward %s: %q", uds, body)
	}
	uc, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	buf := make([]byte, 64)
	for i := 0; ; i++ {
		uc.Write([]byte("echo me"))
		uc.SetReadDeadline(time.Now().Add(time.Second))
		n, err := uc.Read(buf)
		if err == nil && string(buf[:n]) == "echo me" {
			return
		}
		if i == 5 {
			t.Fatalf("UDP through the forward 127.0.0.1:%d: %q, %v", udpPort, buf[:n], err)
		}
	}
}

// readCapBnd is this machine's bounding set for an unprivileged process
// (left as it is: an unprivileged tunstack cannot change it and holds no
// capability anyway).
func readCapBnd(t *testing.T) string {
	t.Helper()
	sts, err := threadStatuses(os.Getpid())
	if err != nil || len(sts) == 0 {
		t.Fatal(err)
	}
	return sts[0].capBnd
}

// TestHostConfinementFlags: --no-seccomp keeps the user switch and
// no_new_privs without the filter; --no-sandbox confines nothing; attach
// (no command to signal) keeps only CAP_NET_BIND_SERVICE.
func TestHostConfinementFlags(t *testing.T) {
	needTun(t, 0)
	needProg(t, "unshare")
	for _, tc := range []struct {
		name string
		args func() []string
		want procStatus
	}{
		{"no-seccomp", func() []string { return []string{"run", "--no-seccomp", "--", "sleep", "60"} },
			procStatus{uid: nobodyUid, noNewPrivs: "1", seccomp: "0", capEff: capNetBindKill, capPrm: capNetBindKill, capBnd: capNetBindKill}},
		{"no-sandbox", func() []string { return []string{"run", "--no-sandbox", "--", "sleep", "60"} },
			procStatus{uid: "0 0 0 0", noNewPrivs: "0", seccomp: "0", capEff: readCapBnd(t), capPrm: readCapBnd(t), capBnd: readCapBnd(t)}},
		{"attach", func() []string {
			target := startBG(t, 0, nil, "unshare", "--net", "sleep", "60")
			return []string{"attach", fmt.Sprint(target.cmd.Process.Pid)}
		}, procStatus{uid: nobodyUid, noNewPrivs: "1", seccomp: "2", capEff: capNetBindService, capPrm: capNetBindService, capBnd: capNetBindService}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl := controlDir(t, 0)
			env := []string{"TUNSTACK_CONTROL_DIR=" + ctl}
			args := tc.args()
			p := startBG(t, 0, env, append([]string{binPath, args[0], "--name", "f-" + tc.name}, args[1:]...)...)
			// Unconfined, the status never changes: wait for the
			// instance to be up instead.
			waitPs(t, runOpts{env: env}, []*bgProc{p}, "f-"+tc.name)
			waitStatus(t, p, tc.want)
		})
	}
}

// TestConfinedRootLeavesNoSocket: a root instance runs as nobody and
// cannot unlink its control socket from root's 0700 directory itself; the
// cleanup helper removes it even when tunstack is SIGKILLed.
func TestConfinedRootLeavesNoSocket(t *testing.T) {
	needTun(t, 0)
	ctl := controlDir(t, 0)
	env := []string{"TUNSTACK_CONTROL_DIR=" + ctl}
	uds := filepath.Join(ctl, "fwd.sock")
	p := startBG(t, 0, env, binPath, "run", "--name", "gone", "-p", uds+":80", "--", "sleep", "60")
	waitStatus(t, p, procStatus{uid: nobodyUid, noNewPrivs: "1", seccomp: "2", capEff: capNetBindKill, capPrm: capNetBindKill, capBnd: capNetBindKill})
	sock := filepath.Join(ctl, "gone.sock")
	for _, f := range []string{sock, uds} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("while running: %v", err)
		}
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	for _, f := range []string{sock, uds} {
		for i := 0; ; i++ {
			if _, err := os.Stat(f); os.IsNotExist(err) {
				break
			}
			if i == 100 {
				t.Fatalf("%s left behind by a SIGKILLed root instance", f)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestConfinedStillRefusesTheSandbox: the control socket's peer check
// keeps refusing the sandbox once tunstack runs confined (as nobody it
// cannot read a root peer's /proc/PID/ns/net, so the check identifies the
// namespace another way): from inside, with the cover over the socket
// directory unmounted, a request gets no answer.
func TestConfinedStillRefusesTheSandbox(t *testing.T) {
	needProg(t, "curl")
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			ctl := controlDir(t, u.uid)
			sock := filepath.Join(ctl, "peer.sock")
			script := fmt.Sprintf("umount %s 2>/dev/null; curl -sS -m 5 --unix-socket %s http://x/v1/info", ctl, sock)
			r := tunstack(t, runOpts{uid: u.uid, env: []string{"TUNSTACK_CONTROL_DIR=" + ctl}},
				"run", "--name", "peer", "--", "sh", "-c", script)
			if strings.Contains(r.stdout, `"name"`) || r.code == 0 {
				t.Fatalf("the sandbox was served by the control socket (exit %d):\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			// Whether the locked cover keeps curl from the socket or the
			// peer check refuses it (TestSandboxCannotReachControlSocket
			// tries the other ways in), the request is not served.
		})
	}
}

// TestConfinedPingSocket: the echo relay's host ping sockets work under the
// filter: in a test-made host namespace with ping sockets allowed, a ping
// from the sandbox to the host's address is answered by that host.
func TestConfinedPingSocket(t *testing.T) {
	needTun(t, 0)
	needProg(t, "ping")
	ns := hostNS(t, freePort(t))
	r := tunstack(t, runOpts{netns: ns, env: []string{"TUNSTACK_CONTROL_DIR=" + controlDir(t, 0)}},
		"run", "--", "ping", "-n", "-c", "2", "-W", "3", hostAddr)
	if r.code != 0 || !strings.Contains(r.stdout, " 0% packet loss") {
		t.Fatalf("ping %s from a confined instance: exit %d\n%s\n%s", hostAddr, r.code, r.stdout, r.stderr)
	}
}
