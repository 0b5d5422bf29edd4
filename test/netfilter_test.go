package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
)

// writeRules writes an iptables-save file for --rules and returns its
// path.
func writeRules(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "rules")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dialInSandbox runs the dial helper in a sandbox with rules loaded and
// returns its output and how long the run took.
func dialInSandbox(t *testing.T, rulesFlag, rules, addr string) runResult {
	t.Helper()
	return tunstack(t, runOpts{env: []string{helperEnv + "=dial", "DIAL_TIMEOUT=2s"}},
		"run", rulesFlag, writeRules(t, rules), "--", helperPath, addr)
}

func TestFirewallDropTimesOut(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "127.0.0.1:0")
	// The gateway address is the stack's own: its traffic traverses INPUT.
	rules := fmt.Sprintf("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -d 10.0.2.2/32 -p tcp --dport %d -j DROP\nCOMMIT\n", port)
	r := dialInSandbox(t, "--rules", rules, fmt.Sprintf("10.0.2.2:%d", port))
	if r.code != 1 || !strings.Contains(r.stdout, "i/o timeout") {
		t.Fatalf("dial through DROP: exit %d, output %q (want i/o timeout)\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Without the rule the same port answers.
	r = dialInSandbox(t, "--rules", "*filter\nCOMMIT\n", fmt.Sprintf("10.0.2.2:%d", port))
	if r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Fatalf("dial without rules: exit %d, output %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

func TestFirewallRejectTCPReset(t *testing.T) {
	needTun(t, 0)
	for _, tc := range []struct {
		name, listen, flag, addr string
	}{
		{"ipv4", "127.0.0.1:0", "--rules", "10.0.2.2"},
		{"ipv6", "[::1]:0", "--rules6", "[fd00::2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := startHTTP(t, tc.listen)
			rules := fmt.Sprintf("*filter\n-A INPUT -p tcp --dport %d -j REJECT --reject-with tcp-reset\nCOMMIT\n", port)
			r := dialInSandbox(t, tc.flag, rules, fmt.Sprintf("%s:%d", tc.addr, port))
			if r.code != 1 || !strings.Contains(r.stdout, "connection refused") {
				t.Fatalf("dial through REJECT: exit %d, output %q (want connection refused)\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if r.elapsed > 5*time.Second {
				t.Fatalf("refusal took %v: the RST is not immediate", r.elapsed)
			}
		})
	}
}

func TestFirewallDNATPortRemap(t *testing.T) {
	needTun(t, 0)
	needProg(t, "curl")
	port := startHTTP(t, "127.0.0.1:0")
	rules := fmt.Sprintf("*nat\n:PREROUTING ACCEPT [0:0]\n"+
		"-A PREROUTING -d 10.0.2.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.2.2:%d\nCOMMIT\n", port)
	r := mustRun(t, runOpts{}, "run", "--rules", writeRules(t, rules), "--",
		"curl", "-sS", "--fail", "--max-time", "10", "http://10.0.2.2/")
	if !strings.HasPrefix(r.stdout, "hello from 10.0.2.2") {
		t.Fatalf("curl http://10.0.2.2/ through DNAT to port %d: %q\nstderr: %s", port, r.stdout, r.stderr)
	}
}

func TestFirewallBadRulesFile(t *testing.T) {
	needTun(t, 0)
	for _, tc := range []struct {
		name, flag, rules, want string
	}{
		{"unknown option", "--rules", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dportx 80 -j DROP\nCOMMIT\n", "line 3"},
		{"DNAT in filter", "--rules", "*filter\n-A INPUT -p tcp -j DNAT --to-destination 10.0.2.2:80\nCOMMIT\n", "line 2"},
		{"ipv6", "--rules6", "*filter\n-A INPUT -s 10.0.0.1 -j DROP\nCOMMIT\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tunstack(t, runOpts{}, "run", tc.flag, writeRules(t, tc.rules), "--", "echo", "command ran")
			if r.code != 125 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, tc.flag) {
				t.Fatalf("bad rules file: exit %d, stderr %q (want 125 naming %s and %q)", r.code, r.stderr, tc.flag, tc.want)
			}
			if strings.Contains(r.stdout, "command ran") {
				t.Fatalf("the command ran despite the bad rules file")
			}
		})
	}
}

func TestIPTablesRestoreTestOffline(t *testing.T) {
	env := []string{control.DirEnv + "=" + t.TempDir()}
	good := "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n" +
		"*nat\n-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.2.2:8080\nCOMMIT\n"
	r := tunstack(t, runOpts{env: env, stdin: strings.NewReader(good)}, "iptables-restore", "--test")
	if r.code != 0 {
		t.Fatalf("iptables-restore --test of a good file: exit %d\nstderr: %s", r.code, r.stderr)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"DNAT outside nat", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DNAT --to-destination 1.2.3.4\nCOMMIT\n", "line 3"},
		{"unknown target", "*filter\n-A INPUT -j NOSUCH\nCOMMIT\n", "line "},
		{"jump loop", "*filter\n:a - [0:0]\n:b - [0:0]\n-A a -j b\n-A b -j a\n-A INPUT -j a\nCOMMIT\n", "line "},
		{"missing COMMIT", "*filter\n-A INPUT -j ACCEPT\n", "line "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeRules(t, tc.text)
			r := tunstack(t, runOpts{env: env}, "iptables-restore", "--test", file)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("iptables-restore --test: exit %d, stderr %q (want 1 and %q)", r.code, r.stderr, tc.want)
			}
		})
	}
	// An IPv4 address in ip6tables rules.
	r = tunstack(t, runOpts{env: env, stdin: strings.NewReader("*filter\n-A INPUT -s 10.0.0.1 -j DROP\nCOMMIT\n")}, "ip6tables-restore", "--test")
	if r.code != 1 || !strings.Contains(r.stderr, "line 2") {
		t.Fatalf("ip6tables-restore --test with an IPv4 address: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestFirewallLiveChange changes the rules of a running instance through
// the CLI: the sandbox's next connection is refused and the rule's
// counters count it.
func TestFirewallLiveChange(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "127.0.0.1:0")
	ctl := t.TempDir()
	env := []string{control.DirEnv + "=" + ctl}
	gate := t.TempDir()
	os.Chmod(gate, 0o755)
	goFile := filepath.Join(gate, "go")
	// The sandbox dials once the test has changed the rules.
	script := fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; %s 10.0.2.2:%d; exec sleep 30", goFile, helperPath, port)
	bg := exec.Command(binPath, "run", "--name", "fw", "--", "sh", "-c", script)
	var out, errb bytes.Buffer
	bg.Stdout, bg.Stderr = &out, &errb
	bg.Env = append(os.Environ(), append(env, helperEnv+"=dial", "DIAL_TIMEOUT=5s")...)
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM reaches the command (which holds the output pipes) and
		// tunstack exits with it.
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
	sock := control.SocketPath(ctl, "fw")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket %s\nstderr: %s", sock, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	o := runOpts{env: env}
	rule := fmt.Sprintf("-A INPUT -p tcp -m tcp --dport %d -j REJECT --reject-with tcp-reset", port)
	mustRun(t, o, append([]string{"iptables", "--name", "fw"}, strings.Fields(rule)...)...)

	// A bad rule: exit 2 (a bad command line, as iptables-legacy 1.8.9
	// exits) with iptables' error, nothing changes, the instance keeps
	// running.
	r := tunstack(t, o, "iptables", "--name", "fw", "-A", "INPUT", "-p", "tcp", "--dportx", "1", "-j", "DROP")
	if r.code != 2 || !strings.Contains(r.stderr, "iptables") || !strings.Contains(r.stderr, "--dportx") {
		t.Fatalf("bad rule: exit %d, stderr %q (want 2 with iptables' error)", r.code, r.stderr)
	}
	r = tunstack(t, o, "iptables", "--name", "fw", "-A", "INPUT", "-j", "NOSUCHCHAIN")
	if r.code != 2 || r.stderr == "" {
		t.Fatalf("rule jumping to a missing chain: exit %d, stderr %q", r.code, r.stderr)
	}

	r = mustRun(t, o, "iptables", "--name", "fw", "-S", "INPUT")
	if want := "-P INPUT ACCEPT\n" + rule + "\n"; r.stdout != want {
		t.Fatalf("iptables -S INPUT:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = mustRun(t, o, "iptables-save", "--name", "fw")
	if !strings.Contains(r.stdout, "*filter\n") || !strings.Contains(r.stdout, "\n"+rule+"\n") {
		t.Fatalf("iptables-save lacks the rule:\n%s", r.stdout)
	}

	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox's dial did not finish\nstdout: %s\nstderr: %s", out.String(), errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "connection refused") {
		t.Fatalf("dial after adding REJECT: %q (want connection refused)", out.String())
	}
	r = mustRun(t, o, "iptables", "--name", "fw", "-L", "INPUT", "-v", "-n", "-x")
	var pkts string
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, "REJECT") {
			pkts = strings.Fields(line)[0]
		}
	}
	if pkts != "1" {
		t.Fatalf("REJECT rule counted %q packets, want 1:\n%s", pkts, r.stdout)
	}
	r = mustRun(t, o, "iptables-save", "--name", "fw", "-c")
	if !strings.Contains(r.stdout, "[1:") {
		t.Fatalf("iptables-save -c lacks the rule's counters:\n%s", r.stdout)
	}

	// iptables-restore replaces the table atomically; a bad input
	// changes nothing and names its line.
	r = tunstack(t, runOpts{env: env, stdin: strings.NewReader("*filter\n-A INPUT -j ACCEPT\n-A INPUT -j NOSUCH\nCOMMIT\n")},
		"iptables-restore", "--name", "fw")
	if r.code != 1 || !strings.Contains(r.stderr, "line ") {
		t.Fatalf("iptables-restore of a bad file: exit %d, stderr %q", r.code, r.stderr)
	}
	mustRun(t, runOpts{env: env, stdin: strings.NewReader("*filter\n-A FORWARD -o host -j ACCEPT\nCOMMIT\n")},
		"iptables-restore", "--name", "fw")
	r = mustRun(t, o, "iptables", "--name", "fw", "-S")
	if strings.Contains(r.stdout, "REJECT") || !strings.Contains(r.stdout, "-A FORWARD -o host -j ACCEPT") {
		t.Fatalf("after iptables-restore, iptables -S:\n%s", r.stdout)
	}

	// ipset and conntrack answer.
	mustRun(t, o, "ipset", "--name", "fw", "create", "bl", "hash:net")
	mustRun(t, o, "ipset", "--name", "fw", "add", "bl", "192.0.2.0/24")
	r = mustRun(t, o, "ipset", "--name", "fw", "list", "bl")
	if !strings.Contains(r.stdout, "192.0.2.0/24") {
		t.Fatalf("ipset list bl:\n%s", r.stdout)
	}
	r = mustRun(t, o, "conntrack", "--name", "fw", "-L")
	if !strings.Contains(r.stderr, "flow entries have been shown") {
		t.Fatalf("conntrack -L: stdout %q stderr %q", r.stdout, r.stderr)
	}
}
