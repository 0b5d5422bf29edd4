package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bounds the flood tests hold tunstack to (documented in README,
// "Limits"): its descriptors stay under the baseline plus the flooded
// cap plus fdSlack, and its resident memory under maxFloodRSS.
const (
	fdSlack     = 64
	maxFloodRSS = 256 << 20
)

// instanceInfo is the part of tunstack ps --json the flood tests read.
type instanceInfo struct {
	Name       string `json:"name"`
	Goroutines int    `json:"goroutines"`
	Limits     []struct {
		Name    string `json:"name"`
		Max     int64  `json:"max"`
		InUse   int64  `json:"in_use"`
		Dropped uint64 `json:"dropped"`
	} `json:"limits"`
}

// floodSandbox is a tunstack run whose command is the flood helper.
type floodSandbox struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	o     runOpts // for tunstack ps
	name  string
	// stderr collects tunstack's and the helper's diagnostics.
	stderr syncBuffer
}

// startFlood starts "tunstack run FLAGS -- helper flood ARGS" as o says
// (uid, netns, a shell prefix such as "ulimit -n 256;"), and waits for the
// helper's "ready".
func startFlood(t *testing.T, o runOpts, shellPrefix string, flags []string, args ...string) *floodSandbox {
	t.Helper()
	ctl := controlDir(t, o.uid)
	f := &floodSandbox{t: t, lines: make(chan string, 64), done: make(chan struct{}), name: fmt.Sprintf("flood%d", time.Now().UnixNano()%1000000)}
	// ps must run in tunstack's network namespace: the control socket
	// serves no other.
	f.o = runOpts{uid: o.uid, netns: o.netns, env: []string{"TUNSTACK_CONTROL_DIR=" + ctl}, timeout: 20 * time.Second}
	argv := append([]string{binPath, "run", "--name", f.name}, flags...)
	argv = append(argv, "--", helperPath)
	argv = append(argv, args...)
	if shellPrefix != "" {
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = "'" + a + "'"
		}
		argv = []string{"sh", "-c", shellPrefix + " exec " + strings.Join(quoted, " ")}
	}
	setuid := o.uid != 0
	if o.netns != "" {
		if setuid {
			// Only root enters the namespace; tunstack then runs as uid.
			id := strconv.Itoa(o.uid)
			argv = append([]string{"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", "--"}, argv...)
			setuid = false
		}
		argv = append([]string{"ip", "netns", "exec", o.netns}, argv...)
	}
	f.cmd = exec.Command(argv[0], argv[1:]...)
	f.cmd.Env = append(os.Environ(), append(f.o.env, helperEnv+"=flood")...)
	f.cmd.Dir = "/"
	f.cmd.Stderr = &f.stderr
	if o.uid != 0 {
		f.cmd.Env = append(f.cmd.Env, "HOME=/tmp", "XDG_RUNTIME_DIR=")
	}
	if setuid {
		f.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.uid)}}
	}
	f.stdin, _ = f.cmd.StdinPipe()
	stdout, _ := f.cmd.StdoutPipe()
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
		close(f.lines)
	}()
	go func() { f.cmd.Wait(); close(f.done) }()
	t.Cleanup(func() {
		f.stdin.Close()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			f.cmd.Process.Kill()
			<-f.done
		}
		if t.Failed() {
			t.Logf("tunstack stderr:\n%s", f.stderr.String())
		}
	})
	f.expect("ready", 15*time.Second)
	return f
}

// expect waits for the next line starting with prefix and returns the
// rest of it.
func (f *floodSandbox) expect(prefix string, timeout time.Duration) string {
	f.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-f.lines:
			if !ok {
				f.t.Fatalf("the sandbox ended before %q:\n%s", prefix, f.stderr.String())
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-deadline:
			f.t.Fatalf("no %q from the sandbox within %v", prefix, timeout)
		}
	}
}

// usage returns tunstack's open descriptors and resident memory.
func (f *floodSandbox) usage() (fds int, rss int64) {
	pid := f.cmd.Process.Pid
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return len(ents), rss
}

// info reads the instance from tunstack ps --json.
func (f *floodSandbox) info() instanceInfo {
	f.t.Helper()
	r := mustRun(f.t, f.o, "ps", "--json")
	var infos []instanceInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil {
		f.t.Fatalf("ps --json: %v\n%s", err, r.stdout)
	}
	for _, in := range infos {
		if in.Name == f.name {
			return in
		}
	}
	f.t.Fatalf("ps --json does not list %s:\n%s", f.name, r.stdout)
	return instanceInfo{}
}

// limit returns the named limit's in-use count and drops.
func (in instanceInfo) limit(name string) (inUse int64, dropped uint64, ok bool) {
	for _, l := range in.Limits {
		if l.Name == name {
			return l.InUse, l.Dropped, true
		}
	}
	return 0, 0, false
}

// floodCase is one flood of TestFloods.
type floodCase struct {
	name  string
	kind  string
	count int
	// limit is the cap the flood exceeds, set to capValue by flag.
	limit, flag string
	capValue    int
	hostNS      bool // runs in a test-made host namespace (ping sockets allowed there)
}

var floodCases = []floodCase{
	{name: "udp flows", kind: "udp", count: 50000, limit: "udp-flows", flag: "--max-udp-flows", capValue: 1000},
	{name: "ping flows", kind: "ping", count: 20000, limit: "ping-flows", flag: "--max-ping-flows", capValue: 500, hostNS: true},
	{name: "dns over tcp", kind: "dnstcp", count: 5000, limit: "dns-tcp-conns", flag: "--max-dns-queries", capValue: 256},
	{name: "tcp connections", kind: "tcp", count: 10000, limit: "tcp-flows", flag: "--max-tcp-flows", capValue: 2000},
}

// TestFloods: floods from inside the sandbox past each cap. tunstack stays
// alive, its descriptors and memory stay bounded, the cap counts its
// drops, a download works during and after, and descriptors, goroutines
// and flows return to their baseline.
func TestFloods(t *testing.T) {
	_, sum := testPayload()
	for _, fc := range floodCases {
		for _, u := range users {
			t.Run(fc.name+"/"+u.name, func(t *testing.T) {
				needTun(t, u.uid)
				runFlood(t, u.uid, fc, sum)
			})
		}
	}
}

func runFlood(t *testing.T, uid int, fc floodCase, sum string) {
	o := runOpts{uid: uid}
	port := 0
	if fc.hostNS {
		port = freeTCPPort(t)
		o.netns = hostNS(t, port)
	} else {
		port = startHTTP(t, "127.0.0.1:0")
		// The UDP sink shares the port number when it is free.
		startUDPSink(t, port)
	}
	url := fmt.Sprintf("http://10.0.2.2:%d/file", port)
	target := fmt.Sprintf("10.0.2.2:%d", port)
	switch fc.kind {
	case "ping":
		target = "10.0.2.2"
	case "dnstcp":
		target = "10.0.2.3:53"
	}
	// The silent upstream: the HTTP server accepts DNS over TCP and never
	// answers it.
	flags := []string{fc.flag, strconv.Itoa(fc.capValue), "--udp-idle-timeout", "2s", "--ping-idle-timeout", "2s",
		"--dns-upstream", fmt.Sprintf("127.0.0.1:%d", port)}
	f := startFlood(t, o, "", flags, fc.kind, strconv.Itoa(fc.count), target, url, sum)
	time.Sleep(300 * time.Millisecond)
	baseFDs, baseRSS := f.usage()
	baseG := f.info().Goroutines
	fmt.Fprintln(f.stdin, "go")
	maxFDs, maxRSS := baseFDs, baseRSS
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			fds, rss := f.usage()
			maxFDs, maxRSS = max(maxFDs, fds), max(maxRSS, rss)
		}
	}()
	res := f.expect("flood ", 60*time.Second)
	inFlood := f.info()
	during := f.expect("during ", 30*time.Second)
	close(stop)
	<-sampled
	after := f.expect("after ", 30*time.Second)
	f.expect("done", 10*time.Second)
	t.Logf("%s: %s; tunstack fds %d -> max %d, RSS %d MiB -> max %d MiB, goroutines %d",
		fc.name, res, baseFDs, maxFDs, baseRSS>>20, maxRSS>>20, baseG)
	if during != "ok" || after != "ok" {
		t.Errorf("download during the flood: %s; after: %s", during, after)
	}
	if bound := baseFDs + fc.capValue + fdSlack; maxFDs > bound {
		t.Errorf("tunstack held %d descriptors, over the bound %d (baseline %d + cap %d + %d)", maxFDs, bound, baseFDs, fc.capValue, fdSlack)
	}
	if maxRSS > maxFloodRSS {
		t.Errorf("tunstack's RSS reached %d MiB, over %d MiB", maxRSS>>20, maxFloodRSS>>20)
	}
	if _, dropped, ok := inFlood.limit(fc.limit); !ok || dropped == 0 {
		t.Errorf("%s: no drops counted after a flood of %d past a cap of %d (%+v)", fc.limit, fc.count, fc.capValue, inFlood.Limits)
	}
	f.settles(baseFDs, baseG, fc.limit)
}

// settles waits until tunstack is back to its baseline: descriptors and
// goroutines, and nothing in use at the flooded limit.
func (f *floodSandbox) settles(baseFDs, baseG int, limit string) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fds, _ := f.usage()
		in := f.info()
		inUse, _, _ := in.limit(limit)
		// A few goroutines and descriptors come and go (the ps
		// connection itself, timers).
		if fds <= baseFDs+4 && in.Goroutines <= baseG+8 && inUse == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Errorf("not back to baseline 20 s after the flood: fds %d (baseline %d), goroutines %d (baseline %d), %s in use %d",
				fds, baseFDs, in.Goroutines, baseG, limit, inUse)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// startUDPSink reads and discards datagrams on 127.0.0.1:port, if free.
func startUDPSink(t *testing.T, port int) {
	pc, err := netListenPacket(fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Logf("UDP sink on port %d: %v (datagrams get port unreachable instead)", port, err)
		return
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
}

// TestLowFDLimit: with ulimit -n 256 for tunstack, a UDP flood spends the
// relays' descriptor budget, yet a port forward and the control socket
// still work, and the budget counts its drops.
func TestLowFDLimit(t *testing.T) {
	_, sum := testPayload()
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			port := startHTTP(t, "127.0.0.1:0")
			startUDPSink(t, port)
			fwd := freeTCPPort(t)
			flags := []string{"-p", fmt.Sprintf("127.0.0.1:%d:8080", fwd), "--udp-idle-timeout", "5s"}
			f := startFlood(t, runOpts{uid: u.uid}, "ulimit -n 256;", flags,
				"udp", "5000", fmt.Sprintf("10.0.2.2:%d", port), fmt.Sprintf("http://10.0.2.2:%d/file", port), sum)
			fmt.Fprintln(f.stdin, "go")
			res := f.expect("flood ", 60*time.Second)
			in := f.info() // the control socket answers with the budget spent
			inUse, dropped, _ := in.limit("host-fds")
			if dropped == 0 {
				t.Errorf("host-fds: no drops after %s with ulimit -n 256 (%+v)", res, in.Limits)
			}
			// ps -s shows the budget and its drops.
			ps := mustRun(t, f.o, "ps", "-s").stdout
			if row := limitRow(ps, f.name, "host-fds"); len(row) != 5 || row[4] == "0" {
				t.Errorf("tunstack ps -s: host-fds row %q, want its drops:\n%s", row, ps)
			}
			fds, _ := f.usage()
			if fds > 256-FDReserveForTest/2 {
				t.Errorf("tunstack has %d descriptors open under ulimit -n 256: the reserve is gone", fds)
			}
			// The forward reaches the helper's server on the sandbox's
			// port 8080.
			if err := forwardAnswers(fwd); err != nil {
				t.Errorf("forward with the budget spent: %v", err)
			}
			during := f.expect("during ", 30*time.Second)
			// Once the flood's flows idle out, new flows get descriptors.
			if after := f.expect("after ", 30*time.Second); after != "ok" {
				t.Errorf("download after the flood: %s", after)
			}
			f.expect("done", 30*time.Second)
			t.Logf("flood %s; host-fds in use %d, dropped %d; tunstack fds %d; download during the flood: %s", res, inUse, dropped, fds, during)
		})
	}
}

// FDReserveForTest mirrors instance.FDReserve (descriptors the relays
// leave for the control socket and forwards).
const FDReserveForTest = 64

// forwardAnswers fetches / through the forward on 127.0.0.1:port from the
// flood helper's server in the sandbox; accepting the client takes a
// descriptor from the reserve.
func forwardAnswers(port int) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || !strings.HasPrefix(string(body), "hello from") {
		return fmt.Errorf("got %q, %v; want the sandbox server's hello", body, err)
	}
	return nil
}

// limitRow returns the fields of tunstack ps -s's row for instance name
// and limit (NAME LIMIT MAX IN-USE DROPPED), or nil.
func limitRow(out, name, limit string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == name && f[1] == limit {
			return f
		}
	}
	return nil
}

// TestNOFILERaised: started with a soft RLIMIT_NOFILE of 300, tunstack
// runs with its soft limit raised to the hard one (Go's runtime leaves it
// one below, to notice a later prlimit), while the sandboxed command keeps
// 300.
func TestNOFILERaised(t *testing.T) {
	needTun(t, 0)
	p := startBG(t, 0, nil, "sh", "-c", "ulimit -Sn 300; exec "+binPath+" run -- sleep 30")
	pid := p.cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The command runs once the network is up, beneath the
		// sandbox's init.
		if child := descendant(pid, "sleep"); child != 0 {
			soft, hard := nofile(t, pid)
			s, _ := strconv.Atoi(soft)
			h, _ := strconv.Atoi(hard)
			if s < h-1 {
				t.Errorf("tunstack's RLIMIT_NOFILE: soft %s, hard %s; want the soft limit raised to the hard", soft, hard)
			}
			if cs, _ := nofile(t, child); cs != "300" {
				t.Errorf("the sandboxed command's soft RLIMIT_NOFILE is %s, want the 300 it was started with", cs)
			}
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("tunstack did not start its command: %s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// descendant returns the pid of the first descendant of pid whose command
// is comm, or 0.
func descendant(pid int, comm string) int {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, task := range tasks {
			kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, task.Name()))
			for _, k := range strings.Fields(string(kids)) {
				n, err := strconv.Atoi(k)
				if err != nil {
					continue
				}
				if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n)); strings.TrimSpace(string(c)) == comm {
					return n
				}
				queue = append(queue, n)
			}
		}
	}
	return 0
}

// nofile returns the "Max open files" limits of pid.
func nofile(t *testing.T, pid int) (soft, hard string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0], f[1]
			}
		}
	}
	t.Fatalf("no Max open files in /proc/%d/limits", pid)
	return "", ""
}
