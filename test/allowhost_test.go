package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tunstack/tunstack/control"
)

// hostAddr6 is the host namespace's IPv6 address for the allowlist tests
// (RFC 5180 benchmarking range).
const hostAddr6 = "2001:2::1"

// zonePort is where the zone helper answers DNS in the host namespace.
const zonePort = 5353

// testZone is what the zone helper serves: invented names only.
var testZone = []string{
	"allowed.test. 60 IN A " + hostAddr,
	"blocked.test. 60 IN A " + hostAddr,
	"alias.test. 60 IN CNAME allowed.test.",
	"chain.test. 60 IN CNAME other.test.",
	"other.test. 60 IN A " + hostAddr,
	"pypi.test. 60 IN CNAME edge.cdnhost.test.",
	"edge.cdnhost.test. 60 IN A " + hostAddr,
	"x.wild.test. 60 IN A " + hostAddr,
	"wild.test. 60 IN A " + hostAddr,
	"short.test. 2 IN A " + hostAddr,
	"v6.test. 60 IN AAAA " + hostAddr6,
}

// serveZone answers testZone on addr over UDP and TCP, prints "ready" and
// returns when stdin closes (helper mode "zone").
func serveZone(addr string) int {
	recs := map[string][]dns.RR{}
	for _, s := range testZone {
		rr, err := dns.NewRR(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		recs[rr.Header().Name] = append(recs[rr.Header().Name], rr)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		name, qtype := r.Question[0].Name, r.Question[0].Qtype
		for name != "" {
			rrs, ok := recs[name]
			if !ok {
				break
			}
			next := ""
			for _, rr := range rrs {
				if c, isCNAME := rr.(*dns.CNAME); isCNAME {
					m.Answer = append(m.Answer, rr)
					next = c.Target
				} else if rr.Header().Rrtype == qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
			name = next
		}
		if len(m.Answer) == 0 && recs[r.Question[0].Name] == nil {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go (&dns.Server{PacketConn: pc, Handler: h}).ActivateAndServe()
	go (&dns.Server{Listener: ln, Handler: h}).ActivateAndServe()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// udpProbe sends one datagram to addr on a connected socket and prints
// the reply ("ok") or the error, as the dial helper does for TCP.
func udpProbe(addr string) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	if _, err = c.Write([]byte("probe")); err == nil {
		_, err = c.Read(buf)
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ok")
	return 0
}

// allowNS is a host namespace for the allowlist tests: the file server on
// hostAddr and hostAddr6 (port hostPort), and the zone on 127.0.0.1.
func allowNS(t *testing.T) string {
	t.Helper()
	needTun(t, 0)
	needProg(t, "curl", "dig")
	ns := hostNS(t, hostPort)
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", hostAddr6+"/64", "dev", "hup0", "nodad").CombinedOutput(); err != nil {
		t.Fatalf("add %s: %v: %s", hostAddr6, err, out)
	}
	startNSHelper(t, ns, "server", fmt.Sprintf("[%s]:%d", hostAddr6, hostPort))
	startNSHelper(t, ns, "zone", fmt.Sprintf("127.0.0.1:%d", zonePort))
	return ns
}

// startNSHelper runs a helper mode in ns until the test ends.
func startNSHelper(t *testing.T, ns, mode string, args ...string) {
	t.Helper()
	startHelper(t, []string{"ip", "netns", "exec", ns}, mode, args...)
}

// allowRun runs script in a sandbox of ns with the allowlist flags.
func allowRun(t *testing.T, ns string, flags []string, script string) runResult {
	t.Helper()
	args := append([]string{"run", "--dns-upstream", fmt.Sprintf("127.0.0.1:%d", zonePort)}, flags...)
	args = append(args, "--", "sh", "-c", script)
	return tunstack(t, runOpts{netns: ns, env: []string{helperEnv + "=dial", "DIAL_TIMEOUT=3s"}}, args...)
}

// The outcomes a probe prints.
const (
	fetched  = "fetched"
	nxdomain = "status: NXDOMAIN"
)

// fetch is a shell snippet that downloads the payload from URL (with
// extra curl flags) and prints "fetched" when its sha256 is right, else
// curl's error.
func fetch(sum, flags, url string) string {
	return fmt.Sprintf(`r=$(curl -sS --connect-timeout 3 %s %s/file 2>&1 | sha256sum 2>&1); `+
		`case "$r" in %s*) echo %s;; *) curl -sS -o /dev/null --connect-timeout 3 %s %s/file 2>&1 || true;; esac; `, flags, url, sum, fetched, flags, url)
}

func TestAllowHostNames(t *testing.T) {
	ns := allowNS(t)
	_, sum := testPayload()
	url := func(name string) string { return fmt.Sprintf("http://%s:%d", name, hostPort) }
	dig := func(flags, name string) string {
		return fmt.Sprintf("dig +time=3 +tries=1 %s %s | grep -E 'status:|EDE:|connection refused|unreachable|timed out' ; ", flags, name)
	}
	tests := []struct {
		name   string
		allow  string
		script string
		want   []string // each must appear, in order
		not    []string
	}{
		{name: "allowed name fetches intact", allow: "allowed.test",
			script: fetch(sum, "", url("allowed.test")), want: []string{fetched}},
		{name: "unlisted name is NXDOMAIN with EDE Blocked", allow: "allowed.test",
			script: dig("", "blocked.test"), want: []string{nxdomain, "EDE: 15 (Blocked)", "blocked.test is not in the --allow-host list"}},
		{name: "DNS over TCP is policed alike", allow: "allowed.test",
			script: dig("+tcp", "blocked.test") + dig("+tcp", "allowed.test"), want: []string{nxdomain, "status: NOERROR"}},
		{name: "never-resolved address is rejected at once, TCP and UDP", allow: "allowed.test",
			script: fmt.Sprintf("$TUNSTACK_HELPER %[1]s:%[2]d; TUNSTACK_TEST_HELPER=udpprobe $TUNSTACK_HELPER %[1]s:%[2]d; ", hostAddr, hostPort),
			want:   []string{"no route to host", "no route to host"}},
		{name: "CNAME from an unlisted name into an allowed one", allow: "allowed.test",
			script: fetch(sum, "", url("alias.test")), want: []string{fetched}},
		{name: "allowed name whose chain leads elsewhere", allow: "pypi.test",
			script: fetch(sum, "", url("pypi.test")), want: []string{fetched}},
		{name: "chain touching no allowed name", allow: "allowed.test",
			script: dig("", "chain.test"), want: []string{nxdomain}},
		{name: "wildcard allows below the domain, not the apex", allow: "*.wild.test",
			script: fetch(sum, "", url("x.wild.test")) + dig("", "wild.test"), want: []string{fetched, nxdomain}},
		{name: "name with a port allows that port only", allow: fmt.Sprintf("allowed.test:%d", hostPort+1),
			script: fmt.Sprintf("$TUNSTACK_HELPER allowed.test:%d; ", hostPort), want: []string{"no route to host"}},
		{name: "CIDR with a port range", allow: fmt.Sprintf("198.18.0.0/15:%d-%d", hostPort-1, hostPort+1),
			script: fetch(sum, "", url(hostAddr)) + fmt.Sprintf("$TUNSTACK_HELPER %s:%d; ", hostAddr, hostPort+50),
			want:   []string{fetched, "no route to host"}},
		{name: "IPv6 (AAAA)", allow: "v6.test",
			script: fetch(sum, "-6", url("v6.test")) + fmt.Sprintf("$TUNSTACK_HELPER [%s]:%d; ", "2001:2::2", hostPort),
			want:   []string{fetched, "no route to host"}},
		{name: "another resolver is just a denied destination", allow: "allowed.test",
			script: dig(fmt.Sprintf("@%s -p %d", hostAddr, hostPort), "allowed.test") + fmt.Sprintf("$TUNSTACK_HELPER %s:53; ", hostAddr),
			want:   []string{"no route to host"}, not: []string{"status: NOERROR"}},
		{name: "the gateway only when listed", allow: "allowed.test",
			script: fmt.Sprintf("$TUNSTACK_HELPER 10.0.2.2:%d; ", hostPort), want: []string{"no route to host"}},
		{name: "the gateway when listed", allow: fmt.Sprintf("10.0.2.2:%d", hostPort),
			script: fetch(sum, "", url("10.0.2.2")), want: []string{fetched}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := "export TUNSTACK_HELPER=" + helperPath + "; " + tt.script
			r := allowRun(t, ns, []string{"--allow-host", tt.allow}, script)
			out := r.stdout
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order %q):\n%s\nstderr: %s", w, tt.want, out, r.stderr)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("output has %q:\n%s", n, out)
				}
			}
		})
	}
}

// TestAllowHostTTL: with a 2 s TTL (and a 1 s floor), a connection opened
// before expiry keeps transferring, while a new one after expiry without
// a new lookup is denied.
func TestAllowHostTTL(t *testing.T) {
	ns := allowNS(t)
	_, sum := testPayload()
	script := fmt.Sprintf(`getent hosts short.test >/dev/null || echo lookup-failed
curl -sS --limit-rate 12M http://short.test:%[1]d/file | sha256sum > /tmp/slow.sum &
sleep 3.5
TUNSTACK_TEST_HELPER=dial DIAL_TIMEOUT=3s %[2]s %[3]s:%[1]d
wait
cat /tmp/slow.sum
`, hostPort, helperPath, hostAddr)
	r := allowRun(t, ns, []string{"--allow-host", "short.test", "--allow-host-min-ttl", "1s"}, script)
	if strings.Contains(r.stdout, "lookup-failed") {
		t.Fatalf("lookup failed:\n%s\n%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "no route to host") {
		t.Errorf("a new connection after the TTL without a lookup was not denied:\n%s\nstderr: %s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, sum) {
		t.Errorf("the connection opened before expiry did not complete intact (want %s):\n%s\nstderr: %s", sum, r.stdout, r.stderr)
	}
}

// TestAllowHostLive checks the policy as the tools show it, a user rule
// composing with it, runtime allow/deny, the denial log and the audit.
func TestAllowHostLive(t *testing.T) {
	ns := allowNS(t)
	ctl := t.TempDir()
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	env := []string{control.DirEnv + "=" + ctl}
	o := runOpts{netns: ns, env: env}
	p := startBG(t, 0, env, "ip", "netns", "exec", ns, binPath, "run", "--name", "al",
		"--dns-upstream", fmt.Sprintf("127.0.0.1:%d", zonePort), "--allow-host", "allowed.test,*.wild.test",
		"--audit", auditFile, "--", "sleep", "600")
	info := waitInstance(t, o, p, "al")
	in := func(args ...string) string {
		t.Helper()
		out, _ := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(info.SandboxPID), "-n", "-m", "--"}, args...)...).CombinedOutput()
		return string(out)
	}
	dial := func(addr string) string {
		t.Helper()
		cmd := exec.Command("nsenter", "-t", fmt.Sprint(info.SandboxPID), "-n", "--", helperPath, addr)
		cmd.Env = append(os.Environ(), helperEnv+"=dial", "DIAL_TIMEOUT=3s")
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	if out := in("dig", "+short", "allowed.test"); !strings.Contains(out, hostAddr) {
		t.Fatalf("dig allowed.test in the sandbox: %q", out)
	}
	save := mustRun(t, o, "iptables-save", "--name", "al").stdout
	for _, want := range []string{"-A INPUT -j TS-ALLOW", "-A FORWARD -o host -j TS-ALLOW",
		"-A TS-ALLOW -m set --match-set ts-allow4 dst -j RETURN", "-A TS-ALLOW -j REJECT --reject-with icmp-admin-prohibited"} {
		if !strings.Contains(save, want) {
			t.Errorf("iptables-save lacks %q:\n%s", want, save)
		}
	}
	if list := mustRun(t, o, "ipset", "--name", "al", "list", "ts-allow4").stdout; !strings.Contains(list, hostAddr+" timeout ") {
		t.Errorf("ipset list lacks the learned %s with its timeout:\n%s", hostAddr, list)
	}
	if ps := mustRun(t, o, "ps").stdout; !strings.Contains(ps, "allowed.test,*.wild.test") {
		t.Errorf("ps does not show the allowlist:\n%s", ps)
	}
	// An unresolved address is denied, until a user rule before the
	// policy's jump accepts it.
	other := fmt.Sprintf("%s:%d", hostAddr6, hostPort)
	v6 := "[" + hostAddr6 + "]:" + fmt.Sprint(hostPort)
	if got := dial(v6); !strings.Contains(got, "no route to host") {
		t.Fatalf("dial %s before the user rule: %q", other, got)
	}
	mustRun(t, o, "ip6tables", "--name", "al", "-I", "FORWARD", "1", "-d", hostAddr6+"/128", "-j", "ACCEPT")
	if got := dial(v6); got != "ok" {
		t.Errorf("dial %s after the user's ACCEPT before the jump: %q", v6, got)
	}
	// Runtime allow and deny.
	direct := fmt.Sprintf("%s:%d", "198.18.0.1", hostPort)
	mustRun(t, o, "iptables", "--name", "al", "-F", "FORWARD") // drop the jump too...
	mustRun(t, o, "allow", "--name", "al", "198.18.0.1:"+fmt.Sprint(hostPort))
	if got := dial(direct); got != "ok" {
		t.Errorf("dial %s after tunstack allow: %q", direct, got)
	}
	if out := mustRun(t, o, "deny", "--name", "al", "198.18.0.1:"+fmt.Sprint(hostPort)).stdout; strings.Contains(out, "198.18.0.1") {
		t.Errorf("deny left the pattern listed: %q", out)
	}
	if got := dial(direct); !strings.Contains(got, "no route to host") {
		t.Errorf("dial %s after tunstack deny: %q", direct, got)
	}
	if r := tunstack(t, o, "allow", "--name", "al", "a..b"); r.code == 0 || !strings.Contains(r.stderr, "a..b") {
		t.Errorf("allow a..b: exit %d %q", r.code, r.stderr)
	}
	in("dig", "+short", "blocked.test")
	// The log names the denied destination; the audit has one JSON
	// object a line for the decisions so far.
	time.Sleep(200 * time.Millisecond)
	p.cmd.Process.Signal(os.Interrupt)
	<-p.done
	if !strings.Contains(p.stderr.String(), "allow-host: denied") || !strings.Contains(p.stderr.String(), "destination="+hostAddr) {
		t.Errorf("stderr lacks the denial log line:\n%s", p.stderr.String())
	}
	data, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var d struct {
			Proto, Destination, Name, Verdict string
			Port                              int
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("audit line is not JSON: %v: %q", err, line)
		}
		verdicts = append(verdicts, strings.Join([]string{d.Proto, d.Destination, d.Name, d.Verdict}, " "))
	}
	joined := strings.Join(verdicts, "\n")
	for _, want := range []string{"dns  allowed.test allow", "tcp " + hostAddr + " allowed.test allow",
		"tcp " + hostAddr + " allowed.test deny", "dns  blocked.test deny", "tcp " + hostAddr6 + "  deny"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit lacks %q:\n%s", want, joined)
		}
	}
}

func TestAllowHostBadPatterns(t *testing.T) {
	needTun(t, 0)
	for _, p := range []string{"*.", "a..b", "300.1.1.1/8", "example.test:99999"} {
		r := tunstack(t, runOpts{}, "run", "--allow-host", p, "--", "true")
		if r.code != 125 || !strings.Contains(r.stderr, fmt.Sprintf("%q", p)) {
			t.Errorf("--allow-host %s: exit %d, stderr %q; want 125 naming the pattern", p, r.code, r.stderr)
		}
	}
}

// waitInstance waits until ps lists name and returns its info.
func waitInstance(t *testing.T, o runOpts, p *bgProc, name string) control.Info {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("instance %s exited: %s", name, p.stderr.String())
		}
		var infos []control.Info
		if r := tunstack(t, o, "ps", "--json"); r.code == 0 && json.Unmarshal([]byte(r.stdout), &infos) == nil {
			for _, in := range infos {
				if in.Name == name && in.SandboxPID > 0 {
					return in
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("instance %s not listed by ps", name)
	return control.Info{}
}

// TestAllowHostUsers holds the policy for root and unprivileged users
// alike, without a host namespace: only the listed gateway port is
// reachable; another port, ping to the gateway and an unresolved address
// are rejected.
func TestAllowHostUsers(t *testing.T) {
	needProg(t, "ping")
	allowed := startHTTP(t, "127.0.0.1:0")
	other := startHTTP(t, "127.0.0.1:0")
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			script := fmt.Sprintf(`h=%[1]s; export TUNSTACK_TEST_HELPER=dial DIAL_TIMEOUT=3s
$h 10.0.2.2:%[2]d; $h 10.0.2.2:%[3]d; $h 198.18.0.9:80
ping -c1 -W3 10.0.2.2 >/dev/null 2>&1 && echo ping-ok || echo ping-failed`, helperPath, allowed, other)
			r := tunstack(t, runOpts{uid: u.uid}, "run", "--allow-host", fmt.Sprintf("10.0.2.2:%d", allowed), "--", "sh", "-c", script)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			want := []string{"ok", "no route to host", "no route to host", "ping-failed"}
			if len(lines) != len(want) {
				t.Fatalf("got %q, want %d lines like %q\nstderr: %s", lines, len(want), want, r.stderr)
			}
			for i, w := range want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d = %q, want %q\nstderr: %s", i, lines[i], w, r.stderr)
				}
			}
		})
	}
}
