package netfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

var (
	clientAddr = netip.MustParseAddr("10.0.2.100")
	serverAddr = netip.MustParseAddr("10.0.2.2")
	remoteAddr = netip.MustParseAddr("198.18.0.1")
)

func newGStack(t testing.TB, nic string, ep gstack.LinkEndpoint, addrs ...netip.Addr) *gstack.Stack {
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	if err := s.CreateNICWithOptions(1, ep, gstack.NICOptions{Name: nic}); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpipAddr(a), PrefixLen: 24}}
		if err := s.AddProtocolAddress(1, pa, gstack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	t.Cleanup(func() { s.Close(); s.Wait() })
	return s
}

// pair is a client stack and a server stack with a firewall, joined by
// an in-memory pipe. The server's NIC is "tun0", as in sandbox mode.
type pair struct {
	client, server *gstack.Stack
	fw             *Firewall
	logs           *syncBuffer
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

func newPair(t testing.TB, cfg Config, serverAddrs ...netip.Addr) *pair {
	a, b := pipe.New("", "", 1500)
	p := &pair{logs: &syncBuffer{}}
	p.client = newGStack(t, "eth0", a, clientAddr)
	p.server = newGStack(t, "tun0", b, serverAddrs...)
	cfg.Logger = slog.New(slog.NewTextHandler(p.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fw, err := NewGVisor(p.server, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.fw = fw
	return p
}

func (p *pair) must(t testing.TB, args ...string) {
	t.Helper()
	if _, err := p.fw.Exec(IPv4, args); err != nil {
		t.Fatalf("iptables %v: %v", args, err)
	}
}

// listen serves "hello" on addr:port of the server stack.
func (p *pair) listen(t testing.TB, addr netip.Addr, port uint16) {
	l, err := gonet.ListenTCP(p.server, tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(addr), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
}

func (p *pair) dial(addr netip.Addr, port uint16, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, p.client, tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(addr), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

func isRefused(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "refused"))
}

func isTimeout(err error) bool {
	return err != nil && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timed out") || strings.Contains(err.Error(), "deadline"))
}

const dropWait = 300 * time.Millisecond

func TestDropTimesOutRejectRefuses(t *testing.T) {
	p := newPair(t, Config{}, serverAddr)
	p.listen(t, serverAddr, 80)
	p.listen(t, serverAddr, 81)
	if got, err := p.dial(serverAddr, 80, time.Second); err != nil || got != "hello" {
		t.Fatalf("no rules: got %q, %v", got, err)
	}
	p.must(t, "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP")
	p.must(t, "-A", "INPUT", "-p", "tcp", "--dport", "81", "-j", "REJECT", "--reject-with", "tcp-reset")
	if _, err := p.dial(serverAddr, 80, dropWait); !isTimeout(err) {
		t.Fatalf("DROP: want timeout, got %v", err)
	}
	start := time.Now()
	if _, err := p.dial(serverAddr, 81, 5*time.Second); !isRefused(err) {
		t.Fatalf("REJECT tcp-reset: want connection refused, got %v", err)
	} else if d := time.Since(start); d > time.Second {
		t.Fatalf("REJECT took %v, want immediate", d)
	}
	// Counters: the DROP rule saw at least the SYN.
	out, err := p.fw.Exec(IPv4, []string{"-L", "INPUT", "-v", "-x", "-n"})
	if err != nil {
		t.Fatal(err)
	}
	r := p.fw.Ruleset().Chains(IPv4, Filter)[0].Rules[0]
	if r.Counters().Packets() == 0 || r.Counters().Bytes() < 40 {
		t.Fatalf("DROP rule counters %d/%d, listing:\n%s", r.Counters().Packets(), r.Counters().Bytes(), out)
	}
	p.must(t, "-Z")
	if r.Counters().Packets() != 0 {
		t.Fatal("-Z did not zero counters")
	}
	// -D by spec removes the DROP rule; -I puts an ACCEPT before REJECT.
	p.must(t, "-D", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP")
	p.must(t, "-I", "INPUT", "1", "-p", "tcp", "--dport", "81", "-j", "ACCEPT")
	for _, port := range []uint16{80, 81} {
		if got, err := p.dial(serverAddr, port, time.Second); err != nil || got != "hello" {
			t.Fatalf("port %d after -D/-I: got %q, %v", port, got, err)
		}
	}
}

func TestRedirectAndDNAT(t *testing.T) {
	p := newPair(t, Config{}, serverAddr)
	p.listen(t, serverAddr, 8080)
	p.must(t, "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "80", "-j", "REDIRECT", "--to-ports", "8080")
	p.must(t, "-t", "nat", "-A", "PREROUTING", "-d", "10.0.2.2", "-p", "tcp", "--dport", "90", "-j", "DNAT", "--to-destination", "10.0.2.2:8080")
	for _, port := range []uint16{80, 90} {
		if got, err := p.dial(serverAddr, port, time.Second); err != nil || got != "hello" {
			t.Fatalf("port %d remapped to 8080: got %q, %v", port, got, err)
		}
	}
	flows := p.fw.Conntrack()
	if len(flows) == 0 {
		t.Fatal("no conntrack flows")
	}
	txt := FormatConntrack(flows)
	if !strings.Contains(txt, "dport=80") || !strings.Contains(txt, "sport=8080") {
		t.Fatalf("conntrack listing lacks the NAT:\n%s", txt)
	}
}

func TestMarkUserChainReturnLog(t *testing.T) {
	p := newPair(t, Config{}, serverAddr)
	p.listen(t, serverAddr, 80)
	p.must(t, "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "--dport", "80", "-j", "MARK", "--set-mark", "7")
	p.must(t, "-N", "CHECK")
	p.must(t, "-A", "CHECK", "-m", "mark", "--mark", "7", "-j", "RETURN")
	p.must(t, "-A", "CHECK", "-j", "DROP")
	p.must(t, "-A", "INPUT", "-p", "tcp", "-j", "LOG", "--log-prefix", "in: ")
	p.must(t, "-A", "INPUT", "-p", "tcp", "-j", "CHECK")
	p.must(t, "-A", "INPUT", "-p", "tcp", "-j", "ACCEPT")
	if got, err := p.dial(serverAddr, 80, time.Second); err != nil || got != "hello" {
		t.Fatalf("marked packets return from CHECK: got %q, %v", got, err)
	}
	if !strings.Contains(p.logs.String(), "prefix=\"in: \"") {
		t.Fatalf("LOG wrote nothing useful: %q", p.logs.String())
	}
	// Unmarked traffic (another port) falls through to DROP in CHECK.
	p.listen(t, serverAddr, 81)
	if _, err := p.dial(serverAddr, 81, dropWait); !isTimeout(err) {
		t.Fatalf("unmarked: want timeout, got %v", err)
	}
}

func TestLimit(t *testing.T) {
	p := newPair(t, Config{}, serverAddr)
	p.listen(t, serverAddr, 80)
	p.must(t, "-A", "INPUT", "-p", "tcp", "--syn", "-m", "limit", "--limit", "1/hour", "--limit-burst", "2", "-j", "ACCEPT")
	p.must(t, "-A", "INPUT", "-p", "tcp", "--syn", "-j", "DROP")
	for i := 0; i < 2; i++ {
		if _, err := p.dial(serverAddr, 80, time.Second); err != nil {
			t.Fatalf("connection %d within burst: %v", i, err)
		}
	}
	if _, err := p.dial(serverAddr, 80, dropWait); !isTimeout(err) {
		t.Fatalf("over the limit: want timeout, got %v", err)
	}
}

// TestGatewayForward checks the sandbox mapping: traffic to a non-local
// address traverses FORWARD (with replies through FORWARD too), not
// INPUT.
func TestGatewayForward(t *testing.T) {
	local := func(a tcpip.Address) bool { return a == tcpipAddr(serverAddr) }
	p := newPair(t, Config{Gateway: true, IsLocal: local, HostInterface: "host0"}, serverAddr, remoteAddr)
	p.listen(t, remoteAddr, 80)
	p.listen(t, remoteAddr, 81)
	p.listen(t, serverAddr, 80)
	p.must(t, "-P", "FORWARD", "DROP")
	p.must(t, "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
	p.must(t, "-A", "FORWARD", "-i", "tun0", "-o", "host0", "-p", "tcp", "--dport", "80", "-j", "ACCEPT")
	p.must(t, "-A", "FORWARD", "-p", "tcp", "--dport", "81", "-j", "REJECT", "--reject-with", "tcp-reset")
	p.must(t, "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP")
	if got, err := p.dial(remoteAddr, 80, time.Second); err != nil || got != "hello" {
		t.Fatalf("forwarded port 80 with ESTABLISHED replies: got %q, %v", got, err)
	}
	if _, err := p.dial(remoteAddr, 81, 5*time.Second); !isRefused(err) {
		t.Fatalf("FORWARD REJECT: want refused, got %v", err)
	}
	if _, err := p.dial(serverAddr, 80, dropWait); !isTimeout(err) {
		t.Fatalf("INPUT DROP for the gateway's own address: want timeout, got %v", err)
	}
}

func TestIPSetBlocklist(t *testing.T) {
	p := newPair(t, Config{Gateway: true, IsLocal: func(tcpip.Address) bool { return false }}, serverAddr, remoteAddr)
	p.listen(t, serverAddr, 80)
	p.listen(t, remoteAddr, 80)
	if _, err := p.fw.IPSet([]string{"create", "block", "hash:net", "maxelem", "200000"}); err != nil {
		t.Fatal(err)
	}
	s := p.fw.Sets().Get("block")
	for i := 0; i < 100000; i++ {
		pf := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 0}), 24)
		if err := s.Add(pf, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.fw.IPSet([]string{"add", "block", "198.18.0.0/30"}); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 100001 {
		t.Fatalf("set has %d entries", s.Len())
	}
	p.must(t, "-A", "FORWARD", "-m", "set", "--match-set", "block", "dst", "-j", "DROP")
	if _, err := p.dial(remoteAddr, 80, dropWait); !isTimeout(err) {
		t.Fatalf("listed address: want timeout, got %v", err)
	}
	if got, err := p.dial(serverAddr, 80, time.Second); err != nil || got != "hello" {
		t.Fatalf("unlisted address: got %q, %v", got, err)
	}
	if _, err := p.fw.IPSet([]string{"destroy", "block"}); err == nil {
		t.Fatal("destroying a set in use succeeded")
	}
}

// TestGoHook checks that Go hook functions see packets and decide.
func TestGoHook(t *testing.T) {
	p := newPair(t, Config{}, serverAddr)
	p.listen(t, serverAddr, 80)
	p.listen(t, serverAddr, 81)
	var mu sync.Mutex
	seen := map[uint16]int{}
	remove, err := p.fw.AddHook(Input, -10, func(pk *Packet) Verdict {
		if pk.Protocol == 6 {
			mu.Lock()
			seen[pk.DstPort]++
			mu.Unlock()
			if pk.DstPort == 81 && pk.InInterface == "tun0" {
				return RejectPacket
			}
		}
		return Continue
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.dial(serverAddr, 80, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.dial(serverAddr, 81, 5*time.Second); !isRefused(err) {
		t.Fatalf("hook RejectPacket: want refused, got %v", err)
	}
	remove()
	if _, err := p.dial(serverAddr, 81, time.Second); err != nil {
		t.Fatalf("after removing the hook: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[80] == 0 || seen[81] == 0 {
		t.Fatalf("hook saw %v", seen)
	}
}

// TestAtomicRestore checks that a bad restore changes nothing and names
// its line.
func TestAtomicRestore(t *testing.T) {
	fw, _ := New(nil, Config{})
	good := "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
	if err := fw.Restore(IPv4, good, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	before := fw.Save(IPv4, false)
	bad := "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j ACCEPT\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DNAT --to-destination 1.2.3.4\nCOMMIT\n"
	err := fw.Restore(IPv4, bad, RestoreOptions{})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 7 {
		t.Fatalf("want error at line 7, got %v", err)
	}
	if after := fw.Save(IPv4, false); stripDates(after) != stripDates(before) {
		t.Fatalf("failed restore changed the rules:\n%s\nvs\n%s", after, before)
	}
	loop := "*filter\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\nCOMMIT\n"
	// As in the kernel, a loop no hook reaches is accepted; reached
	// from INPUT it is refused.
	if err := Validate(IPv4, loop); err != nil {
		t.Fatalf("unreachable jump loop: %v", err)
	}
	loop = strings.Replace(loop, "COMMIT", "-A INPUT -j A\nCOMMIT", 1)
	if err := Validate(IPv4, loop); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("jump loop: %v", err)
	}
	redirect := "*nat\n:X - [0:0]\n-A POSTROUTING -j X\n-A X -p tcp -j REDIRECT --to-ports 1\nCOMMIT\n"
	if err := Validate(IPv4, redirect); err == nil {
		t.Fatal("REDIRECT reachable from POSTROUTING accepted")
	}
}

func stripDates(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func ExampleFirewall_Exec() {
	fw, _ := New(nil, Config{})
	fw.Exec(IPv4, []string{"-A", "INPUT", "-s", "10.0.2.0/24", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"})
	fw.Exec(IPv4, []string{"-P", "INPUT", "DROP"})
	out, _ := fw.Exec(IPv4, []string{"-S"})
	fmt.Print(out)
	// Output:
	// -P INPUT DROP
	// -P FORWARD ACCEPT
	// -P OUTPUT ACCEPT
	// -A INPUT -s 10.0.2.0/24 -p tcp -m tcp --dport 22 -j ACCEPT
}
