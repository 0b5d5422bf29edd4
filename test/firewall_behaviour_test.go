package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
)

// End-to-end firewall behaviour through the real binary (issue 3,
// "Behaviour end to end through tunstack run"): REDIRECT, MARK, user
// chains with RETURN, rule order on a live instance, counters, LOG,
// -m limit and a 100,000-entry ipset blocklist.

// dialSeq runs the dial helper in one sandbox once per address, in order,
// and returns one line of output per dial ("ok" or the error).
func dialSeq(t *testing.T, o runOpts, extra []string, rules string, addrs ...string) ([]string, runResult) {
	t.Helper()
	var script strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&script, "%s %s; ", helperPath, a)
	}
	script.WriteString("true")
	o.env = append(o.env, helperEnv+"=dial", "DIAL_TIMEOUT=2s")
	args := append([]string{}, extra...)
	args = append(args, "run", "--rules", writeRules(t, rules), "--", "sh", "-c", script.String())
	r := tunstack(t, o, args...)
	if r.code != 0 {
		t.Fatalf("tunstack %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != len(addrs) {
		t.Fatalf("%d dials printed %d lines:\n%s\nstderr: %s", len(addrs), len(lines), r.stdout, r.stderr)
	}
	return lines, r
}

// wantDials checks each dial's outcome: "ok", "refused" (connection
// refused) or "timeout" (i/o timeout).
func wantDials(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for i, w := range want {
		var ok bool
		switch w {
		case "ok":
			ok = got[i] == "ok"
		case "refused":
			ok = strings.Contains(got[i], "connection refused")
		case "timeout":
			ok = strings.Contains(got[i], "i/o timeout")
		}
		if !ok {
			t.Errorf("%s: dial %d: %q, want %s", what, i+1, got[i], w)
		}
	}
}

func gw(port int) string { return fmt.Sprintf("10.0.2.2:%d", port) }

func TestFirewallBehaviourRedirect(t *testing.T) {
	needTun(t, 0)
	needProg(t, "curl")
	port := startHTTP(t, "127.0.0.1:0")
	rules := fmt.Sprintf("*nat\n:PREROUTING ACCEPT [0:0]\n"+
		"-A PREROUTING -d 10.0.2.2/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports %d\nCOMMIT\n", port)
	// The answer is the test's own server's (not whatever may listen on
	// the host's port 80).
	r := mustRun(t, runOpts{}, "run", "--rules", writeRules(t, rules), "--",
		"curl", "-sS", "--fail", "--max-time", "10", "http://10.0.2.2/")
	if !strings.HasPrefix(r.stdout, "hello from 10.0.2.2 to ") {
		t.Fatalf("curl http://10.0.2.2/ through REDIRECT --to-ports %d: %q\nstderr: %s", port, r.stdout, r.stderr)
	}
}

// TestFirewallBehaviourRedirectForward redirects a connection to a host
// address whose port is closed (in a test-made host namespace) to the
// host's loopback, where the helper server listens.
func TestFirewallBehaviourRedirectForward(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	o := runOpts{netns: ns}
	closed := hostAddr + ":81"
	got, _ := dialSeq(t, o, nil, "*nat\nCOMMIT\n", closed)
	wantDials(t, "closed port without REDIRECT", got, "refused")
	rules := fmt.Sprintf("*nat\n-A PREROUTING -d %s/32 -p tcp -m tcp --dport 81 -j REDIRECT --to-ports %d\nCOMMIT\n", hostAddr, hostPort)
	got, r := dialSeq(t, o, nil, rules, closed)
	wantDials(t, "REDIRECT "+closed, got, "ok")
	if t.Failed() {
		t.Logf("stderr: %s", r.stderr)
	}
}

// TestFirewallBehaviourMark sets a mark in mangle PREROUTING and matches
// it in filter INPUT (gateway traffic) and FORWARD (traffic to a host
// address): only the marked connection is refused.
func TestFirewallBehaviourMark(t *testing.T) {
	needTun(t, 0)
	t.Run("INPUT", func(t *testing.T) {
		marked := startHTTP(t, "127.0.0.1:0")
		plain := startHTTP(t, "127.0.0.1:0")
		rules := fmt.Sprintf("*mangle\n-A PREROUTING -d 10.0.2.2/32 -p tcp -m tcp --dport %d -j MARK --set-xmark 0x2a/0xffffffff\nCOMMIT\n"+
			"*filter\n-A INPUT -p tcp -m mark --mark 0x2a -j REJECT --reject-with tcp-reset\nCOMMIT\n", marked)
		got, r := dialSeq(t, runOpts{}, nil, rules, gw(marked), gw(plain))
		wantDials(t, "MARK then INPUT -m mark", got, "refused", "ok")
		// A different mark value does not match.
		other := strings.Replace(rules, "--mark 0x2a", "--mark 0x2b", 1)
		got, _ = dialSeq(t, runOpts{}, nil, other, gw(marked))
		wantDials(t, "INPUT -m mark with another value", got, "ok")
		if t.Failed() {
			t.Logf("stderr: %s", r.stderr)
		}
	})
	t.Run("FORWARD", func(t *testing.T) {
		ns := hostNS(t, hostPort)
		o := runOpts{netns: ns}
		rules := fmt.Sprintf("*mangle\n-A PREROUTING -d %s/32 -p tcp -m tcp --dport %d -j MARK --set-mark 0x7\nCOMMIT\n"+
			"*filter\n-A INPUT -m mark --mark 0x7 -j DROP\n-A FORWARD -i tun0 -o host -p tcp -m mark --mark 0x7/0xf -j REJECT --reject-with tcp-reset\nCOMMIT\n",
			hostAddr, hostPort)
		host := fmt.Sprintf("%s:%d", hostAddr, hostPort)
		got, r := dialSeq(t, o, nil, rules, host, gw(hostPort))
		wantDials(t, "MARK then FORWARD -m mark", got, "refused", "ok")
		// Without the MARK rule the FORWARD rule does not match.
		got, _ = dialSeq(t, o, nil, rules[strings.Index(rules, "*filter"):], host)
		wantDials(t, "FORWARD -m mark without MARK", got, "ok")
		if t.Failed() {
			t.Logf("stderr: %s", r.stderr)
		}
	})
}

// TestFirewallBehaviourUserChainReturn: RETURN leaves the user chain (its
// later rules do not apply) and evaluation continues in the caller after
// the jump (RETURN is not ACCEPT).
func TestFirewallBehaviourUserChainReturn(t *testing.T) {
	needTun(t, 0)
	a := startHTTP(t, "127.0.0.1:0")
	b := startHTTP(t, "127.0.0.1:0")
	c := startHTTP(t, "127.0.0.1:0")
	d := startHTTP(t, "127.0.0.1:0")
	rules := fmt.Sprintf("*filter\n:INPUT ACCEPT [0:0]\n:chk - [0:0]\n"+
		"-A INPUT -p tcp -j chk\n"+
		"-A INPUT -p tcp -m tcp --dport %[2]d -j REJECT --reject-with tcp-reset\n"+
		"-A chk -p tcp -m tcp --dport %[1]d -j RETURN\n"+
		"-A chk -p tcp -m tcp --dport %[2]d -j RETURN\n"+
		"-A chk -p tcp -m multiport --dports %[1]d,%[3]d -j REJECT --reject-with tcp-reset\n"+
		"COMMIT\n", a, b, c)
	got, r := dialSeq(t, runOpts{}, nil, rules, gw(a), gw(b), gw(c), gw(d))
	// a: RETURN before the chain's REJECT; b: RETURN, then INPUT's REJECT;
	// c: the chain's REJECT; d: no rule, the policy.
	wantDials(t, "user chain with RETURN", got, "ok", "refused", "refused", "ok")
	if t.Failed() {
		t.Logf("stderr: %s", r.stderr)
	}
}

// TestFirewallBehaviourLog: LOG prints the packet to tunstack's stderr
// (its structured log) and evaluation continues.
func TestFirewallBehaviourLog(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "127.0.0.1:0")
	rules := fmt.Sprintf("*filter\n-A INPUT -p tcp -m tcp --dport %d --tcp-flags FIN,SYN,RST,ACK SYN -j LOG --log-prefix \"e2e-log: \"\nCOMMIT\n", port)
	got, r := dialSeq(t, runOpts{}, nil, rules, gw(port))
	wantDials(t, "through LOG", got, "ok")
	wantLog(t, r.stderr, "e2e-log: ", port)

	// A LOG rule at --log-level debug prints when tunstack logs at debug.
	rules = fmt.Sprintf("*filter\n-A INPUT -p tcp -m tcp --dport %d -j LOG --log-prefix dbg-log --log-level 7\nCOMMIT\n", port)
	got, r = dialSeq(t, runOpts{}, []string{"--log-level", "debug"}, rules, gw(port))
	wantDials(t, "through LOG level debug", got, "ok")
	wantLog(t, r.stderr, "dbg-log", port)
}

func wantLog(t *testing.T, stderr, prefix string, port int) {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "netfilter LOG") && strings.Contains(line, prefix) &&
			strings.Contains(line, "dst=10.0.2.2") && strings.Contains(line, "src=10.0.2.100") &&
			strings.Contains(line, "dpt="+strconv.Itoa(port)) && strings.Contains(line, "hook=") {
			return
		}
	}
	t.Errorf("no LOG line with prefix %q, src=10.0.2.100 dst=10.0.2.2 dpt=%d in stderr:\n%s", prefix, port, stderr)
}

// TestFirewallBehaviourLimit: limit 2/min burst 2 accepts two new
// connections, the third falls through to REJECT.
func TestFirewallBehaviourLimit(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "127.0.0.1:0")
	other := startHTTP(t, "127.0.0.1:0")
	rules := fmt.Sprintf("*filter\n"+
		"-A INPUT -p tcp -m tcp --dport %[1]d --tcp-flags FIN,SYN,RST,ACK SYN -m limit --limit 2/min --limit-burst 2 -j ACCEPT\n"+
		"-A INPUT -p tcp -m tcp --dport %[1]d --tcp-flags FIN,SYN,RST,ACK SYN -j REJECT --reject-with tcp-reset\n"+
		"COMMIT\n", port)
	got, r := dialSeq(t, runOpts{}, nil, rules, gw(port), gw(port), gw(port), gw(port), gw(other))
	wantDials(t, "limit 2/min burst 2", got, "ok", "ok", "refused", "refused", "ok")
	if t.Failed() {
		t.Logf("stderr: %s", r.stderr)
	}
}

// liveSandbox is a running "tunstack run --name" whose sandbox dials on
// request, so a test can change the rules between dials through the CLI.
type liveSandbox struct {
	t    *testing.T
	name string
	o    runOpts // for CLI commands on the instance
	dir  string
	n    int
	errb *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLive starts a named instance (in netns if not empty) whose
// sandbox runs the dial helper for each address requested with dial.
func startLive(t *testing.T, netns, name string) *liveSandbox {
	t.Helper()
	return startLiveMode(t, netns, name, "dial")
}

// startLiveMode is startLive with another helper mode: dial's argument
// string is then that mode's arguments.
func startLiveMode(t *testing.T, netns, name, mode string) *liveSandbox {
	t.Helper()
	ctl := t.TempDir()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	env := []string{control.DirEnv + "=" + ctl}
	script := fmt.Sprintf("i=0; while :; do i=$((i+1)); "+
		"while [ ! -e %[1]s/req$i ]; do sleep 0.02; done; "+
		"%[2]s $(cat %[1]s/req$i) > %[1]s/tmp$i; mv %[1]s/tmp$i %[1]s/res$i; done", dir, helperPath)
	argv := []string{binPath, "run", "--name", name, "--", "sh", "-c", script}
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	bg := exec.Command(argv[0], argv[1:]...)
	l := &liveSandbox{t: t, name: name, o: runOpts{env: env, netns: netns}, dir: dir, errb: &syncBuffer{}}
	bg.Stdout, bg.Stderr = l.errb, l.errb
	bg.Env = append(os.Environ(), append(env, helperEnv+"="+mode, "DIAL_TIMEOUT=2s")...)
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// ip netns exec execs tunstack, so the pid is tunstack's; SIGTERM
		// reaches the command and tunstack exits with it.
		bg.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { bg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			bg.Process.Kill()
			<-done
		}
	})
	sock := control.SocketPath(ctl, name)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket %s\noutput: %s", sock, l.errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l
}

// dial has the sandbox dial addr and returns the helper's output line.
func (l *liveSandbox) dial(addr string) string {
	l.t.Helper()
	l.n++
	if err := os.WriteFile(filepath.Join(l.dir, "tmpreq"), []byte(addr), 0o644); err != nil {
		l.t.Fatal(err)
	}
	os.Rename(filepath.Join(l.dir, "tmpreq"), filepath.Join(l.dir, fmt.Sprintf("req%d", l.n)))
	res := filepath.Join(l.dir, fmt.Sprintf("res%d", l.n))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if b, err := os.ReadFile(res); err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("dial %s in the sandbox did not finish\noutput: %s", addr, l.errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expect dials addr and checks the outcome as wantDials does.
func (l *liveSandbox) expect(what, addr, want string) {
	l.t.Helper()
	wantDials(l.t, what, []string{l.dial(addr)}, want)
}

// cli runs a tunstack subcommand on the instance (--name added after the
// subcommand) and requires exit 0.
func (l *liveSandbox) cli(stdin string, sub string, args ...string) string {
	l.t.Helper()
	o := l.o
	if stdin != "" {
		o.stdin = strings.NewReader(stdin)
	}
	return mustRun(l.t, o, append([]string{sub, "--name", l.name}, args...)...).stdout
}

func (l *liveSandbox) iptables(rule string) string {
	l.t.Helper()
	return l.cli("", "iptables", strings.Fields(rule)...)
}

// counters returns the packet counts of chain's rules, in order, from
// iptables -L CHAIN -v -n -x.
func (l *liveSandbox) counters(table, chain string) []int {
	l.t.Helper()
	out := l.cli("", "iptables", "-t", table, "-L", chain, "-v", "-n", "-x")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var pk []int
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		n, err := strconv.Atoi(f[0])
		if err != nil {
			l.t.Fatalf("iptables -L %s: bad line %q:\n%s", chain, line, out)
		}
		pk = append(pk, n)
	}
	return pk
}

func (l *liveSandbox) wantCounters(table, chain string, want ...int) {
	l.t.Helper()
	got := l.counters(table, chain)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		l.t.Errorf("%s %s packet counters %v, want %v\n%s", table, chain, got, want,
			l.cli("", "iptables", "-t", table, "-L", chain, "-v", "-n", "-x"))
	}
}

// TestFirewallBehaviourRuleOrder changes a live instance's rules through
// the CLI: a rule inserted at a position beats a later one, -D by spec
// removes it, and the rules' counters count the packets they matched.
func TestFirewallBehaviourRuleOrder(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "127.0.0.1:0")
	other := startHTTP(t, "127.0.0.1:0")
	l := startLive(t, "", "order")
	syn := "--tcp-flags FIN,SYN,RST,ACK SYN"
	unrelated := fmt.Sprintf("-p tcp -m tcp --dport %d %s -j ACCEPT", other, syn)
	reject := fmt.Sprintf("-p tcp -m tcp --dport %d %s -j REJECT --reject-with tcp-reset", port, syn)
	accept := fmt.Sprintf("-p tcp -m tcp --dport %d %s -j ACCEPT", port, syn)

	l.expect("no rules", gw(port), "ok")
	l.iptables("-A INPUT " + unrelated)
	l.iptables("-A INPUT " + reject)
	l.expect("after -A REJECT", gw(port), "refused")
	l.expect("unrelated port", gw(other), "ok")
	l.wantCounters("filter", "INPUT", 1, 1)

	l.iptables("-I INPUT 2 " + accept)
	if got, want := l.cli("", "iptables", "-S", "INPUT"),
		"-P INPUT ACCEPT\n-A INPUT "+unrelated+"\n-A INPUT "+accept+"\n-A INPUT "+reject+"\n"; got != want {
		t.Fatalf("after -I INPUT 2, -S INPUT:\n%s\nwant:\n%s", got, want)
	}
	l.expect("after -I INPUT 2 ACCEPT", gw(port), "ok")
	l.expect("after -I INPUT 2 ACCEPT, again", gw(port), "ok")
	// Counters of unchanged rules survive the change.
	l.wantCounters("filter", "INPUT", 1, 2, 1)

	l.iptables("-D INPUT " + accept)
	if got, want := l.cli("", "iptables", "-S", "INPUT"),
		"-P INPUT ACCEPT\n-A INPUT "+unrelated+"\n-A INPUT "+reject+"\n"; got != want {
		t.Fatalf("after -D by spec, -S INPUT:\n%s\nwant:\n%s", got, want)
	}
	l.expect("after -D ACCEPT", gw(port), "refused")
	l.wantCounters("filter", "INPUT", 1, 2)

	// Byte counters: a SYN is at least 40 bytes; -Z zeroes both.
	out := l.cli("", "iptables-save", "-c")
	if !strings.Contains(out, "[2:") || strings.Contains(out, "[2:0]") {
		t.Errorf("iptables-save -c lacks the REJECT rule's [2:BYTES]:\n%s", out)
	}
	l.cli("", "iptables", "-Z", "INPUT")
	l.wantCounters("filter", "INPUT", 0, 0)
	l.expect("after -Z", gw(port), "refused")
	l.wantCounters("filter", "INPUT", 0, 1)

	// A rule counts every packet it matches: an unrestricted rule sees
	// more than the SYN of an accepted connection.
	l.iptables(fmt.Sprintf("-I INPUT 1 -p tcp -m tcp --dport %d", other))
	l.expect("counting rule", gw(other), "ok")
	if c := l.counters("filter", "INPUT"); len(c) != 3 || c[0] < 3 || c[1] != 1 {
		t.Errorf("after a full connection, counters %v: want the unrestricted rule >= 3 (SYN, ACK, FIN...) and the SYN rule 1", c)
	}
	if t.Failed() {
		t.Logf("instance output: %s", l.errb.String())
	}
}

// TestFirewallBehaviourIPSetBlocklist loads a 100,000-network hash:net set
// through "ipset restore" on a live instance (in a host namespace) and
// blocks by it: a listed host address is refused, unlisted addresses
// pass, and deleting the entry unblocks it.
func TestFirewallBehaviourIPSetBlocklist(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	l := startLive(t, ns, "ipset")
	host := fmt.Sprintf("%s:%d", hostAddr, hostPort)
	l.expect("before the blocklist", host, "ok")

	var b strings.Builder
	b.WriteString("create bl hash:net family inet hashsize 65536 maxelem 200000\n")
	const n = 100000
	for i := 0; i < n-4; i++ {
		// Generated networks, never dialled: /24s, /28s and /32s.
		j := i / 3
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "add bl 20.%d.%d.0/24\n", j>>8, j&255)
		case 1:
			fmt.Fprintf(&b, "add bl 44.%d.%d.%d/28\n", j>>12, j>>4&255, (j&15)<<4)
		default:
			fmt.Fprintf(&b, "add bl 100.%d.%d.%d\n", 64+j>>16, j>>8&255, j&255)
		}
	}
	// Neighbours of 10.0.2.2, and the host address itself.
	b.WriteString("add bl 10.0.2.0/31\nadd bl 10.0.3.0/24\nadd bl 198.18.0.0/31\nadd bl 198.18.1.0/24\n")
	l.cli(b.String(), "ipset", "restore")
	out := l.cli("", "ipset", "list", "bl", "-t")
	if !strings.Contains(out, "Number of entries: "+strconv.Itoa(n)) {
		t.Fatalf("ipset list bl -t: want %d entries:\n%s", n, out)
	}

	l.iptables("-A FORWARD -p tcp -m set --match-set bl dst -j REJECT --reject-with tcp-reset")
	l.iptables("-A INPUT -p tcp -m set --match-set bl dst -j REJECT --reject-with tcp-reset")
	start := time.Now()
	l.expect("listed host address", host, "refused")
	l.expect("unlisted gateway address", gw(hostPort), "ok")
	l.expect("listed host address, again", host, "refused")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("three dials through a 100,000-entry set took %v", d)
	}

	// Replace the covering /31 with its other half: 198.18.0.1 passes.
	l.cli("", "ipset", "del", "bl", "198.18.0.0/31")
	l.cli("", "ipset", "add", "bl", "198.18.0.0/32")
	l.expect("host address after ipset del", host, "ok")
	l.cli("", "ipset", "add", "bl", hostAddr)
	l.expect("host address after ipset add", host, "refused")
	if t.Failed() {
		t.Logf("instance output: %s", l.errb.String())
	}
}
