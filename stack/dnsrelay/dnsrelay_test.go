package dnsrelay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	sandboxAddr = netip.MustParseAddr("10.0.2.100")
	dnsAddr     = netip.MustParseAddr("10.0.2.3")
	// answerAddr is what the test upstream answers for a.test.
	answerAddr = netip.MustParseAddr("198.18.0.5")
)

// upstream is a DNS server on the host's loopback: a.test. has an A
// record, silent.test. is never answered. It serves UDP and TCP on the
// same port until the test ends.
func upstream(t *testing.T) netip.AddrPort {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		if q.Question[0].Name == "silent.test." {
			return
		}
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Name == "a.test." {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: "a.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   answerAddr.AsSlice(),
			})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("TCP port of the UDP upstream is taken: %v", err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// deadUpstream is a loopback address where nothing listens.
func deadUpstream(t *testing.T) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// sandbox starts a relay with cfg on a gateway stack and returns the stack
// of a "sandbox" joined to it by an in-memory link.
func sandbox(t *testing.T, cfg Config) (*stack.Stack, *Relay) {
	t.Helper()
	a, b := pipe.New("", "", 1500)
	gs, err := stack.New(stack.Options{NoLocalDelivery: true})
	if err != nil {
		t.Fatal(err)
	}
	nic, err := gs.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: a, Promiscuous: true, Spoofing: true,
		Addresses: []netip.Prefix{netip.PrefixFrom(dnsAddr, 24)}})
	if err != nil {
		t.Fatal(err)
	}
	gs.AddDefaultRoutes(nic)
	sb, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snic, err := sb.AddNIC(stack.NICConfig{Name: "eth0", Endpoint: b, Addresses: []netip.Prefix{netip.PrefixFrom(sandboxAddr, 24)}})
	if err != nil {
		t.Fatal(err)
	}
	sb.AddDefaultRoutes(snic)
	cfg.Stack, cfg.Addrs = gs, []netip.Addr{dnsAddr}
	r, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		gs.Close()
		sb.Close()
	})
	return sb, r
}

// query asks name over network from the sandbox and returns the answer.
func query(t *testing.T, sb *stack.Stack, network, name string) (*dns.Msg, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := sb.DialContext(ctx, network, netip.AddrPortFrom(dnsAddr, 53).String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	co := &dns.Conn{Conn: c}
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	if err := co.WriteMsg(q); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

func TestRelayAnswers(t *testing.T) {
	up := upstream(t)
	tests := []struct {
		name      string
		upstreams []netip.AddrPort
		network   string
		qname     string
		wantRcode int
		wantA     netip.Addr
	}{
		{"udp answer", []netip.AddrPort{up}, "udp", "a.test.", dns.RcodeSuccess, answerAddr},
		{"tcp answer", []netip.AddrPort{up}, "tcp", "a.test.", dns.RcodeSuccess, answerAddr},
		{"nxdomain passes through", []netip.AddrPort{up}, "udp", "none.test.", dns.RcodeNameError, netip.Addr{}},
		{"dead first upstream, second answers", []netip.AddrPort{deadUpstream(t), up}, "udp", "a.test.", dns.RcodeSuccess, answerAddr},
		{"no upstream is SERVFAIL", nil, "udp", "a.test.", dns.RcodeServerFailure, netip.Addr{}},
		{"no upstream over tcp is SERVFAIL", nil, "tcp", "a.test.", dns.RcodeServerFailure, netip.Addr{}},
		{"silent upstream is SERVFAIL after the timeout", []netip.AddrPort{up}, "udp", "silent.test.", dns.RcodeServerFailure, netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, _ := sandbox(t, Config{Upstreams: tt.upstreams, Timeout: 300 * time.Millisecond})
			m, err := query(t, sb, tt.network, tt.qname)
			if err != nil {
				t.Fatal(err)
			}
			if m.Rcode != tt.wantRcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if tt.wantA.IsValid() {
				if len(m.Answer) != 1 {
					t.Fatalf("answer %v, want one A record", m.Answer)
				}
				if a, ok := m.Answer[0].(*dns.A); !ok || a.A.String() != tt.wantA.String() {
					t.Fatalf("answer %v, want A %s", m.Answer[0], tt.wantA)
				}
			}
		})
	}
}

func TestTCPConnectionCarriesSeveralQueries(t *testing.T) {
	sb, _ := sandbox(t, Config{Upstreams: []netip.AddrPort{upstream(t)}})
	c, err := sb.DialContext(context.Background(), "tcp", netip.AddrPortFrom(dnsAddr, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	co := &dns.Conn{Conn: c}
	for i := range 3 {
		q := new(dns.Msg)
		q.SetQuestion("a.test.", dns.TypeA)
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		m, err := co.ReadMsg()
		if err != nil || m.Id != q.Id || len(m.Answer) != 1 {
			t.Fatalf("query %d on one connection: %v, %v", i, m, err)
		}
	}
}

func TestNotAQueryIsIgnored(t *testing.T) {
	sb, _ := sandbox(t, Config{Upstreams: []netip.AddrPort{upstream(t)}})
	c, err := sb.DialContext(context.Background(), "udp", netip.AddrPortFrom(dnsAddr, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("not dns"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Fatalf("garbage got a %d-byte answer", n)
	}
}

// TestQueryCap: with a silent upstream, queries past the cap are dropped
// (UDP) or answered SERVFAIL at once (TCP), and counted; TCP connections
// past their cap are closed.
func TestQueryCap(t *testing.T) {
	up := upstream(t)
	queries, conns := relay.NewLimit("dns-queries", 2), relay.NewLimit("dns-tcp-conns", 3)
	sb, _ := sandbox(t, Config{Upstreams: []netip.AddrPort{up}, Timeout: 2 * time.Second, Queries: queries, TCPConns: conns})
	dnsAP := netip.AddrPortFrom(dnsAddr, 53).String()
	ask := func(c net.Conn) *dns.Conn {
		co := &dns.Conn{Conn: c}
		q := new(dns.Msg)
		q.SetQuestion("silent.test.", dns.TypeA)
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		return co
	}
	// Two UDP queries fill the cap.
	for range 2 {
		c, err := sb.Dial("udp", dnsAP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ask(c)
	}
	for queries.Stat().InUse != 2 {
		time.Sleep(5 * time.Millisecond)
	}
	// A third over UDP is dropped: no answer at all.
	c, err := sb.Dial("udp", dnsAP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if m, err := ask(c).ReadMsg(); err == nil {
		t.Fatalf("UDP query past the cap answered: %v", m)
	}
	// Over TCP: SERVFAIL at once.
	tc, err := sb.Dial("tcp", dnsAP)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetReadDeadline(time.Now().Add(time.Second))
	m, err := ask(tc).ReadMsg()
	if err != nil || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("TCP query past the cap: %v, %v; want SERVFAIL at once", m, err)
	}
	if s := queries.Stat(); s.Dropped != 2 {
		t.Errorf("dns-queries: %+v, want 2 dropped", s)
	}
	// TCP connections: the cap is 3, one is open; two more fill it, the
	// next is closed at once.
	for range 2 {
		c, err := sb.Dial("tcp", dnsAP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for conns.Stat().InUse != 3 {
		time.Sleep(5 * time.Millisecond)
	}
	extra, err := sb.Dial("tcp", dnsAP)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("TCP connection past the cap: read %v, want it closed", err)
	}
	if s := conns.Stat(); s.Dropped != 1 {
		t.Errorf("dns-tcp-conns: %+v, want 1 dropped", s)
	}
}
