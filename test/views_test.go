package test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bgProc is a process started in the background and ended by PID when the
// test ends.
type bgProc struct {
	cmd            *exec.Cmd
	done           chan struct{}
	stdout, stderr bytes.Buffer
}

// startBG starts argv as uid (0: as is) with extra environment env; the
// cleanup sends SIGTERM, then SIGKILL after 5 s.
func startBG(t *testing.T, uid int, env []string, argv ...string) *bgProc {
	t.Helper()
	p := &bgProc{done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Dir = "/"
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	// A descendant holding the output pipes must not delay Wait.
	p.cmd.WaitDelay = time.Second
	if uid != 0 {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		p.cmd.Env = append(p.cmd.Env, "HOME=/tmp", "XDG_RUNTIME_DIR=")
	}
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
			t.Logf("%v: stdout %q\nstderr %s", argv, p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *bgProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// controlDir makes a control socket directory usable by uid, removed when
// the test ends.
func controlDir(t *testing.T, uid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tunstack-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if uid != 0 {
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitPs polls tunstack ps until every name in want is listed, and returns
// the listing.
func waitPs(t *testing.T, o runOpts, procs []*bgProc, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := mustRun(t, o, "ps")
		missing := ""
		for _, n := range want {
			if psLine(r.stdout, n) == nil {
				missing = n
			}
		}
		if missing == "" {
			return r.stdout
		}
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("%v exited before %s was listed: %s", p.cmd.Args, missing, p.stderr.String())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunstack ps does not list %s:\n%s", missing, r.stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// psLine returns the fields of tunstack ps's row for name, or nil.
func psLine(out, name string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

// holdListener accepts TCP connections on 127.0.0.1 and holds them open,
// unanswered, until the test ends.
func holdListener(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// TestAttach serves a namespace made by unshare(1) with tunstack attach
// PID: a program in it reaches a host server through 10.0.2.2, ps, ip and
// ss show the instance, and attach ends when the target exits. As root,
// and rootless (uid 65534 owns the target's user namespace and runs
// attach).
func TestAttach(t *testing.T) {
	for _, tc := range []struct {
		name string
		uid  int
		argv []string
	}{
		{"root", 0, []string{"unshare", "--net", "sleep", "60"}},
		{"rootless", 65534, []string{"unshare", "--user", "--map-root-user", "--net", "sleep", "60"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needTun(t, tc.uid)
			needRoot(t) // the test enters the namespace with nsenter
			needProg(t, "unshare", "nsenter", "curl")
			target := startBG(t, tc.uid, nil, tc.argv...)
			pid := target.cmd.Process.Pid
			// unshare execs sleep once the namespaces exist.
			ours, _ := os.Readlink("/proc/self/ns/net")
			for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && theirs != ours && filepath.Base(exe) == "sleep" {
					break
				}
				if target.exited() || time.Now().After(end) {
					t.Fatalf("%v did not start in its own namespace: %s", tc.argv, target.stderr.String())
				}
			}

			ctl := controlDir(t, tc.uid)
			env := []string{"TUNSTACK_CONTROL_DIR=" + ctl}
			o := runOpts{uid: tc.uid, env: env, timeout: 10 * time.Second}
			name := "att-" + tc.name
			att := startBG(t, tc.uid, env, binPath, "attach", "--name", name, strconv.Itoa(pid))
			ps := waitPs(t, o, []*bgProc{att, target}, name)
			row := psLine(ps, name)
			if row[1] != strconv.Itoa(att.cmd.Process.Pid) || row[2] != strconv.Itoa(pid) || !strings.Contains(ps, "10.0.2.100/24") {
				t.Errorf("ps row %q: want attach's PID %d, the target's %d and 10.0.2.100/24\n%s", row, att.cmd.Process.Pid, pid, ps)
			}

			// Networking from inside the target's namespace.
			port := startHTTP(t, "127.0.0.1:0")
			out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n",
				"curl", "-sS", "-m", "5", fmt.Sprintf("http://10.0.2.2:%d/", port)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "hello from 10.0.2.2:") {
				t.Fatalf("curl in the attached namespace: %v: %s", err, out)
			}

			// The views.
			if r := mustRun(t, o, "ip", "--name", name, "addr"); !strings.Contains(r.stdout, "tun0") || !strings.Contains(r.stdout, "inet 10.0.2.2/24") {
				t.Errorf("tunstack ip addr does not show tun0 with 10.0.2.2/24:\n%s", r.stdout)
			}
			hold := holdListener(t)
			curl := startBG(t, 0, nil, "nsenter", "-t", strconv.Itoa(pid), "-n",
				"curl", "-sS", "-m", "10", fmt.Sprintf("http://10.0.2.2:%d/", hold))
			var ss string
			for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				ss = mustRun(t, o, "ss", "--name", name, "-tn").stdout
				if strings.Contains(ss, "ESTAB") && strings.Contains(ss, fmt.Sprintf("10.0.2.2:%d", hold)) && strings.Contains(ss, "10.0.2.100:") {
					break
				}
				if curl.exited() || time.Now().After(end) {
					t.Fatalf("tunstack ss -tn does not list the held connection to 10.0.2.2:%d:\n%s\ncurl: %s", hold, ss, curl.stderr.String())
				}
			}
			curl.cmd.Process.Kill()
			<-curl.done

			// The control socket is in plain sight of the target, but a
			// client of the same user in the target's namespace is
			// refused; the same client in ours is served.
			sock := filepath.Join(ctl, name+".sock")
			body := filepath.Join(ctl, "body")
			os.WriteFile(body, []byte(flushPayload), 0o644)
			post := []string{helperPath, sock, "/v1/iptables-restore", body}
			enter := []string{"nsenter", "-t", strconv.Itoa(pid), "-n"}
			if tc.uid != 0 {
				enter = append(enter, "-U", "--preserve-credentials")
			}
			for _, tt := range []struct {
				where string
				argv  []string
				want  int
			}{
				{"target's namespace", append(enter, post...), 4},
				{"tunstack's namespace", post, 0},
			} {
				out, _ := asUser(tc.uid, []string{helperEnv + "=unixpost"}, tt.argv...)
				if code := exitCode(out); code != tt.want {
					t.Errorf("a client in the %s: exit %d, want %d: %s", tt.where, code, tt.want, out)
				}
			}

			// The target exits: attach stops and its socket goes.
			target.cmd.Process.Kill()
			select {
			case <-att.done:
			case <-time.After(5 * time.Second):
				t.Fatal("tunstack attach still runs 5 s after its target exited")
			}
			if code := att.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("tunstack attach exited %d after its target exited: %s", code, att.stderr.String())
			}
			if _, err := os.Stat(filepath.Join(ctl, name+".sock")); !os.IsNotExist(err) {
				t.Errorf("control socket left behind: %v", err)
			}
			if r := mustRun(t, o, "ps"); psLine(r.stdout, name) != nil {
				t.Errorf("tunstack ps still lists %s:\n%s", name, r.stdout)
			}
		})
	}
}

// TestAttachBadNamespace: when nsenter cannot enter the namespace, attach
// reports it and exits instead of waiting for a device that never comes.
func TestAttachBadNamespace(t *testing.T) {
	needProg(t, "nsenter")
	o := runOpts{env: []string{"TUNSTACK_CONTROL_DIR=" + controlDir(t, 0)}, timeout: 10 * time.Second}
	r := tunstack(t, o, "attach", "--name", "bad", "--netns", "/etc/passwd")
	if r.code == 0 || !strings.Contains(r.stderr, "nsenter") {
		t.Fatalf("exit %d, stderr %q; want a failure naming nsenter", r.code, r.stderr)
	}
}

// TestPs: tunstack ps lists two running instances by name and PID; an
// instance killed with SIGKILL leaves its socket, which the next ps
// removes.
func TestPs(t *testing.T) {
	needTun(t, 0)
	ctl := controlDir(t, 0)
	env := []string{"TUNSTACK_CONTROL_DIR=" + ctl}
	o := runOpts{env: env, timeout: 10 * time.Second}
	a := startBG(t, 0, env, binPath, "run", "--name", "ps-a", "--", "sleep", "60")
	// --no-sandbox: a root instance confined to nobody has a helper
	// remove its socket even after SIGKILL; ps-b must leave one behind.
	b := startBG(t, 0, env, binPath, "run", "--no-sandbox", "--name", "ps-b", "--", "sleep", "60")
	ps := waitPs(t, o, []*bgProc{a, b}, "ps-a", "ps-b")
	for _, p := range []struct {
		name string
		proc *bgProc
	}{{"ps-a", a}, {"ps-b", b}} {
		row := psLine(ps, p.name)
		if row[1] != strconv.Itoa(p.proc.cmd.Process.Pid) || !strings.HasSuffix(strings.Join(row, " "), "sleep 60") {
			t.Errorf("row %q: want PID %d and command sleep 60\n%s", row, p.proc.cmd.Process.Pid, ps)
		}
	}

	// The sandbox's command, ended by PID should it outlive tunstack.
	sb, err := strconv.Atoi(psLine(ps, "ps-b")[2])
	if err != nil || sb <= 0 {
		t.Fatalf("ps shows no sandbox PID for ps-b:\n%s", ps)
	}
	t.Cleanup(func() { syscall.Kill(sb, syscall.SIGKILL) })
	b.cmd.Process.Kill()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		t.Fatal("tunstack run survived SIGKILL")
	}
	// The command must not outlive tunstack, even one killed by SIGKILL
	// (the parent-death signal).
	for i := 0; syscall.Kill(sb, 0) == nil; i++ {
		if i == 100 {
			t.Fatalf("the sandboxed command (PID %d) outlived its SIGKILLed tunstack", sb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stale := filepath.Join(ctl, "ps-b.sock")
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("a SIGKILLed instance should leave its socket for ps to clean: %v", err)
	}
	r := mustRun(t, o, "ps")
	if psLine(r.stdout, "ps-b") != nil || psLine(r.stdout, "ps-a") == nil {
		t.Errorf("ps after killing ps-b: want ps-a only:\n%s", r.stdout)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("ps did not remove the stale socket %s: %v", stale, err)
	}
	if a.exited() {
		t.Errorf("ps-a exited: %s", a.stderr.String())
	}
}

// sandboxSockets is a Python program that opens, in the sandbox, sockets
// of every kind ss tells apart: IPv4 and dual-stack IPv6 listeners (with
// backlogs 7 and 5: ss's Send-Q), an IPv4 and an IPV6_V6ONLY listener on
// one port, an IPV6_V6ONLY listener alone on its port (nothing in the
// /proc tables tells it from a dual-stack one), a connection with 3 bytes
// unread, one waiting in a listener's accept queue (IPv4 mapped into
// IPv6), and, last, a UDP socket: once it is listed, all are there.
const sandboxSockets = `
import socket, time
def listen(fam, addr, port, v6only=None, backlog=5):
    s = socket.socket(fam, socket.SOCK_STREAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((addr, port))
    s.listen(backlog)
    return s
a = listen(socket.AF_INET, "0.0.0.0", 18081, backlog=7)
b = listen(socket.AF_INET6, "::", 18082, 0)
c = listen(socket.AF_INET, "0.0.0.0", 18083)
d = listen(socket.AF_INET6, "::", 18083, 1)
e = listen(socket.AF_INET6, "::", 18085, 1, backlog=3)
cl = socket.create_connection(("127.0.0.1", 18081))
sv, _ = a.accept()
cl.send(b"abc")
queued = socket.create_connection(("127.0.0.1", 18082))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 18084))
time.sleep(60)
`

// ssRows normalizes ss output for comparison: one sorted line per socket,
// the header (when there is one) left out, the queues kept (a listener's
// Send-Q is its backlog); the process column kept only with names.
func ssRows(out string, header, names bool) []string {
	var rows []string
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if header && i == 0 || len(f) < 5 {
			continue
		}
		if !names || len(f) > 7 {
			f = f[:min(6, len(f))]
		}
		rows = append(rows, strings.Join(f, " "))
	}
	slices.Sort(rows)
	return rows
}

// TestSSSandboxSideIsSSInside: tunstack ss lists the sandbox's own
// sockets, and with --side sandbox exactly what ss run inside the
// sandbox's namespace lists (states, queues, addresses as ss prints them,
// -p's process names where tunstack may read them); the default listing
// marks both sides, and --side stack keeps the stack-only layout. As root
// (confined to nobody, whose tunstack cannot read root's descriptors, and
// with --no-sandbox) and as nobody.
func TestSSSandboxSideIsSSInside(t *testing.T) {
	needRoot(t) // ss runs inside the namespace with nsenter
	needProg(t, "python3", "nsenter", "ss")
	for _, tc := range []struct {
		name  string
		uid   int
		flags []string
		names bool // whether tunstack can name the processes
	}{
		{"root", 0, nil, false},
		{"root --no-sandbox", 0, []string{"--no-sandbox"}, true},
		{"nobody", 65534, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needTun(t, tc.uid)
			ctl := controlDir(t, tc.uid)
			env := []string{"TUNSTACK_CONTROL_DIR=" + ctl}
			name := "sss-" + strings.ReplaceAll(tc.name, " ", "")
			args := append([]string{binPath, "run", "--name", name}, tc.flags...)
			p := startBG(t, tc.uid, env, append(args, "--", "python3", "-c", sandboxSockets)...)
			o := runOpts{uid: tc.uid, env: env, timeout: 10 * time.Second}
			sb, err := strconv.Atoi(psLine(waitPs(t, o, []*bgProc{p}, name), name)[2])
			if err != nil {
				t.Fatalf("no sandbox PID for %s: %v", name, err)
			}
			var ours string
			for end := time.Now().Add(15 * time.Second); !strings.Contains(ours, ":18084"); time.Sleep(100 * time.Millisecond) {
				if p.exited() || time.Now().After(end) {
					t.Fatalf("tunstack ss --side sandbox never listed the sandbox's UDP socket:\n%s", ours)
				}
				ours = mustRun(t, o, "ss", "--name", name, "--side", "sandbox", "-tuanp").stdout
			}
			// The listing that saw the UDP socket may have read the TCP
			// tables before the program was done: list again.
			ours = mustRun(t, o, "ss", "--name", name, "--side", "sandbox", "-tuanp").stdout
			real, err := exec.Command("nsenter", "-t", strconv.Itoa(sb), "-n", "ss", "-tuanp").CombinedOutput()
			if err != nil {
				t.Fatalf("ss in the sandbox: %v: %s", err, real)
			}
			got, want := ssRows(ours, true, tc.names), ssRows(string(real), true, tc.names)
			if len(want) != 10 || !slices.Equal(got, want) {
				t.Errorf("tunstack ss --side sandbox -tuanp:\n%s\nwant (10 sockets, as ss in the sandbox):\n%s\ntunstack's output:\n%s\nss's:\n%s",
					strings.Join(got, "\n"), strings.Join(want, "\n"), ours, real)
			}
			// The listeners alone, against ss -tlnH in the namespace:
			// backlogs as Send-Q, [::] for a v6-only listener and * for
			// a dual-stack one, as ss reads them (sock_diag).
			ours = mustRun(t, o, "ss", "--name", name, "--side", "sandbox", "-tln").stdout
			real, err = exec.Command("nsenter", "-t", strconv.Itoa(sb), "-n", "ss", "-tlnH").CombinedOutput()
			if err != nil {
				t.Fatalf("ss -tlnH in the sandbox: %v: %s", err, real)
			}
			got, want = ssRows(ours, true, false), ssRows(string(real), false, false)
			wantRows := []string{"LISTEN 0 3 [::]:18085 [::]:*", "LISTEN 1 5 *:18082 *:*", "LISTEN 0 7 0.0.0.0:18081 0.0.0.0:*"}
			for _, r := range wantRows {
				if !slices.Contains(want, r) {
					t.Errorf("ss -tlnH in the sandbox lacks %q (the test's premise):\n%s", r, real)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("tunstack ss --side sandbox -tln:\n%s\nwant (as ss -tlnH in the sandbox):\n%s",
					strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// And -H itself, line for line (columns as wide as their
			// contents, as ss prints them without a header; in any
			// order, since ss lists in the kernel's hash order).
			oursH := mustRun(t, o, "ss", "--name", name, "--side", "sandbox", "-tlnH").stdout
			if !slices.Equal(sortedLines(oursH), sortedLines(string(real))) {
				t.Errorf("tunstack ss --side sandbox -tlnH:\n%s\nwant (ss -tlnH in the sandbox):\n%s", oursH, real)
			}

			// Both sides, marked: the sandbox's listener with its
			// process, the stack's DNS listener.
			both := mustRun(t, o, "ss", "--name", name, "-tlnp").stdout
			var sandboxRow, stackRow bool
			for _, l := range strings.Split(both, "\n") {
				f := strings.Fields(l)
				switch {
				case len(f) >= 6 && f[0] == "sandbox" && f[1] == "LISTEN" && f[4] == "0.0.0.0:18081":
					sandboxRow = !tc.names || (len(f) == 7 && strings.HasPrefix(f[6], `users:(("python3",pid=`))
				case len(f) >= 6 && f[0] == "stack" && f[1] == "LISTEN" && f[4] == "10.0.2.3:53":
					stackRow = true
				}
			}
			if !strings.HasPrefix(both, "Side ") || !sandboxRow || !stackRow {
				t.Errorf("tunstack ss -tlnp: want a Side column, the sandbox's listener on 0.0.0.0:18081 (named python3: %v) and the stack's DNS on 10.0.2.3:53:\n%s", tc.names, both)
			}
			stack := mustRun(t, o, "ss", "--name", name, "--side", "stack", "-tln").stdout
			if !strings.HasPrefix(stack, "State ") || strings.Contains(stack, "18081") || !strings.Contains(stack, "10.0.2.3:53") {
				t.Errorf("tunstack ss --side stack -tln: want the stack's sockets alone, in the layout without Side:\n%s", stack)
			}
		})
	}
}

// sortedLines is s's lines, trailing blanks dropped (ss pads its last
// column), sorted.
func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	slices.Sort(lines)
	return lines
}

// waitControlSocket waits up to 15 s for an instance's control socket,
// failing the test if run exits first.
func waitControlSocket(t *testing.T, run *bgProc, sock string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		if time.Now().After(deadline) || run.exited() {
			t.Fatalf("no control socket %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
