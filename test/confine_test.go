package test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests in this file attack from inside the sandbox, as its command
// would: the control socket, the host's namespaces, processes left
// behind.

// markerRules is a ruleset whose rule an attacker would want gone.
const markerRules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
	"-A INPUT -p tcp -m tcp --dport 4242 -j DROP\nCOMMIT\n"

// flushPayload is the body of POST /v1/iptables-restore that replaces the
// filter table with an empty one.
const flushPayload = `{"family": 4, "text": "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"}`

// attackScript runs in the sandbox. $DIR is the control socket directory,
// $NAME the instance, $W a directory for results, $HUID the host uid,
// $OTHER the socket of another instance of the same user, in a directory
// the sandbox sees (so only the peer check stands in the way), $HELPER
// the unixpost helper. Each attempt prints "NAME exit=CODE output": exit 3
// when the socket cannot be connected to, 4 when the server closes the
// connection without an answer, 0 when it answers. It ends by writing $W/done and sleeping, so that the host can
// inspect the instance.
const attackScript = `
S=$DIR/$NAME.sock
attack() {
	n=$1; sock=$2; shift 2
	out=$("$@" $HELPER "$sock" /v1/iptables-restore $W/payload 2>&1)
	echo "$n exit=$? $out" | tr '\n' ' '; echo
}
{
umount "$DIR" 2>/dev/null; echo "umount exit=$?"
umount -l "$DIR" 2>/dev/null; echo "umount-lazy exit=$?"
echo "listing=[$(ls -A "$DIR" 2>&1 | tr '\n' ' ')]"
attack direct "$S"
attack cwd "./$NAME.sock"
attack unshare-n "$S" unshare -n
attack unshare-nUr "$S" unshare -n -U -r
attack nested-umount "$S" unshare -U -r -m sh -c 'umount "$0" 2>/dev/null; exec "$@"' "$DIR"
attack proc1-root "/proc/1/root$S"
attack proc1-cwd "/proc/1/cwd/$NAME.sock"
attack tmpdir "/tmp/tunstack-$HUID/$NAME.sock"
attack other-instance "$OTHER"
TP=$(awk '/^PPid:/{print $2}' /proc/$PPID/status 2>/dev/null)
if [ -n "$TP" ] && [ "$TP" != 0 ]; then
	attack tunstack-root "/proc/$TP/root$S"
	attack tunstack-cwd "/proc/$TP/cwd/$NAME.sock"
	attack init-root "/proc/$PPID/root$S"
fi
} > $W/result 2>&1
touch $W/done
exec sleep 60
`

// unixPost POSTs the file body to path on the HTTP server at unix socket
// sock, and reports how far it got: exit 3 if it cannot connect, 4 if the
// server closes without an answer, 0 with the answer's status line.
func unixPost(sock, path, bodyFile string) int {
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		fmt.Println("read body:", err)
		return 2
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("connect:", err)
		return 3
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", path, len(body), body)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := io.ReadAll(c)
	if len(resp) == 0 {
		fmt.Println("connected, closed without an answer:", err)
		return 4
	}
	line, _, _ := strings.Cut(string(resp), "\r\n")
	fmt.Println("answered:", line)
	return 0
}

// startIn starts argv as uid (0: as is) in directory dir with environment
// env added; the cleanup ends it by PID.
func startIn(t *testing.T, uid int, dir string, env []string, argv ...string) *bgProc {
	t.Helper()
	p := &bgProc{done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	base := os.Environ()
	if uid != 0 {
		base = append(base, "HOME=/tmp", "XDG_RUNTIME_DIR=")
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	p.cmd.Env = append(base, env...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%v: stderr %s", argv, p.stderr.String())
		}
	})
	return p
}

// asUser runs argv as uid (0: as is) and returns its combined output and
// error.
func asUser(uid int, env []string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		cmd.Env = append(append(os.Environ(), "HOME=/tmp", "XDG_RUNTIME_DIR="), env...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// exitCode reads the unixpost helper's outcome from its output line: 3
// not connected, 4 closed without an answer, 0 answered, -1 otherwise.
func exitCode(out string) int {
	switch {
	case strings.HasPrefix(out, "connect:"):
		return 3
	case strings.HasPrefix(out, "connected, closed"):
		return 4
	case strings.HasPrefix(out, "answered:"):
		return 0
	}
	return -1
}

// ownedDir creates dir (and parents) owned by uid, mode 0700.
func ownedDir(t *testing.T, dir string, uid int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// TestSandboxCannotReachControlSocket attacks the instance's control
// socket from inside the sandbox: unmounting the cover (directly and from
// a nested user namespace), the socket's path, the working directory
// (tunstack was started in the socket directory), a fresh network
// namespace (unshare -n, -n -U -r), /proc/PID/root and /proc/PID/cwd of
// init and of tunstack (visible with --no-pidns), /tmp/tunstack-UID, and
// the visible socket of another instance of the same user, which accepts
// the connection and must refuse it for its network namespace.
// Every attempt must fail, and the host's iptables-save must show the
// rules unchanged; the same request from the host then succeeds, which
// shows the attack would work if it got through.
func TestSandboxCannotReachControlSocket(t *testing.T) {
	needProg(t, "curl", "unshare", "awk")
	for _, tc := range []struct {
		name  string
		uid   int
		xdg   bool
		flags []string
	}{
		{"root", 0, false, nil},
		{"root no-pidns", 0, false, []string{"--no-pidns"}},
		{"nobody XDG_RUNTIME_DIR", 65534, true, nil},
		{"nobody tmp", 65534, false, nil},
		{"nobody no-pidns", 65534, true, []string{"--no-pidns"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needTun(t, tc.uid)
			work := controlDir(t, tc.uid)
			if err := os.WriteFile(filepath.Join(work, "payload"), []byte(flushPayload), 0o644); err != nil {
				t.Fatal(err)
			}
			rules := filepath.Join(work, "rules")
			if err := os.WriteFile(rules, []byte(markerRules), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chown(rules, tc.uid, tc.uid)
			// The default directories, as a user gets them.
			env := []string{"TUNSTACK_CONTROL_DIR="}
			var dir string
			switch {
			case tc.uid == 0:
				dir = "/run/tunstack"
			case tc.xdg:
				xdg := controlDir(t, tc.uid)
				env = append(env, "XDG_RUNTIME_DIR="+xdg)
				dir = filepath.Join(xdg, "tunstack")
			default:
				dir = fmt.Sprintf("/tmp/tunstack-%d", tc.uid)
			}
			ownedDir(t, dir, tc.uid)
			name := fmt.Sprintf("confine-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
			// Another instance of the same user, its socket in plain sight.
			otherDir := controlDir(t, tc.uid)
			otherEnv := []string{"TUNSTACK_CONTROL_DIR=" + otherDir}
			other := startBG(t, tc.uid, otherEnv, binPath, "run", "--name", "other", "--rules", rules, "--", "sleep", "60")
			otherOpts := runOpts{uid: tc.uid, env: otherEnv, timeout: 10 * time.Second}
			waitPs(t, otherOpts, []*bgProc{other}, "other")
			env = append(env, "DIR="+dir, "NAME="+name, "W="+work, "HUID="+strconv.Itoa(tc.uid),
				"OTHER="+filepath.Join(otherDir, "other.sock"), "HELPER="+helperPath, helperEnv+"=unixpost")
			argv := append([]string{binPath, "run", "--name", name, "--rules", rules}, tc.flags...)
			argv = append(argv, "--", "sh", "-c", attackScript)
			// Started in the socket directory: its cwd is one more way in.
			p := startIn(t, tc.uid, dir, env, argv...)
			for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if _, err := os.Stat(filepath.Join(work, "done")); err == nil {
					break
				}
				if p.exited() || time.Now().After(end) {
					t.Fatalf("the attack script did not finish: %s", p.stderr.String())
				}
			}
			res, _ := os.ReadFile(filepath.Join(work, "result"))
			result := string(res)
			t.Logf("inside the sandbox:\n%s", result)
			attempts := 0
			for _, line := range strings.Split(strings.TrimSpace(result), "\n") {
				f := strings.Fields(line)
				switch {
				case len(f) > 0 && strings.HasPrefix(f[0], "listing="):
					if line != "listing=[]" {
						t.Errorf("the socket directory is visible in the sandbox: %s", line)
					}
				case len(f) > 1 && strings.HasPrefix(f[1], "exit="):
					attempts++
					if f[1] == "exit=0" {
						t.Errorf("attack %q succeeded: %s", f[0], line)
					}
					// The other instance's socket is reachable: the peer
					// check refuses. Every other socket path is out of reach.
					switch {
					case f[0] == "other-instance" && f[1] != "exit=4":
						t.Errorf("the other instance should accept and then refuse the connection (exit 4): %s", line)
					case f[0] != "other-instance" && strings.HasPrefix(f[0], "umount"):
					case f[0] != "other-instance" && f[1] != "exit=3":
						t.Errorf("attack %q: want the socket out of reach (exit 3): %s", f[0], line)
					}
				default:
					t.Errorf("unexpected line from the attack script: %q", line)
				}
			}
			want := 11
			if len(tc.flags) > 0 {
				want = 14 // with tunstack's pid visible
			}
			if attempts != want {
				t.Errorf("%d attempts reported, want %d:\n%s", attempts, want, result)
			}
			if strings.Contains(result, "answered") {
				t.Errorf("an attempt got an answer from the control socket:\n%s", result)
			}

			// From the host: the rules are unchanged, and the same request
			// works, so the attempts above failed for the right reason.
			o := runOpts{uid: tc.uid, env: env, timeout: 10 * time.Second}
			if r := mustRun(t, o, "iptables-save", "--name", name); !strings.Contains(r.stdout, "--dport 4242 -j DROP") {
				t.Fatalf("the marker rule is gone after the attack:\n%s", r.stdout)
			}
			if r := mustRun(t, otherOpts, "iptables-save", "--name", "other"); !strings.Contains(r.stdout, "--dport 4242 -j DROP") {
				t.Fatalf("the other instance's marker rule is gone after the attack:\n%s", r.stdout)
			}
			sock := filepath.Join(dir, name+".sock")
			out, err := asUser(tc.uid, nil, "curl", "-sS", "-m", "5", "--unix-socket", sock,
				"-H", "Content-Type: application/json", "-d", "@"+filepath.Join(work, "payload"), "http://x/v1/iptables-restore")
			if err != nil || !strings.Contains(out, `"output"`) {
				t.Fatalf("the request from the host failed, so the test proves nothing: %v: %s", err, out)
			}
			if r := mustRun(t, o, "iptables-save", "--name", name); strings.Contains(r.stdout, "--dport 4242") {
				t.Fatalf("the host's request did not flush the rules:\n%s", r.stdout)
			}
		})
	}
}

// TestRootSandboxCannotEnterHostNamespaces: root's command can configure
// its own tun0 and read a root-only host file, but nsenter into the
// network namespace of any host process fails: every process visible
// with --no-pidns (PID 1, kernel threads, a process the test starts), and
// none is visible by default. An unprivileged sandbox cannot either. With
// --host-caps the same script does escape (today's behaviour), which
// shows the test can fail.
func TestRootSandboxCannotEnterHostNamespaces(t *testing.T) {
	needProg(t, "nsenter", "ip")
	host := startBG(t, 0, nil, "sleep", "60")
	secretDir := sharedDir(t, "tunstack-secret-", 0o755)
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("root-only-content\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// With a PID namespace a host pid may name one of the sandbox's own
	// processes: those (in our own network namespace) are skipped.
	script := `own=$(readlink /proc/self/ns/net); n=0
for p in $PIDS; do n=$((n+1))
	[ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$own" ] && continue
	if nsenter -t $p -n true 2>/dev/null; then echo "escaped $p"; fi
done
echo "tried $n"
if ip link set tun0 mtu 1400; then ip -o link show tun0; fi
cat "$SECRET" 2>&1; true`
	for _, tc := range []struct {
		name    string
		uid     int
		flags   []string
		escapes bool
	}{
		{"root", 0, nil, false},
		{"root no-pidns", 0, []string{"--no-pidns"}, false},
		{"nobody no-pidns", 65534, []string{"--no-pidns"}, false},
		{"root host-caps no-pidns", 0, []string{"--host-caps", "--no-pidns"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needTun(t, tc.uid)
			if tc.uid == 0 {
				needRoot(t)
			}
			// Every host process now, the test's sleep among them.
			var pids []string
			dirs, _ := filepath.Glob("/proc/[0-9]*")
			for _, d := range dirs {
				pids = append(pids, filepath.Base(d))
			}
			if !strings.Contains(" "+strings.Join(pids, " ")+" ", fmt.Sprintf(" %d ", host.cmd.Process.Pid)) {
				t.Fatalf("the host process %d is not listed", host.cmd.Process.Pid)
			}
			o := runOpts{uid: tc.uid, env: []string{"PIDS=" + strings.Join(pids, " "), "SECRET=" + secret}, timeout: 120 * time.Second}
			args := append([]string{"run"}, tc.flags...)
			r := mustRun(t, o, append(args, "--", "sh", "-c", script)...)
			escaped := strings.Contains(r.stdout, "escaped ")
			if escaped != tc.escapes {
				t.Errorf("escaped=%v, want %v:\n%s", escaped, tc.escapes, r.stdout)
			}
			if !strings.Contains(r.stdout, fmt.Sprintf("tried %d\n", len(pids))) {
				t.Errorf("not every host pid was tried (%d):\n%s", len(pids), r.stdout)
			}
			if !strings.Contains(r.stdout, "tun0: <") || !strings.Contains(r.stdout, " mtu 1400 ") {
				t.Errorf("ip link set tun0 mtu 1400 did not take effect:\n%s\nstderr: %s", r.stdout, r.stderr)
			}
			readable := strings.Contains(r.stdout, "root-only-content")
			if readable != (tc.uid == 0) {
				t.Errorf("root-only file readable=%v as uid %d, want %v:\n%s", readable, tc.uid, tc.uid == 0, r.stdout)
			}
		})
	}
}

// TestNothingOutlivesTheCommand: with the default PID namespace, a
// background process and a setsid one are gone once tunstack has exited;
// with --no-pidns they outlive it (slirp4netns's behaviour), which shows
// the test sees them. Exit statuses are the command's either way.
func TestNothingOutlivesTheCommand(t *testing.T) {
	for _, u := range users {
		for _, tc := range []struct {
			name     string
			flags    []string
			survives bool
		}{{"pidns", nil, false}, {"no-pidns", []string{"--no-pidns"}, true}} {
			t.Run(u.name+" "+tc.name, func(t *testing.T) {
				needTun(t, u.uid)
				m1 := fmt.Sprintf("999.%d%03d", os.Getpid()%1000, time.Now().UnixNano()%1000)
				m2 := fmt.Sprintf("998.%d%03d", os.Getpid()%1000, time.Now().UnixNano()%1000)
				t.Cleanup(func() {
					for _, p := range append(processesWith(m1), processesWith(m2)...) {
						if pid, err := strconv.Atoi(p); err == nil {
							syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				})
				args := append([]string{"run"}, tc.flags...)
				args = append(args, "--", "sh", "-c", fmt.Sprintf("sleep %s & setsid sleep %s & sleep 0.3; exit 7", m1, m2))
				r := tunstack(t, runOpts{uid: u.uid}, args...)
				if r.code != 7 {
					t.Fatalf("exit %d, want the command's 7: %s", r.code, r.stderr)
				}
				left := append(processesWith(m1), processesWith(m2)...)
				if tc.survives && len(left) != 2 {
					t.Errorf("with --no-pidns both sleeps should outlive the command; found %v", left)
				}
				if !tc.survives && len(left) != 0 {
					t.Errorf("processes left behind: %v", left)
				}
			})
		}
	}
}

// TestSSNamesProcessesInPIDNamespace: ss -p names a process that is not
// the command itself (a child of the shell) in the default PID namespace.
func TestSSNamesProcessesInPIDNamespace(t *testing.T) {
	needProg(t, "curl")
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			hold := holdListener(t)
			ctl := controlDir(t, u.uid)
			env := []string{"TUNSTACK_CONTROL_DIR=" + ctl}
			name := "ssp-" + u.name
			// As root, tunstack runs confined as nobody and may not read
			// root's /proc/PID/fd: the sandbox's init names the holders,
			// with the pids it sees (the sandbox's PID namespace).
			args := []string{"run", "--name", name, "--", "sh", "-c", fmt.Sprintf("curl -sS -m 20 http://10.0.2.2:%d/; sleep 20", hold)}
			p := startBG(t, u.uid, env, append([]string{binPath}, args...)...)
			o := runOpts{uid: u.uid, env: env, timeout: 10 * time.Second}
			waitPs(t, o, []*bgProc{p}, name)
			var out string
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				out = mustRun(t, o, "ss", "--name", name, "-tnp").stdout
				if strings.Contains(out, `"curl"`) {
					break
				}
			}
			if !strings.Contains(out, `users:(("curl",pid=`) {
				t.Fatalf("ss -tnp does not name curl:\n%s", out)
			}
			i := strings.Index(out, `("curl",pid=`) + len(`("curl",pid=`)
			j := strings.IndexAny(out[i:], ",)")
			if u.uid == 0 {
				// Named by init: the pid as the sandbox sees it,
				// small in a fresh PID namespace (1 is init).
				if n, err := strconv.Atoi(out[i : i+j]); err != nil || n < 2 || n > 100 {
					t.Errorf("pid %s from ss -p: want curl's pid in the sandbox's PID namespace", out[i:i+j])
				}
				return
			}
			// The pid shown is the host's view: curl's cmdline is there.
			b, err := os.ReadFile("/proc/" + out[i:i+j] + "/cmdline")
			if err != nil || !bytes.HasPrefix(b, []byte("curl\x00")) {
				t.Errorf("pid %s from ss -p is not curl on the host: %q %v", out[i:i+j], b, err)
			}
		})
	}
}

// TestInitInsideTheSandbox: PID 1 of the sandbox is tunstack's init. A
// signal sent to it from inside reaches the command; SIGKILL from inside
// cannot kill it. --host-caps is refused to an unprivileged user.
func TestInitInsideTheSandbox(t *testing.T) {
	for _, u := range users {
		for _, tc := range []struct {
			name, script, want string
			code               int
		}{
			{"TERM to PID 1 reaches the command", `trap "echo got TERM; exit 3" TERM; kill -TERM 1; sleep 5 & wait`, "got TERM\n", 3},
			{"KILL to PID 1 is ignored", `kill -KILL 1; sleep 0.2; echo still here`, "still here\n", 0},
			{"PID 1 is init", `cat /proc/1/cmdline | tr '\0' ' '; echo; echo ppid=$PPID`, "__tunstack-sandbox-child init \nppid=1\n", 0},
		} {
			t.Run(u.name+" "+tc.name, func(t *testing.T) {
				needTun(t, u.uid)
				r := tunstack(t, runOpts{uid: u.uid}, "run", "--", "sh", "-c", tc.script)
				if r.code != tc.code || !strings.Contains(r.stdout, tc.want) {
					t.Errorf("exit %d, stdout %q; want %d and %q\nstderr: %s", r.code, r.stdout, tc.code, tc.want, r.stderr)
				}
			})
		}
	}
	t.Run("host-caps needs root", func(t *testing.T) {
		needTun(t, 65534)
		r := tunstack(t, runOpts{uid: 65534}, "run", "--host-caps", "--", "true")
		if r.code != 125 || !strings.Contains(r.stderr, "--host-caps needs root") {
			t.Errorf("exit %d, stderr %q; want 125 naming --host-caps", r.code, r.stderr)
		}
	})
}

// TestRootInsideAUserNamespace: root of a user namespace with one id
// mapped and setgroups denied (a container, "unshare -r") gets the
// confined root mode too: its ids are mapped to themselves.
func TestRootInsideAUserNamespace(t *testing.T) {
	needTun(t, 0)
	needRoot(t)
	needProg(t, "unshare", "ip")
	cmd := exec.Command("unshare", "-U", "-r", binPath, "run", "--", "sh", "-c",
		"cat /proc/self/uid_map; ip link set tun0 mtu 1400 && ip -o link show tun0")
	cmd.Env = append(os.Environ(), "TUNSTACK_CONTROL_DIR="+controlDir(t, 0))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), " mtu 1400 ") {
		t.Fatalf("%v: %s", err, out)
	}
	if f := strings.Fields(string(out)); len(f) < 3 || f[0] != "0" || f[1] != "0" || f[2] != "1" {
		t.Errorf("uid_map in the sandbox: %q, want 0 0 1", out)
	}
}
