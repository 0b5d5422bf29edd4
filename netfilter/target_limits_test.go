package netfilter

import (
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// TestRefusedNotMisapplied: rules Linux accepts but tunstack could only
// approximate (NAT ranges, REJECT types gVisor cannot send) are refused
// with an error naming the limitation; their one-address/one-port and
// sendable neighbours are accepted.
func TestRefusedNotMisapplied(t *testing.T) {
	cases := []struct {
		fam  Family
		rule string
		want string // "" accepted; otherwise a substring of the error
	}{
		{IPv4, "-t nat -A PREROUTING -p tcp -j DNAT --to-destination 10.0.2.2-10.0.2.9", "address range 10.0.2.2-10.0.2.9 is not supported"},
		{IPv4, "-t nat -A PREROUTING -p tcp -j DNAT --to-destination 10.0.2.2:80-90", "port range 80-90 is not supported"},
		{IPv4, "-t nat -A PREROUTING -p tcp -j DNAT --to-destination 10.0.2.2:80", ""},
		{IPv4, "-t nat -A PREROUTING -p tcp -j DNAT --to-destination 10.0.2.2-10.0.2.2:80-80", ""},
		{IPv4, "-t nat -A POSTROUTING -p udp -j SNAT --to-source 198.18.0.1:1000-2000", "port range 1000-2000 is not supported"},
		{IPv4, "-t nat -A POSTROUTING -j SNAT --to-source 198.18.0.1-198.18.0.4", "address range"},
		{IPv4, "-t nat -A POSTROUTING -j SNAT --to-source 198.18.0.1", ""},
		{IPv6, "-t nat -A POSTROUTING -j SNAT --to-source 2001:2::1-2001:2::5", "address range"},
		{IPv4, "-t nat -A POSTROUTING -p tcp -j MASQUERADE --to-ports 1024-65535", "--to-ports 1024-65535 is not supported"},
		{IPv4, "-t nat -A POSTROUTING -p tcp -j MASQUERADE --to-ports 4000", ""},
		{IPv4, "-t nat -A PREROUTING -p tcp -j REDIRECT --to-ports 8080-8090", "--to-ports 8080-8090 is not supported"},
		{IPv4, "-t nat -A PREROUTING -p tcp -j REDIRECT --to-ports 8080", ""},
		{IPv4, "-A INPUT -j REJECT --reject-with icmp-proto-unreachable", "icmp-proto-unreachable is not supported"},
		{IPv4, "-A INPUT -j REJECT --reject-with proto-unreach", "icmp-proto-unreachable is not supported"},
		{IPv6, "-A INPUT -j REJECT --reject-with icmp6-policy-fail", "icmp6-policy-fail is not supported"},
		{IPv6, "-A INPUT -j REJECT --reject-with reject-route", "icmp6-reject-route is not supported"},
		{IPv4, "-A INPUT -j REJECT --reject-with icmp-net-prohibited", ""},
		{IPv6, "-A INPUT -j REJECT --reject-with icmp6-adm-prohibited", ""},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			fw, _ := New(nil, Config{})
			_, err := fw.Exec(c.fam, strings.Fields(c.rule))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
			// Nothing half-applied: a refused rule leaves no trace.
			if c.want != "" && strings.Contains(fw.Save(c.fam, false), "-A ") {
				t.Fatalf("refused rule is in the ruleset:\n%s", fw.Save(c.fam, false))
			}
		})
	}
}

// TestMasqueradeToPort: MASQUERADE --to-ports P maps the source port of
// the stack's outgoing connection to P, as Linux does (gVisor's own
// MASQUERADE target would keep it).
func TestMasqueradeToPort(t *testing.T) {
	p := newPair(t, Config{}, serverAddr)
	l, err := gonet.ListenTCP(p.client, tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(clientAddr), Port: 7000}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- c.RemoteAddr().String()
		c.Close()
	}()
	p.must(t, "-t", "nat", "-A", "POSTROUTING", "-p", "tcp", "--dport", "7000", "-j", "MASQUERADE", "--to-ports", "4321")
	c, err := gonet.DialTCP(p.server, tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(clientAddr), Port: 7000}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial through MASQUERADE --to-ports 4321: %v", err)
	}
	defer c.Close()
	select {
	case got := <-peer:
		if got != "10.0.2.2:4321" {
			t.Fatalf("the peer saw %s, want 10.0.2.2:4321", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection arrived")
	}
}

// TestRejectErrorIsRelated: the ICMP error REJECT sends for a UDP
// datagram is RELATED in OUTPUT, as on Linux (gVisor kept no connection
// for the refused datagram, so only tunstack's tracker knows the flow it
// quotes).
func TestRejectErrorIsRelated(t *testing.T) {
	cases := []struct {
		name    string
		output  [][]string
		refused bool
	}{
		{"RELATED accepted, rest dropped", [][]string{
			{"-A", "OUTPUT", "-p", "icmp", "-m", "conntrack", "--ctstate", "RELATED", "-j", "ACCEPT"},
			{"-A", "OUTPUT", "-p", "icmp", "-j", "DROP"}}, true},
		{"RELATED dropped", [][]string{
			{"-A", "OUTPUT", "-p", "icmp", "-m", "conntrack", "--ctstate", "RELATED", "-j", "DROP"}}, false},
		{"INVALID dropped", [][]string{
			{"-A", "OUTPUT", "-p", "icmp", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, Config{}, serverAddr)
			p.must(t, "-A", "INPUT", "-p", "udp", "--dport", "5000", "-j", "REJECT")
			for _, r := range c.output {
				p.must(t, r...)
			}
			conn, err := gonet.DialUDP(p.client, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(serverAddr), Port: 5000}, ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(dropWait))
			conn.Write([]byte("probe"))
			_, err = conn.Read(make([]byte, 16))
			if c.refused && !isRefused(err) {
				t.Fatalf("want the port unreachable to arrive (refused), got %v", err)
			}
			if !c.refused && (err == nil || !strings.Contains(err.Error(), "timeout")) {
				t.Fatalf("want the port unreachable dropped (timeout), got %v", err)
			}
		})
	}
}

// FuzzQuotedKey: the quoted packet of an ICMP error comes from the
// network; reading its flow key never panics, and a key is read only
// from a quoted IPv4 or IPv6 header.
func FuzzQuotedKey(f *testing.F) {
	udp4 := []byte{0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 2, 2, 10, 0, 2, 100, // outer IPv4, ICMP
		3, 3, 0, 0, 0, 0, 0, 0, // port unreachable
		0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 2, 100, 10, 0, 2, 2, // quoted IPv4, UDP
		0x9c, 0x40, 0x13, 0x88, 0, 8, 0, 0}
	f.Add(udp4)
	f.Add(udp4[:40])
	f.Add([]byte{0x60})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, ok := quotedKey(b)
		if ok && !k.src.IsValid() {
			t.Fatalf("key %+v without addresses from %x", k, b)
		}
	})
}

func TestQuotedKey(t *testing.T) {
	b := []byte{0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 2, 2, 10, 0, 2, 100,
		3, 3, 0, 0, 0, 0, 0, 0,
		0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 2, 100, 10, 0, 2, 2,
		0x9c, 0x40, 0x13, 0x88, 0, 8, 0, 0}
	k, ok := quotedKey(b)
	want := flowKey{proto: 17, src: clientAddr, dst: serverAddr, sport: 40000, dport: 5000}
	if !ok || k != want {
		t.Fatalf("quotedKey: %+v %v, want %+v", k, ok, want)
	}
	if _, ok := quotedKey(b[:30]); ok {
		t.Fatal("quotedKey read a key from a truncated quote")
	}
}
