package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
)

// Ports without listeners that the rules of both sides drop and reject.
const (
	ctDropPort   = 18431
	ctRejectPort = 18432
)

// TestConntrackMatchesLinux runs the same traffic against real
// netfilter (a server namespace joined to a client namespace by a veth
// pair) and through tunstack run, then compares `conntrack -L` on the
// server side with `tunstack conntrack -L`: a TCP exchange the server
// closes (TIME_WAIT [ASSURED]), one the client resets (CLOSE), a UDP
// echo, a ping, a SYN a rule drops and one a rule rejects (no entries). States, flags and timeouts
// (within 3 s) must agree, in the default output and in -o extended.
func TestConntrackMatchesLinux(t *testing.T) {
	needTun(t, 0)
	needProg(t, "conntrack", "iptables", "ip", "ping")
	tcpPort, udpPort := freePorts(t)
	// The conntrack match also loads conntrack in the kernel's namespace.
	rules := fmt.Sprintf("*filter\n-A INPUT -p tcp --dport %d -j DROP\n-A INPUT -p tcp --dport %d -j REJECT --reject-with tcp-reset\n"+
		"-A INPUT -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n", ctDropPort, ctRejectPort)
	ports := map[string]string{strconv.Itoa(tcpPort): "TCP", strconv.Itoa(udpPort): "UDP"}

	linuxOut := linuxConntrack(t, rules, tcpPort, udpPort)
	linux := normaliseConntrack(t, linuxOut[0], map[string]string{"198.18.7.2": "C", "198.18.7.1": "S"}, ports)
	linuxExt := normaliseConntrack(t, linuxOut[1], map[string]string{"198.18.7.2": "C", "198.18.7.1": "S"}, ports)
	if len(linux) != 4 {
		t.Errorf("expected 4 flows (2 tcp, udp, icmp) from Linux, got:\n%s", strings.Join(keys(linux), "\n"))
	}
	if len(linuxExt) != len(linux) {
		t.Errorf("conntrack -o extended lists %d flows, the default output %d", len(linuxExt), len(linux))
	}
	// Without rules tunstack still tracks (the dropped and rejected ports
	// are then refused by the host: no entry either, as on Linux).
	for _, withRules := range []bool{true, false} {
		t.Run(fmt.Sprintf("rules=%v", withRules), func(t *testing.T) {
			r := ""
			if withRules {
				r = rules
			}
			out := tunstackConntrack(t, r, tcpPort, udpPort)
			roles := map[string]string{"10.0.2.100": "C", "10.0.2.2": "S"}
			compareConntrack(t, "", linux, normaliseConntrack(t, out[0], roles, ports))
			compareConntrack(t, "-o extended", linuxExt, normaliseConntrack(t, out[1], roles, ports))
		})
	}
}

// compareConntrack compares normalised conntrack -L lines (of output
// format opts) of Linux and tunstack.
func compareConntrack(t *testing.T, opts string, linux, ours []ctLine) {
	t.Helper()
	t.Logf("conntrack -L %s\nLinux:\n%s\ntunstack:\n%s", opts, strings.Join(keys(linux), "\n"), strings.Join(keys(ours), "\n"))
	if len(linux) != len(ours) {
		t.Fatalf("conntrack -L %s: Linux lists %d flows, tunstack %d", opts, len(linux), len(ours))
	}
	for i := range linux {
		l, o := linux[i], ours[i]
		if l.line != o.line || abs(l.timeout-o.timeout) > 3 {
			t.Errorf("conntrack -L %s: flow %d differs:\nLinux:    %d %s\ntunstack: %d %s", opts, i, l.timeout, l.line, o.timeout, o.line)
		}
	}
}

type ctLine struct {
	line    string
	timeout int
}

func keys(ls []ctLine) []string {
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%d %s", l.timeout, l.line))
	}
	return out
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// normaliseConntrack turns conntrack -L lines into comparable ones: the
// addresses by role, the client's port and ICMP ids as "*", the timeout
// apart. Spacing is kept: the columns must line up as conntrack's.
func normaliseConntrack(t *testing.T, out string, roles, ports map[string]string) []ctLine {
	t.Helper()
	var ls []ctLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(line, "conntrack v") {
			continue
		}
		ti := 2 // the timeout's field
		if f[0] == "ipv4" || f[0] == "ipv6" {
			ti = 4 // -o extended
			// The columns: "%-8s %u " for each protocol.
			if want := fmt.Sprintf("%-8s %s %-8s %s %s ", f[0], f[1], f[2], f[3], f[4]); !strings.HasPrefix(line, want) {
				t.Errorf("conntrack -o extended line %q does not start %q", line, want)
			}
		}
		to, err := strconv.Atoi(f[ti])
		if err != nil {
			t.Fatalf("bad conntrack line %q", line)
		}
		var norm []string
		for i, w := range f {
			if i == ti {
				continue
			}
			k, v, ok := strings.Cut(w, "=")
			switch {
			case ok && (k == "src" || k == "dst"):
				if r, found := roles[v]; found {
					v = r
				}
				w = k + "=" + v
			case ok && k == "id":
				w = "id=*"
			case ok && (k == "sport" || k == "dport"):
				if p, found := ports[v]; found {
					w = k + "=" + p
				} else if n, _ := strconv.Atoi(v); n >= 32768 {
					w = k + "=*"
				}
			case ok && (k == "zone" || k == "use"):
				continue
			}
			norm = append(norm, w)
		}
		ls = append(ls, ctLine{line: strings.Join(norm, " "), timeout: to})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].line < ls[j].line })
	return ls
}

// freePorts picks two ports free on the host's loopback (TCP and UDP).
func freePorts(t *testing.T) (int, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpPort := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return tcpPort, udpPort
}

// startCTServer runs the ctserver helper (argv prefix, e.g. ip netns
// exec) until the test ends.
func startCTServer(t *testing.T, prefix []string, tcpAddr, udpAddr string) {
	t.Helper()
	startHelper(t, prefix, "ctserver", tcpAddr, udpAddr)
}

// linuxConntrack runs the traffic between two test-made namespaces and
// returns conntrack -L of the server's, and conntrack -L -o extended.
func linuxConntrack(t *testing.T, rules string, tcpPort, udpPort int) [2]string {
	t.Helper()
	base := fmt.Sprintf("tsct%d", os.Getpid())
	srv, cli := base+"s", base+"c"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{srv, cli} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "-n", srv, "link", "add", "ct0", "type", "veth", "peer", "name", "ct1", "netns", cli)
	run("ip", "-n", srv, "addr", "add", "198.18.7.1/24", "dev", "ct0")
	run("ip", "-n", cli, "addr", "add", "198.18.7.2/24", "dev", "ct1")
	run("ip", "-n", srv, "link", "set", "ct0", "up")
	run("ip", "-n", cli, "link", "set", "ct1", "up")
	restore := exec.Command("ip", "netns", "exec", srv, "iptables-restore")
	restore.Stdin = strings.NewReader(rules)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore in %s: %v: %s", srv, err, out)
	}
	startCTServer(t, []string{"ip", "netns", "exec", srv}, fmt.Sprintf("198.18.7.1:%d", tcpPort), fmt.Sprintf("198.18.7.1:%d", udpPort))
	traffic := exec.Command("ip", "netns", "exec", cli, "sh", "-c", ctScript("198.18.7.1", tcpPort, udpPort))
	traffic.Env = append(os.Environ(), helperEnv+"=cttraffic")
	if out, err := traffic.CombinedOutput(); err != nil || !strings.Contains(string(out), "done") {
		t.Fatalf("traffic on the veth pair: %v: %s", err, out)
	}
	var res [2]string
	for i, extra := range [][]string{nil, {"-o", "extended"}} {
		out, err := exec.Command("ip", append([]string{"netns", "exec", srv, "conntrack", "-L", "-f", "ipv4"}, extra...)...).Output()
		if err != nil {
			t.Fatalf("conntrack -L %v in %s: %v", extra, srv, err)
		}
		res[i] = string(out)
	}
	return res
}

// ctScript is the sandbox's (or client namespace's) traffic.
func ctScript(server string, tcpPort, udpPort int) string {
	return fmt.Sprintf("%s x %s %d %d %d %d && ping -c1 -W2 %s >/dev/null && echo done",
		helperPath, server, tcpPort, udpPort, ctDropPort, ctRejectPort, server)
}

// tunstackConntrack runs the traffic in a sandbox against servers on the
// host's loopback (reached as 10.0.2.2) and returns tunstack conntrack -L
// and conntrack -L -o extended.
func tunstackConntrack(t *testing.T, rules string, tcpPort, udpPort int) [2]string {
	t.Helper()
	startCTServer(t, nil, fmt.Sprintf("127.0.0.1:%d", tcpPort), fmt.Sprintf("127.0.0.1:%d", udpPort))
	ctl := t.TempDir()
	env := []string{control.DirEnv + "=" + ctl}
	name := fmt.Sprintf("ct%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"run", "--name", name}
	if rules != "" {
		args = append(args, "--rules", writeRules(t, rules))
	}
	args = append(args, "--", "sh", "-c", ctScript("10.0.2.2", tcpPort, udpPort)+"; exec sleep 30")
	bg := exec.CommandContext(ctx, binPath, args...)
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	bg.Stdout, bg.Stderr = pw, &errb
	bg.Env = append(os.Environ(), append(env, helperEnv+"=cttraffic")...)
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		bg.Process.Signal(syscall.SIGTERM)
		pw.Close()
		bg.Wait()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for line := range lines {
		if line == "done" {
			r := mustRun(t, runOpts{env: env}, "conntrack", "--name", name, "-L", "-f", "ipv4")
			x := mustRun(t, runOpts{env: env}, "conntrack", "--name", name, "-L", "-f", "ipv4", "-o", "extended")
			return [2]string{r.stdout, x.stdout}
		}
	}
	t.Fatalf("the sandbox's traffic did not finish\nstderr: %s", errb.String())
	return [2]string{}
}

// ctServer serves TCP (writes "hello" and closes) and UDP echo, prints
// "ready" and exits when stdin closes.
func ctServer(tcpAddr, udpAddr string) int {
	ln, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	pc, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go udpEcho(pc)
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// ctTraffic: a TCP exchange the server closes, one UDP echo, a dial to a
// dropped port (times out) and to a rejected one (refused).
func ctTraffic(server string, ports []string) int {
	tcp := net.JoinHostPort(server, ports[0])
	c, err := net.DialTimeout("tcp", tcp, 5*time.Second)
	if err != nil {
		fmt.Println("tcp:", err)
		return 1
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hello" {
		fmt.Printf("tcp: read %q\n", b)
		return 1
	}
	u, err := net.Dial("udp", net.JoinHostPort(server, ports[1]))
	if err != nil {
		fmt.Println("udp:", err)
		return 1
	}
	u.Write([]byte("ping"))
	u.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 16)
	n, err := u.Read(buf)
	u.Close()
	if err != nil || string(buf[:n]) != "ping" {
		fmt.Println("udp echo:", err)
		return 1
	}
	if _, err := net.DialTimeout("tcp", net.JoinHostPort(server, ports[2]), time.Second); err == nil {
		fmt.Println("dropped port answered")
		return 1
	}
	if _, err := net.DialTimeout("tcp", net.JoinHostPort(server, ports[3]), 3*time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		fmt.Println("rejected port:", err)
		return 1
	}
	// A connection the client resets (SO_LINGER 0): CLOSE.
	rc, err := net.DialTimeout("tcp", tcp, 5*time.Second)
	if err != nil {
		fmt.Println("tcp reset:", err)
		return 1
	}
	time.Sleep(200 * time.Millisecond)
	rc.(*net.TCPConn).SetLinger(0)
	rc.Close()
	// Let the TCP close finish (the last ACK) before listing.
	time.Sleep(300 * time.Millisecond)
	return 0
}

// TestConntrackBoundVisible: with --conntrack-max 4, 20 unreplied UDP
// flows from the sandbox leave 4 entries, the rest evicted by early
// drop, and tunstack ps --json shows the counters.
func TestConntrackBoundVisible(t *testing.T) {
	needTun(t, 0)
	ctl := t.TempDir()
	env := []string{control.DirEnv + "=" + ctl}
	name := fmt.Sprintf("ctmax%d", os.Getpid())
	// Datagrams to the discard port of the host's loopback: no reply.
	script := "for i in $(seq 1 20); do echo x > /dev/udp/10.0.2.2/9; done 2>/dev/null; echo done; exec sleep 30"
	bg := exec.Command(binPath, "run", "--name", name, "--conntrack-max", "4", "--", "bash", "-c", script)
	pr, pw := io.Pipe()
	bg.Stdout = pw
	bg.Env = append(os.Environ(), env...)
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		bg.Process.Signal(syscall.SIGTERM)
		pw.Close()
		bg.Wait()
	}()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	if strings.TrimSpace(line) != "done" {
		t.Fatalf("sandbox printed %q", line)
	}
	go io.Copy(io.Discard, pr)
	r := mustRun(t, runOpts{env: env}, "ps", "--json")
	var infos []control.Info
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 1 || infos[0].Firewall == nil {
		t.Fatalf("ps --json: %v\n%s", err, r.stdout)
	}
	ct := infos[0].Firewall.Conntrack
	if ct.Max != 4 || ct.Entries != 4 || ct.EarlyDrops != 16 || ct.Drops != 0 {
		t.Fatalf("conntrack counters %+v, want 4 of max 4 entries, 16 early drops", ct)
	}
	r = mustRun(t, runOpts{env: env}, "conntrack", "--name", name, "-L")
	if n := strings.Count(r.stdout, "[UNREPLIED]"); n != 4 {
		t.Fatalf("conntrack -L lists %d unreplied flows, want 4:\n%s", n, r.stdout)
	}
}
