package views

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/tunstack/tunstack/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// knownStack has, at 10.0.2.2: a TCP listener on :80 with one accepted
// connection from its own client, and a UDP socket bound to :53.
func knownStack(t *testing.T) *stack.Stack {
	t.Helper()
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch := channel.New(64, 1500, "")
	// NoPrefixRoute, as the sandbox's gateway NIC (instance) has it.
	nic, err := st.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: ch, NoPrefixRoute: true, Addresses: []netip.Prefix{
		netip.MustParsePrefix("10.0.2.2/24"), netip.MustParsePrefix("fd00::2/64")}})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDefaultRoutes(nic)
	gs := st.GVisor()
	ln, err := gonet.ListenTCP(gs, tcpip.FullAddress{Addr: stack.Addr(netip.MustParseAddr("10.0.2.2")), Port: 80}, header.IPv4ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan any, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		accepted <- c
	}()
	client, err := gonet.DialTCPWithBind(t.Context(), gs,
		tcpip.FullAddress{Addr: stack.Addr(netip.MustParseAddr("10.0.2.2")), Port: 40000},
		tcpip.FullAddress{Addr: stack.Addr(netip.MustParseAddr("10.0.2.2")), Port: 80}, header.IPv4ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	var server interface{ Close() error }
	select {
	case a := <-accepted:
		if err, ok := a.(error); ok {
			t.Fatal(err)
		}
		server = a.(interface{ Close() error })
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	client.Write([]byte("hello")) // 5 bytes wait in the server's Recv-Q
	udp, err := gonet.DialUDP(gs, &tcpip.FullAddress{Addr: stack.Addr(netip.MustParseAddr("fd00::2")), Port: 53}, nil, header.IPv6ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		udp.Close()
		client.Close()
		server.Close()
		ln.Close()
		st.Close()
		ch.Close()
	})
	waitFor(t, func() bool {
		for _, s := range Sockets(gs, false) {
			if s.RecvQ == 5 {
				return true
			}
		}
		return false
	})
	return st
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSocketsAndSS(t *testing.T) {
	st := knownStack(t)
	socks := Sockets(st.GVisor(), true)
	for _, tc := range []struct {
		name string
		o    SSOptions
		want string
	}{
		{"tn", SSOptions{TCP: true, Numeric: true}, `
State Recv-Q Send-Q Local Address:Port Peer Address:Port Process
ESTAB 5      0          10.0.2.2:80       10.0.2.2:40000
ESTAB 0      0          10.0.2.2:40000    10.0.2.2:80
`},
		{"tln", SSOptions{TCP: true, Listening: true, Numeric: true}, `
State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
LISTEN 0      0             10.0.2.2:80         0.0.0.0:*
`},
		{"uan", SSOptions{UDP: true, All: true, Numeric: true}, `
State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
UNCONN 0      0            [fd00::2]:53            [::]:*
`},
		{"an6", SSOptions{All: true, Numeric: true, Family: 6}, `
Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
udp   UNCONN 0      0            [fd00::2]:53            [::]:*
`},
		// ss -tlnH: no header, columns as wide as their contents, the
		// queues padded to six (as real ss prints a listener).
		{"tlnH", SSOptions{TCP: true, Listening: true, Numeric: true, NoHeader: true}, `
LISTEN 0      0      10.0.2.2:80 0.0.0.0:*
`},
		{"tl services", SSOptions{TCP: true, Listening: true, ServiceName: func(p uint16, proto string) string {
			if p == 80 && proto == "tcp" {
				return "http"
			}
			return ""
		}}, `
State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
LISTEN 0      0           10.0.2.2:http         0.0.0.0:*
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteSS(&b, tc.o.Filter(socks), tc.o); err != nil {
				t.Fatal(err)
			}
			if got, want := b.String(), strings.TrimPrefix(tc.want, "\n"); got != want {
				t.Errorf("ss -%s:\n%s\nwant:\n%s", tc.name, got, want)
			}
		})
	}
	var b strings.Builder
	o := SSOptions{TCP: true, Numeric: true, Info: true}
	WriteSS(&b, o.Filter(socks), o)
	if !strings.Contains(b.String(), "\t reno rto:") || !strings.Contains(b.String(), " cwnd:") {
		t.Errorf("ss -ti shows no TCP internals:\n%s", b.String())
	}
}

func TestSSProcessColumn(t *testing.T) {
	s := []Socket{{Netid: "tcp", State: "ESTAB", Local: netip.MustParseAddrPort("10.0.2.2:80"),
		Peer: netip.MustParseAddrPort("10.0.2.100:40000"), Inode: 77,
		Processes: []Process{{PID: 42, Command: "curl", FD: 5}}}}
	var b strings.Builder
	WriteSS(&b, s, SSOptions{Numeric: true, TCP: true, Processes: true, Extended: true})
	if want := `users:(("curl",pid=42,fd=5)) ino:77`; !strings.Contains(b.String(), want) {
		t.Errorf("ss -pe:\n%s\nwant %s", b.String(), want)
	}
}

func TestLinksAndRoutes(t *testing.T) {
	st := knownStack(t)
	links := Links(st.GVisor(), func(tcpip.NICID) LinkExtra {
		return LinkExtra{Offload: "off", TxQueueLen: 10000, Stats: &LinkStats{RxBytes: 1234, RxPackets: 5, TxBytes: 99, TxPackets: 1}}
	})
	var b strings.Builder
	WriteAddrs(&b, links, IPOptions{})
	want := `1: tun0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1500 qdisc none state UNKNOWN group default qlen 10000
    link/none offload off
    inet 10.0.2.2/24 scope global tun0
       valid_lft forever preferred_lft forever
    inet6 fd00::2/64 scope global
       valid_lft forever preferred_lft forever
`
	if b.String() != want {
		t.Errorf("ip addr:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	WriteLinks(&b, links, IPOptions{Stats: true})
	want = `1: tun0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1500 qdisc none state UNKNOWN mode DEFAULT group default qlen 10000
    link/none offload off
    RX:  bytes packets errors dropped gso
          1234       5      0       0   0
    TX:  bytes packets errors dropped gso
            99       1      0       0   0
`
	if b.String() != want {
		t.Errorf("ip -s link:\n%s\nwant:\n%s", b.String(), want)
	}
	routes := Routes(st.GVisor())
	for _, tc := range []struct {
		fam  int
		want string
	}{{0, "default dev tun0\n"}, {6, "default dev tun0\n"}} {
		b.Reset()
		WriteRoutes(&b, routes, IPOptions{Family: tc.fam})
		if b.String() != tc.want {
			t.Errorf("ip -%d route: %q, want %q", tc.fam, b.String(), tc.want)
		}
	}
	if len(routes) != 2 || routes[1].Destination != netip.MustParsePrefix("::/0") {
		t.Errorf("routes %+v: want IPv4 and IPv6 defaults", routes)
	}
}

func TestProcIndex(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const hdr = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	// 10.0.2.100:40000 -> 10.0.2.2:80, inode 111; UDP 10.0.2.100:5353 unconnected, inode 222.
	write("100/net/tcp", hdr+"   0: 6402000A:9C40 0202000A:0050 01 00000000:00000000 00:00000000 00000000     0        0 111 1\n")
	write("100/net/udp", hdr+"   0: 6402000A:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 222 2\n")
	write("100/net/tcp6", hdr+"   0: 0000000000000000FFFF00006402000A:9C41 0000000000000000FFFF00000202000A:0050 01 00000000:00000000 00:00000000 00000000     0        0 333 1\n")
	write("100/comm", "curl\n")
	write("200/comm", "other\n")
	for _, l := range []struct{ from, to string }{
		{"100/ns/net", "net:[4026532000]"}, {"200/ns/net", "net:[4026531000]"},
		{"100/fd/5", "socket:[111]"}, {"100/fd/6", "socket:[222]"}, {"100/fd/7", "socket:[333]"}, {"200/fd/3", "socket:[111]"},
	} {
		p := filepath.Join(root, l.from)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(l.to, p); err != nil {
			t.Fatal(err)
		}
	}
	x, err := NewProcIndex(root, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		proto         string
		local, remote string
		ino           uint64
		fd            int
	}{
		{"tcp", "10.0.2.100:40000", "10.0.2.2:80", 111, 5},
		{"udp", "10.0.2.100:5353", "10.0.2.3:53", 222, 6},
		{"tcp", "10.0.2.100:40001", "10.0.2.2:80", 333, 7},
		{"tcp", "10.0.2.100:40002", "10.0.2.2:80", 0, 0},
	} {
		ino, procs := x.Lookup(tc.proto, ap(tc.local), ap(tc.remote))
		if ino != tc.ino {
			t.Errorf("Lookup(%s %s %s) inode %d, want %d", tc.proto, tc.local, tc.remote, ino, tc.ino)
			continue
		}
		if tc.ino == 0 {
			continue
		}
		// Process 200 is in another namespace: it must not be listed.
		if len(procs) != 1 || procs[0] != (Process{PID: 100, Command: "curl", FD: tc.fd}) {
			t.Errorf("Lookup(%s %s %s) processes %+v", tc.proto, tc.local, tc.remote, procs)
		}
	}
	socks := []Socket{{Netid: "tcp", Local: ap("10.0.2.2:80"), Peer: ap("10.0.2.100:40000")}}
	x.Annotate(socks)
	if socks[0].Inode != 111 || len(socks[0].Processes) != 1 {
		t.Errorf("Annotate: %+v", socks[0])
	}
}

// TestProcIndexSandboxSockets: the namespace's own sockets, read from its
// tables, print as ss inside the namespace prints them (states, queues,
// "*" for a dual-stack IPv6 socket, mapped IPv4 addresses, holders), and
// still list when the holders cannot be looked up.
func TestProcIndexSandboxSockets(t *testing.T) {
	const hdr = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tables := map[string]string{
		// 0.0.0.0:8123 LISTEN with 2 in the accept queue; 0.0.0.0:22
		// LISTEN; 10.0.2.100:8123 <- 10.0.2.2:40000 ESTAB, 3 bytes to
		// send, 7 to read; a TIME-WAIT (inode 0).
		"tcp": hdr +
			"   0: 00000000:1FBB 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 501 1\n" +
			"   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 502 1\n" +
			"   2: 6402000A:1FBB 0202000A:9C40 01 00000003:00000007 00:00000000 00000000     0        0 503 1\n" +
			"   3: 6402000A:9C41 0202000A:0050 06 00000000:00000000 03:00000F9F 00000000     0        0 0 3\n" +
			"garbage line\n",
		// [::]:8000 dual-stack; [::]:22 beside 0.0.0.0:22, so V6ONLY;
		// a mapped 10.0.2.100:8000 <- 10.0.2.2:40001.
		"tcp6": hdr +
			"   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 601 1\n" +
			"   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 602 1\n" +
			"   2: 0000000000000000FFFF00006402000A:1F40 0000000000000000FFFF00000202000A:9C41 01 00000000:00000000 00:00000000 00000000     0        0 603 1\n",
		"udp": hdr + "   0: 6402000A:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 701 2\n",
	}
	for _, withFDs := range []bool{true, false} {
		root := t.TempDir()
		for f, c := range tables {
			p := filepath.Join(root, "100", "net", f)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		os.WriteFile(filepath.Join(root, "100", "comm"), []byte("python3\n"), 0o644)
		if withFDs {
			os.MkdirAll(filepath.Join(root, "100", "ns"), 0o755)
			os.MkdirAll(filepath.Join(root, "100", "fd"), 0o755)
			os.Symlink("net:[4026532000]", filepath.Join(root, "100", "ns", "net"))
			os.Symlink("socket:[501]", filepath.Join(root, "100", "fd", "3"))
			os.Symlink("socket:[503]", filepath.Join(root, "100", "fd", "4"))
		}
		x, err := NewProcIndex(root, 100, true)
		if err != nil {
			t.Fatal(err)
		}
		if (x.ProcessErr() == nil) != withFDs {
			t.Errorf("withFDs %v: ProcessErr %v", withFDs, x.ProcessErr())
		}
		socks := x.Sockets()
		for _, s := range socks {
			if s.Side != SideSandbox {
				t.Errorf("socket %+v: side %q, want sandbox", s, s.Side)
			}
		}
		for _, tc := range []struct {
			name string
			o    SSOptions
			want string
		}{
			{"tlnp", SSOptions{TCP: true, Listening: true, Numeric: true, Processes: true}, `
State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
LISTEN 0      0            0.0.0.0:22           0.0.0.0:*
LISTEN 2      0            0.0.0.0:8123         0.0.0.0:* users:(("python3",pid=100,fd=3))
LISTEN 0      0               [::]:22              [::]:*
LISTEN 0      0                  *:8000               *:*
`},
			{"tnp", SSOptions{TCP: true, Numeric: true, Processes: true}, `
State Recv-Q Send-Q       Local Address:Port       Peer Address:Port Process
ESTAB 7      3               10.0.2.100:8123          10.0.2.2:40000 users:(("python3",pid=100,fd=4))
ESTAB 0      0      [::ffff:10.0.2.100]:8000 [::ffff:10.0.2.2]:40001
`},
			{"tan4 with sides", SSOptions{TCP: true, All: true, Numeric: true, Family: 4, ShowSide: true}, `
Side    State     Recv-Q Send-Q Local Address:Port Peer Address:Port Process
sandbox LISTEN    0      0           0.0.0.0:22        0.0.0.0:*
sandbox LISTEN    2      0           0.0.0.0:8123      0.0.0.0:*
sandbox ESTAB     7      3        10.0.2.100:8123     10.0.2.2:40000
sandbox TIME-WAIT 0      0        10.0.2.100:40001    10.0.2.2:80
`},
			{"uan", SSOptions{UDP: true, All: true, Numeric: true}, `
State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
UNCONN 0      0         10.0.2.100:5353         0.0.0.0:*
`},
		} {
			var b strings.Builder
			if err := WriteSS(&b, tc.o.Filter(socks), tc.o); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimPrefix(tc.want, "\n")
			if !withFDs {
				want = regexp.MustCompile(` users:\(\(.*\)\)`).ReplaceAllString(want, "")
			}
			if got := b.String(); got != want {
				t.Errorf("withFDs %v, ss -%s:\n%s\nwant:\n%s", withFDs, tc.name, got, want)
			}
		}
	}
}

// TestListenerBacklogAndV6Only: the stack's own listeners show the
// backlog given to listen as Send-Q and IPV6_V6ONLY as set, so ss
// prints a dual-stack [::] listener as *:* and a v6-only one as [::],
// as Linux's ss -ltn does for the same two sockets.
func TestListenerBacklogAndV6Only(t *testing.T) {
	st := knownStack(t)
	for _, l := range []struct {
		port    uint16
		v6only  int
		backlog int
	}{{8080, 1, 7}, {8081, 0, 9}} {
		so, err := st.Socket(stack.AF_INET6, stack.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { so.Close() })
		if err := so.SetSockOpt(stack.IPPROTO_IPV6, stack.IPV6_V6ONLY, l.v6only); err != nil {
			t.Fatal(err)
		}
		if err := so.Bind(netip.AddrPortFrom(netip.IPv6Unspecified(), l.port)); err != nil {
			t.Fatal(err)
		}
		if err := so.Listen(l.backlog); err != nil {
			t.Fatal(err)
		}
	}
	o := SSOptions{TCP: true, Listening: true, Numeric: true}
	var b strings.Builder
	if err := WriteSS(&b, o.Filter(SocketsWithBacklog(st.GVisor(), false, st.Backlog)), o); err != nil {
		t.Fatal(err)
	}
	want := `State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process
LISTEN 0      0           10.0.2.2:80           0.0.0.0:*
LISTEN 0      7               [::]:8080            [::]:*
LISTEN 0      9                  *:8081               *:*
`
	if b.String() != want {
		t.Errorf("ss -ltn:\n%s\nwant:\n%s", b.String(), want)
	}
}
