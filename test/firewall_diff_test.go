package test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Behaviour differential tests (issue 11): the same rules and traffic on
// real netfilter, between two test-made namespaces joined by a veth
// pair (the "stack" side named tun0, as in a sandbox), and through a
// live tunstack instance. Per scenario, what the client got, the rules'
// counters and the LOG lines must agree, or the difference be noted as
// known (and then the test fails once it agrees). DIFF_ONLY=REGEXP runs
// the scenarios whose names match.

const (
	diffStack  = "198.18.1.2"  // the real side's "stack" address
	diffClient = "198.18.1.15" // the real side's "sandbox" address
)

// diffScenario is rules (iptables-restore text; PORT, PORT2, ADDR and
// LOGPFX are replaced) and the probe's arguments (see probeHelper;
// ADDR, PORT and PORT2 replaced).
type diffScenario struct {
	name  string
	rules string
	probe string
	// approx, when set, says why rule counters can differ: they are then
	// compared as zero or not (the flow's packets depend on the answering
	// stack's TCP, not on the rules).
	approx string
	// policies are "table CHAIN" whose policy counters are compared too.
	policies []string
	// known names differences not yet fixed, by observation ("outcome",
	// "counters", "log"): the scenario is run and reported, and fails only
	// if that observation starts to agree (so the note is removed).
	known map[string]string
}

// unconfirmedNAT: Linux forgets the connection of a packet that is
// dropped before it is confirmed, so a retransmitted SYN is NEW again
// and traverses nat again; gVisor's conntrack keeps it.
const unconfirmedNAT = "gVisor keeps the connection of a dropped first SYN: its retransmission does not traverse nat again (Linux counts it twice)"

// natNeedsCT: Linux runs the nat table only for packets conntrack
// tracks, and turns conntrack on in a namespace only while some rule
// needs it (a NAT target, -m conntrack, -m state, ...): a nat table of
// RETURN and LOG rules alone sees nothing. tunstack always tracks.
const natNeedsCT = "Linux's nat chains see nothing while no rule needs conntrack (it is off in the namespace); tunstack always tracks"

// leaky is approx's reason for scenarios whose connection is left
// half-open (run last: their retransmissions go on after the probe).
const leaky = "the handshake's ACK and the request are dropped: each stack retransmits on its own schedule"

// tcpFlow is approx's reason for rules that count every packet of an
// accepted TCP connection.
const tcpFlow = "counts every packet of an accepted connection: the answering TCP (Linux or gVisor) decides segments and ACKs"

var diffScenarios = []diffScenario{
	{name: "no rules", rules: "*filter\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "DROP", rules: "*filter\n-A INPUT -p tcp --dport PORT -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "REJECT default", rules: "*filter\n-A INPUT -p tcp --dport PORT -j REJECT\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "REJECT tcp-reset", rules: "*filter\n-A INPUT -p tcp --dport PORT -j REJECT --reject-with tcp-reset\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "REJECT icmp-net-unreachable", rules: "*filter\n-A INPUT -p tcp --dport PORT -j REJECT --reject-with icmp-net-unreachable\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "REJECT icmp-host-unreachable", rules: "*filter\n-A INPUT -p tcp --dport PORT -j REJECT --reject-with icmp-host-unreachable\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "REJECT icmp-net-prohibited", rules: "*filter\n-A INPUT -p tcp --dport PORT -j REJECT --reject-with icmp-net-prohibited\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "REJECT icmp-host-prohibited", rules: "*filter\n-A INPUT -p tcp --dport PORT -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "REJECT icmp-admin-prohibited", rules: "*filter\n-A INPUT -p tcp --dport PORT -j REJECT --reject-with icmp-admin-prohibited\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "udp REJECT default", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "udp REJECT icmp-net-unreachable", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT --reject-with icmp-net-unreachable\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "udp REJECT icmp-host-unreachable", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT --reject-with icmp-host-unreachable\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "udp REJECT icmp-port-unreachable", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "udp REJECT icmp-net-prohibited", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT --reject-with icmp-net-prohibited\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "udp REJECT icmp-host-prohibited", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "udp REJECT icmp-admin-prohibited", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT --reject-with icmp-admin-prohibited\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "policy DROP, port allowed", rules: "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport PORT -j ACCEPT\nCOMMIT\n", probe: "tcp ADDR:PORT", approx: tcpFlow},
	{name: "policy DROP, stateful", rules: "*filter\n:INPUT DROP [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp --dport PORT -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n", probe: "tcp ADDR:PORT", approx: tcpFlow},
	{name: "NEW rejected", rules: "*filter\n-A INPUT -p tcp --dport PORT -m conntrack --ctstate NEW -j REJECT --reject-with tcp-reset\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "negated port", rules: "*filter\n-A INPUT -p tcp ! --dport PORT -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "-i tun0 DROP", rules: "*filter\n-A INPUT -i tun0 -p tcp --dport PORT -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "! -i tun0 DROP", rules: "*filter\n-A INPUT ! -i tun0 -p tcp --dport PORT -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "user chain RETURN", rules: "*filter\n:c - [0:0]\n-A INPUT -j c\n-A INPUT -p tcp --dport PORT -j DROP\n-A c -p tcp --dport PORT -j RETURN\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "user chain ACCEPT", rules: "*filter\n:c - [0:0]\n-A INPUT -p tcp --syn -j c\n-A INPUT -p tcp --dport PORT --syn -j DROP\n-A c -p tcp --dport PORT -j ACCEPT\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "multiport DROP", rules: "*filter\n-A INPUT -p tcp -m multiport --dports 1,PORT,3 -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "mark then drop", rules: "*mangle\n-A PREROUTING -p tcp --dport PORT -j MARK --set-mark 7\nCOMMIT\n*filter\n-A INPUT -m mark --mark 7 -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "connmark restore", rules: "*mangle\n-A PREROUTING -p tcp --dport PORT -j CONNMARK --set-mark 3\n-A PREROUTING -j CONNMARK --restore-mark\nCOMMIT\n*filter\n-A INPUT -m mark --mark 3 -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "udp MARK counted by --mark", rules: "*mangle\n-A PREROUTING -p udp --dport PORT -j MARK --set-mark 7\nCOMMIT\n" +
		"*filter\n-A INPUT -p udp -m mark --mark 7 -j ACCEPT\n-A INPUT -p udp -j DROP\nCOMMIT\n", probe: "udp ADDR:PORT 3"},
	{name: "udp CONNMARK on the replies", rules: "*mangle\n-A PREROUTING -p udp --dport PORT -m conntrack --ctstate NEW -j CONNMARK --set-mark 9\n-A OUTPUT -p udp -j CONNMARK --restore-mark\nCOMMIT\n" +
		"*filter\n-A OUTPUT -p udp -m mark --mark 9 -m connmark --mark 9 -j ACCEPT\n-A OUTPUT -p udp -j DROP\nCOMMIT\n", probe: "udp ADDR:PORT 3"},
	{name: "udp connmark not set, replies dropped", rules: "*mangle\n-A PREROUTING -p udp --dport PORT2 -j CONNMARK --set-mark 9\n-A OUTPUT -p udp -j CONNMARK --restore-mark\nCOMMIT\n" +
		"*filter\n-A OUTPUT -p udp -m mark --mark 9 -j ACCEPT\n-A OUTPUT -p udp -j DROP\nCOMMIT\n", probe: "udp ADDR:PORT 2"},
	{name: "REDIRECT -i tun0", rules: "*nat\n-A PREROUTING -i tun0 -p tcp --dport PORT2 -j REDIRECT --to-ports PORT\nCOMMIT\n", probe: "tcp ADDR:PORT2"},
	{name: "DNAT", rules: "*nat\n-A PREROUTING -p tcp --dport PORT2 -j DNAT --to-destination ADDR:PORT\nCOMMIT\n", probe: "tcp ADDR:PORT2"},
	{name: "udp DNAT", rules: "*nat\n-A PREROUTING -p udp --dport PORT2 -j DNAT --to-destination ADDR:PORT\nCOMMIT\n", probe: "udp ADDR:PORT2 2"},
	{name: "closed port", rules: "*filter\nCOMMIT\n", probe: "tcp ADDR:PORT2"},
	{name: "ctstate DNAT after DNAT", rules: "*nat\n-A PREROUTING -p tcp --dport PORT2 -j DNAT --to-destination ADDR:PORT\nCOMMIT\n" +
		"*filter\n-A INPUT -p tcp -m conntrack --ctstate DNAT -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT2", known: map[string]string{"counters": unconfirmedNAT}},
	{name: "REJECT tcp-reset after DNAT", rules: "*nat\n-A PREROUTING -p tcp --dport PORT2 -j DNAT --to-destination ADDR:PORT\nCOMMIT\n" +
		"*filter\n-A INPUT -p tcp -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset\nCOMMIT\n", probe: "tcp ADDR:PORT2"},
	{name: "REJECT port-unreachable after DNAT", rules: "*nat\n-A PREROUTING -p tcp --dport PORT2 -j DNAT --to-destination ADDR:PORT\nCOMMIT\n" +
		"*filter\n-A INPUT -p tcp --dport PORT -j REJECT\nCOMMIT\n", probe: "tcp ADDR:PORT2"},
	{name: "ctstate SNAT after DNAT", rules: "*nat\n-A PREROUTING -p tcp --dport PORT2 -j DNAT --to-destination ADDR:PORT\nCOMMIT\n" +
		"*filter\n-A INPUT -p tcp -m conntrack --ctstate SNAT -j REJECT --reject-with tcp-reset\nCOMMIT\n", probe: "tcp ADDR:PORT2"},
	{name: "ctstate DNAT without NAT", rules: "*filter\n-A INPUT -p tcp -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "nat PREROUTING counts, no change", rules: "*nat\n-A PREROUTING -p tcp --dport PORT -j RETURN\nCOMMIT\n", probe: "tcp ADDR:PORT", known: map[string]string{"counters": natNeedsCT}},
	{name: "nat PREROUTING counts, conntrack on", rules: "*nat\n-A PREROUTING -p tcp --dport PORT -j RETURN\nCOMMIT\n" +
		"*filter\n-A INPUT -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "mangle -i tun0 DROP", rules: "*mangle\n-A PREROUTING -i tun0 -p tcp --dport PORT -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "udp closed port", rules: "*filter\nCOMMIT\n", probe: "udp ADDR:PORT2 2"},
	{name: "udp closed port's unreachable is RELATED", rules: "*filter\n-A OUTPUT -p icmp -m conntrack --ctstate RELATED -j ACCEPT\n-A OUTPUT -p icmp -j DROP\nCOMMIT\n", probe: "udp ADDR:PORT2"},
	{name: "LOG udp to a closed port", rules: "*filter\n-A INPUT -p udp --dport PORT2 -j LOG --log-prefix \"LOGPFX\"\n-A OUTPUT -p icmp -j LOG --log-prefix \"LOGPFX\"\nCOMMIT\n", probe: "udp ADDR:PORT2"},
	{name: "REJECT's port unreachable is RELATED", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT\n" +
		"-A OUTPUT -p icmp -m conntrack --ctstate RELATED -j ACCEPT\n-A OUTPUT -p icmp -j DROP\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "REJECT's port unreachable, RELATED dropped", rules: "*filter\n-A INPUT -p udp --dport PORT -j REJECT\n" +
		"-A OUTPUT -p icmp -m conntrack --ctstate RELATED -j DROP\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "udp replies ESTABLISHED", rules: "*filter\n:OUTPUT DROP [0:0]\n-A OUTPUT -p udp -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n", probe: "udp ADDR:PORT 2", policies: []string{"filter OUTPUT"}},
	{name: "udp limit burst 3 of 6", rules: "*filter\n-A INPUT -p udp --dport PORT -m limit --limit 1/hour --limit-burst 3 -j ACCEPT\n-A INPUT -p udp --dport PORT -j DROP\nCOMMIT\n", probe: "udp ADDR:PORT 6"},
	{name: "LOG then DROP", rules: "*filter\n-A INPUT -p tcp --dport PORT -j LOG --log-prefix \"LOGPFX\"\n-A INPUT -p tcp --dport PORT -j DROP\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "LOG the SYN", rules: "*filter\n-A INPUT -p tcp --dport PORT --syn -j LOG --log-prefix \"LOGPFX\"\nCOMMIT\n", probe: "tcp ADDR:PORT"},
	{name: "LOG udp and its REJECT", rules: "*filter\n-A INPUT -p udp --dport PORT -j LOG --log-prefix \"LOGPFX\"\n-A INPUT -p udp --dport PORT -j REJECT\n" +
		"-A OUTPUT -p icmp -j LOG --log-prefix \"LOGPFX\"\nCOMMIT\n", probe: "udp ADDR:PORT"},
	{name: "policy DROP, NEW only", rules: "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport PORT -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n", probe: "tcp ADDR:PORT", approx: leaky},
	{name: "policy DROP, SYN only", rules: "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport PORT --syn -j ACCEPT\nCOMMIT\n", probe: "tcp ADDR:PORT", approx: leaky},
}

// outcome classifies a probe's line: TCP errors by errno, the rest as
// printed (what arrived: server port and bytes, echoes, ICMP type and
// code).
func outcome(line string) string {
	ok, rest, then := strings.Cut(line, ", then ")
	if then {
		return ok + ", then " + errClass(rest)
	}
	if strings.HasPrefix(line, "ok") || strings.HasPrefix(line, "echoed=") {
		return line
	}
	return errClass(line)
}

func errClass(e string) string {
	for _, c := range []string{"connection refused", "i/o timeout", "no route to host", "network is unreachable",
		"protocol not available", "connection reset by peer"} {
		if strings.Contains(e, c) {
			if n := strings.Index(e, " after "); n >= 0 {
				return c + e[n:]
			}
			return c
		}
	}
	return "other: " + e
}

func ipns(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// vethPair makes the namespaces: stack (tun0, diffStack) and client
// (diffClient), joined by a veth pair; it starts the helper server (TCP
// and UDP echo) on diffStack:port in the stack namespace.
func vethPair(t *testing.T, port int) (stack, client string) {
	t.Helper()
	needRoot(t)
	needProg(t, "ip", "iptables-legacy-restore", "iptables-legacy-save")
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	stack, client = "tsds"+id, "tsdc"+id
	for _, ns := range []string{stack, client} {
		ipns(t, "netns", "add", ns)
		ns := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipns(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipns(t, "-n", stack, "link", "add", "tun0", "type", "veth", "peer", "name", "eth0", "netns", client)
	ipns(t, "-n", stack, "addr", "add", diffStack+"/24", "dev", "tun0")
	ipns(t, "-n", client, "addr", "add", diffClient+"/24", "dev", "eth0")
	ipns(t, "-n", stack, "link", "set", "tun0", "up")
	ipns(t, "-n", client, "link", "set", "eth0", "up")
	startHelper(t, []string{"ip", "netns", "exec", stack}, "server", fmt.Sprintf("%s:%d", diffStack, port))
	return stack, client
}

// emptyRules resets every table, policies included (iptables-restore
// keeps the policy of a chain the input does not declare).
const emptyRules = "*raw\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\nCOMMIT\n" +
	"*mangle\n:PREROUTING ACCEPT\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\nCOMMIT\n" +
	"*nat\n:PREROUTING ACCEPT\n:INPUT ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\nCOMMIT\n" +
	"*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT\n"

var diffTables = []string{"raw", "mangle", "nat", "filter"}

// settle lets the probe's last packets (FIN, ACK, a late ICMP error)
// pass before counters and logs are read.
const settle = 400 * time.Millisecond

// observation is what one side showed for a scenario.
type observation struct {
	outcome  string
	counters []ctrLine // from iptables-save -c
	logs     []string  // LOG lines, normalized (logLine)
}

// realSide runs scenarios on Linux: rules in the stack namespace, the
// probe from the client namespace, LOG lines from /dev/kmsg.
type realSide struct {
	t             *testing.T
	stack, client string
	ports         map[string]string // port number → PORT, PORT2
}

func (r realSide) in(ns string, stdin string, argv ...string) string {
	r.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s in %s: %v\n%s\ninput:\n%s", strings.Join(argv, " "), ns, err, out, stdin)
	}
	return string(out)
}

func (r realSide) run(rules, probe, prefix string) observation {
	r.t.Helper()
	r.in(r.stack, emptyRules, "iptables-legacy-restore")
	r.in(r.stack, rules, "iptables-legacy-restore")
	for _, tb := range diffTables {
		r.in(r.stack, "", "iptables-legacy", "-t", tb, "-Z")
	}
	// A raw fd: reads must return EAGAIN at the end, not wait in Go's
	// poller for a record.
	kmsg, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		r.t.Fatalf("open /dev/kmsg: %v", err)
	}
	defer syscall.Close(kmsg)
	syscall.Seek(kmsg, 0, io.SeekEnd)
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.client, helperPath}, strings.Fields(probe)...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=probe")
	out, _ := cmd.Output()
	time.Sleep(settle)
	var o observation
	o.outcome = outcome(strings.TrimSpace(string(out)))
	o.counters = parseCounters(r.in(r.stack, "", "iptables-legacy-save", "-c"))
	if prefix != "" {
		o.logs = kernelLog(kmsg, prefix, r.ports)
	}
	return o
}

// kernelLog reads the records after kmsg's position and returns those
// with prefix, normalized.
func kernelLog(kmsg int, prefix string, ports map[string]string) []string {
	var lines []string
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(kmsg, buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records overwritten meanwhile
		}
		if err != nil || n <= 0 {
			return lines
		}
		_, msg, _ := strings.Cut(string(buf[:n]), ";")
		msg, _, _ = strings.Cut(msg, "\n")
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			lines = append(lines, kernelLogLine(rest, ports))
		}
	}
}

// ourSide runs scenarios on a live tunstack instance.
type ourSide struct {
	l     *liveSandbox
	ports map[string]string
}

func (s ourSide) run(rules, probe, prefix string) observation {
	l := s.l
	l.t.Helper()
	l.cli(emptyRules, "iptables-restore")
	l.cli(rules, "iptables-restore")
	for _, tb := range diffTables {
		l.cli("", "iptables", "-t", tb, "-Z")
	}
	var o observation
	o.outcome = outcome(l.dial(probe))
	time.Sleep(settle)
	o.counters = parseCounters(l.cli("", "iptables-save", "-c"))
	if prefix != "" {
		o.logs = slogLines(l.errb.String(), prefix, s.ports)
	}
	return o
}

// ctrLine is one rule or policy line of iptables-save -c: key is the
// table and the line without its counters (addresses as ADDR).
type ctrLine struct {
	key    string
	policy bool
	pk     int
}

var ctrRe = regexp.MustCompile(`^(?:\[(\d+):\d+\] (-A .*)|:(\S+ \S+) \[(\d+):\d+\])$`)

func parseCounters(save string) []ctrLine {
	var out []ctrLine
	table := ""
	seen := map[string]int{}
	for _, line := range strings.Split(save, "\n") {
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = t
			continue
		}
		m := ctrRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		c := ctrLine{key: table + " " + m[2], policy: m[2] == ""}
		pk := m[1]
		if c.policy {
			c.key, pk = table+" :"+m[3], m[4]
		}
		c.key = strings.NewReplacer(diffStack, "ADDR", "10.0.2.2", "ADDR").Replace(c.key)
		c.pk, _ = strconv.Atoi(pk)
		seen[c.key]++
		if seen[c.key] > 1 {
			c.key += fmt.Sprintf(" #%d", seen[c.key])
		}
		out = append(out, c)
	}
	return out
}

// compareCounters compares the rules' packet counters (and the listed
// policies'), exactly or, with approx, as zero or not. It returns both
// sides' figures and whether they agree.
func compareCounters(real, ours []ctrLine, approx bool, policies []string) (string, bool) {
	byKey := map[string]int{}
	for _, c := range ours {
		byKey[c.key] = c.pk
	}
	var rs, os []string
	agree := true
	for _, c := range real {
		if c.policy {
			name := strings.Fields(strings.Replace(c.key, ":", "", 1))
			if !slices.Contains(policies, name[0]+" "+name[1]) {
				continue
			}
		} else if c.pk == 0 {
			if o, ok := byKey[c.key]; ok && o == 0 {
				continue // an untouched rule: not worth a column
			}
		}
		o, ok := byKey[c.key]
		// Rules are named by table and chain: "nat/PREROUTING=1".
		f := strings.Fields(c.key)
		name := f[0] + "/" + strings.TrimPrefix(f[1], ":")
		if len(f) > 2 && f[1] == "-A" {
			name = f[0] + "/" + f[2]
		}
		rs = append(rs, name+"="+strconv.Itoa(c.pk))
		if !ok {
			os = append(os, "missing")
			agree = false
			continue
		}
		os = append(os, strconv.Itoa(o))
		if approx {
			agree = agree && (c.pk == 0) == (o == 0)
		} else {
			agree = agree && c.pk == o
		}
	}
	return fmt.Sprintf("[%s] vs [%s]", strings.Join(rs, " "), strings.Join(os, " ")), agree
}

// The LOG fields both kernels' lines carry and that should agree;
// addresses become roles and ports names, as both sides' differ.
type logFields struct {
	in, out, src, dst, proto, spt, dpt, flags, icmp string
}

// format writes f with ports (number → name) applied.
func (f logFields) format(ports map[string]string) string {
	role := func(a string) string {
		switch {
		case a == diffStack || a == "10.0.2.2":
			return "stack"
		case a == diffClient || strings.HasPrefix(a, "10.0.2."):
			return "client"
		}
		return a
	}
	port := func(p string) string {
		if n, ok := ports[p]; ok {
			return n
		}
		if p == "" {
			return ""
		}
		return "eph"
	}
	s := fmt.Sprintf("IN=%s OUT=%s SRC=%s DST=%s PROTO=%s", f.in, f.out, role(f.src), role(f.dst), strings.ToUpper(f.proto))
	if f.spt != "" || f.dpt != "" {
		s += fmt.Sprintf(" SPT=%s DPT=%s", port(f.spt), port(f.dpt))
	}
	if f.flags != "" {
		s += " " + f.flags
	}
	if f.icmp != "" {
		s += " " + f.icmp
	}
	return s
}

var tcpFlagOrder = []string{"CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN"}

// kernelLogLine normalizes a kernel LOG line (after its prefix): the
// first of each field (an ICMP error's quoted header repeats them).
func kernelLogLine(s string, ports map[string]string) string {
	var f logFields
	set := map[string]bool{}
	var typ, code string
	afterRes := false
	for _, tok := range strings.Fields(s) {
		k, v, _ := strings.Cut(tok, "=")
		dst := map[string]*string{"IN": &f.in, "OUT": &f.out, "SRC": &f.src, "DST": &f.dst, "PROTO": &f.proto,
			"SPT": &f.spt, "DPT": &f.dpt, "TYPE": &typ, "CODE": &code}[k]
		if dst != nil && *dst == "" && !set[k] {
			*dst, set[k] = v, true
		}
		if strings.HasPrefix(tok, "[") {
			break // the quoted packet of an ICMP error
		}
		if k == "RES" {
			afterRes = true
		} else if afterRes && slices.Contains(tcpFlagOrder, tok) {
			f.flags += tok + " "
		}
	}
	f.flags = strings.TrimSpace(f.flags)
	if typ != "" {
		f.icmp = "TYPE=" + typ + " CODE=" + code
	}
	return f.format(ports)
}

var slogRe = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// slogLines returns tunstack's LOG lines (slog text on its stderr) with
// prefix, normalized as kernelLogLine.
func slogLines(out, prefix string, ports map[string]string) []string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		kv := map[string]string{}
		for _, m := range slogRe.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			kv[m[1]] = v
		}
		if kv["prefix"] != prefix {
			continue
		}
		f := logFields{in: kv["in"], out: kv["out"], src: kv["src"], dst: kv["dst"], proto: kv["proto"], spt: kv["spt"], dpt: kv["dpt"]}
		if fl := kv["flags"]; fl != "" {
			var names []string
			for _, n := range tcpFlagOrder {
				if slices.Contains(strings.Split(fl, ","), n) {
					names = append(names, n)
				}
			}
			f.flags = strings.Join(names, " ")
		}
		if kv["type"] != "" {
			f.icmp = "TYPE=" + kv["type"] + " CODE=" + kv["code"]
		}
		lines = append(lines, f.format(ports))
	}
	return lines
}

// logAll enables LOG in network namespaces other than the initial one
// (the kernel logs only the initial namespace's by default) until the
// test ends. It reports whether it could (and /dev/kmsg is readable);
// without, LOG lines are not compared.
func logAll(t *testing.T) bool {
	t.Helper()
	const knob = "/proc/sys/net/netfilter/nf_log_all_netns"
	old, err := os.ReadFile(knob)
	if err == nil {
		err = os.WriteFile(knob, []byte("1"), 0o644)
	}
	if err == nil {
		var fd int
		if fd, err = syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err == nil {
			syscall.Close(fd)
		}
	}
	if err != nil {
		t.Logf("LOG lines not compared: %v", err)
		return false
	}
	t.Cleanup(func() { os.WriteFile(knob, old, 0o644) })
	return true
}

// TestFirewallDifferential runs each scenario on Linux and on a live
// tunstack instance with the same rules and compares, per scenario,
// what the client saw (connect, server reached and bytes, echoes, ICMP
// type and code), the rules' counters afterwards and the LOG lines.
func TestFirewallDifferential(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "127.0.0.1:0")
	startUDPEcho(t, fmt.Sprintf("127.0.0.1:%d", port))
	port2 := port + 1
	if port2 > 65535 {
		port2 = port - 1
	}
	ports := map[string]string{strconv.Itoa(port): "PORT", strconv.Itoa(port2): "PORT2"}
	stack, client := vethPair(t, port)
	logs := logAll(t)
	real := realSide{t, stack, client, ports}
	ours := ourSide{startLiveMode(t, "", fmt.Sprintf("diff%d", os.Getpid()), "probe"), ports}
	subst := func(s, addr, prefix string) string {
		return strings.NewReplacer("PORT2", strconv.Itoa(port2), "PORT", strconv.Itoa(port), "ADDR", addr, "LOGPFX", prefix).Replace(s)
	}
	var agreed, compared, knownN int
	only, _ := regexp.Compile(os.Getenv("DIFF_ONLY"))
	for i, sc := range diffScenarios {
		if only != nil && !only.MatchString(sc.name) {
			continue
		}
		// A unique LOG prefix per scenario and run; logged lines are
		// read (prefix set) only when the kernel's can be.
		pfx := fmt.Sprintf("tsd%d-%d: ", os.Getpid()%100000, i)
		prefix := ""
		if logs && strings.Contains(sc.rules, "LOGPFX") {
			prefix = pfx
		}
		ro := real.run(subst(sc.rules, diffStack, pfx), subst(sc.probe, diffStack, ""), prefix)
		oo := ours.run(subst(sc.rules, "10.0.2.2", pfx), subst(sc.probe, "10.0.2.2", ""), prefix)
		ctr, ctrOK := compareCounters(ro.counters, oo.counters, sc.approx != "", sc.policies)
		obs := []struct {
			name, real, ours string
			agree            bool
		}{
			{"outcome", ro.outcome, oo.outcome, ro.outcome == oo.outcome},
			{"counters", ctr, "", ctrOK},
		}
		if prefix != "" {
			obs = append(obs, struct {
				name, real, ours string
				agree            bool
			}{"log", strings.Join(ro.logs, " | "), strings.Join(oo.logs, " | "), slices.Equal(ro.logs, oo.logs) && len(ro.logs) > 0})
		}
		all, anyKnown := true, false
		var report []string
		for _, ob := range obs {
			compared++
			why := sc.known[ob.name]
			what := ob.real
			if ob.ours != "" || ob.name != "counters" {
				what = fmt.Sprintf("linux %q, tunstack %q", ob.real, ob.ours)
				if ob.agree {
					what = ob.real
				}
			}
			switch {
			case ob.agree && why != "":
				t.Errorf("%s: %s agrees (%s) but is listed as a known difference (%s): remove the note", sc.name, ob.name, what, why)
			case ob.agree:
				agreed++
			case why != "":
				knownN++
				anyKnown = true
				what += " KNOWN: " + why
			default:
				all = false
				t.Errorf("DIFFER %s: %s: %s\nrules:\n%s", sc.name, ob.name, what, subst(sc.rules, "10.0.2.2", pfx))
			}
			report = append(report, ob.name+" "+what)
		}
		verdict := "agree "
		switch {
		case !all:
			verdict = "DIFFER"
		case anyKnown:
			verdict = "KNOWN "
		}
		approx := ""
		if sc.approx != "" {
			approx = " (counters zero/non-zero: " + sc.approx + ")"
		}
		t.Logf("%s %-38s %s%s", verdict, sc.name, strings.Join(report, "; "), approx)
	}
	t.Logf("packet-path scenarios: %d; observations compared: %d, agreed: %d, known differences: %d", len(diffScenarios), compared, agreed, knownN)
}
