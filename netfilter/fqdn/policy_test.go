package fqdn

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/tunstack/tunstack/netfilter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var relay = netip.MustParseAddr("10.0.2.3")

func newPolicy(t *testing.T, patterns string, cfg Config) (*Policy, *netfilter.Firewall) {
	t.Helper()
	fw, err := netfilter.New(nil, netfilter.Config{Gateway: true, HostInterface: "host"})
	if err != nil {
		t.Fatal(err)
	}
	if patterns != "" {
		if cfg.Patterns, err = ParsePatterns(patterns); err != nil {
			t.Fatal(err)
		}
	}
	cfg.DNS = []netip.Addr{relay, netip.MustParseAddr("fd00::3")}
	cfg.HostInterface = "host"
	p, err := New(fw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, fw
}

func TestRulesInIPTablesSave(t *testing.T) {
	_, fw := newPolicy(t, "allowed.test,api.test:443,198.18.0.0/15:8000-8100,[fd00:5::1]:80", Config{})
	got := fw.Save(netfilter.IPv4, false)
	for _, want := range []string{
		":TS-ALLOW - [0:0]",
		"-A INPUT -j TS-ALLOW",
		"-A FORWARD -o host -j TS-ALLOW",
		"-A TS-ALLOW -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
		"-A TS-ALLOW -d 10.0.2.3/32 -p udp -m udp --dport 53 -j RETURN",
		"-A TS-ALLOW -d 10.0.2.3/32 -p tcp -m tcp --dport 53 -j RETURN",
		"-A TS-ALLOW -d 198.18.0.0/15 -p tcp -m tcp --dport 8000:8100 -j RETURN",
		"-A TS-ALLOW -m set --match-set ts-allow4 dst -j RETURN",
		"-A TS-ALLOW -p tcp -m set --match-set ts-allow4-443 dst -m tcp --dport 443 -j RETURN",
		"-A TS-ALLOW -j REJECT --reject-with icmp-admin-prohibited",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("iptables-save lacks %q:\n%s", want, got)
		}
	}
	got6 := fw.Save(netfilter.IPv6, false)
	for _, want := range []string{
		"-A TS-ALLOW -d fd00:5::1/128 -p tcp -m tcp --dport 80 -j RETURN",
		"-A TS-ALLOW -m set --match-set ts-allow6 dst -j RETURN",
		"-A TS-ALLOW -j REJECT --reject-with icmp6-addr-unreachable",
	} {
		if !strings.Contains(got6, want+"\n") {
			t.Errorf("ip6tables-save lacks %q:\n%s", want, got6)
		}
	}
}

// answer builds an upstream response to a query for qname (type A)
// holding the given records.
func answer(t *testing.T, qname string, rrs ...string) (query, resp []byte) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(qname), dns.TypeA)
	q.SetEdns0(1232, false)
	query, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	r.SetReply(q)
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		r.Answer = append(r.Answer, rr)
	}
	if resp, err = r.Pack(); err != nil {
		t.Fatal(err)
	}
	return query, resp
}

func TestFilterResponse(t *testing.T) {
	tests := []struct {
		name     string
		patterns string
		qname    string
		rrs      []string
		allowed  bool
		learned  []string // addresses now allowed on port 443/tcp
		denied   []string // addresses still denied
	}{
		{name: "exact name", patterns: "allowed.test", qname: "allowed.test",
			rrs: []string{"allowed.test. 60 IN A 198.18.1.1"}, allowed: true, learned: []string{"198.18.1.1"}},
		{name: "unlisted name", patterns: "allowed.test", qname: "other.test",
			rrs: []string{"other.test. 60 IN A 198.18.1.2"}, denied: []string{"198.18.1.2"}},
		{name: "CNAME from unlisted into allowed", patterns: "allowed.test", qname: "alias.test",
			rrs: []string{"alias.test. 60 IN CNAME allowed.test.", "allowed.test. 60 IN A 198.18.1.3"}, allowed: true, learned: []string{"198.18.1.3"}},
		{name: "allowed name whose chain leads elsewhere", patterns: "pypi.test", qname: "pypi.test",
			rrs: []string{"pypi.test. 60 IN CNAME some.cdn.test.", "some.cdn.test. 60 IN A 198.18.1.4"}, allowed: true, learned: []string{"198.18.1.4"}},
		{name: "chain touching no allowed name", patterns: "allowed.test", qname: "a.test",
			rrs: []string{"a.test. 60 IN CNAME b.test.", "b.test. 60 IN A 198.18.1.5"}, denied: []string{"198.18.1.5"}},
		{name: "wildcard", patterns: "*.cdn.test", qname: "x.cdn.test",
			rrs: []string{"x.cdn.test. 60 IN A 198.18.1.6"}, allowed: true, learned: []string{"198.18.1.6"}},
		{name: "wildcard excludes apex", patterns: "*.cdn.test", qname: "cdn.test",
			rrs: []string{"cdn.test. 60 IN A 198.18.1.7"}, denied: []string{"198.18.1.7"}},
		{name: "AAAA", patterns: "v6.test", qname: "v6.test",
			rrs: []string{"v6.test. 60 IN AAAA fd00:5::7"}, allowed: true, learned: []string{"fd00:5::7"}},
		{name: "port-limited name", patterns: "api.test:443", qname: "api.test",
			rrs: []string{"api.test. 60 IN A 198.18.1.8"}, allowed: true, learned: []string{"198.18.1.8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPolicy(t, tt.patterns, Config{})
			q, resp := answer(t, tt.qname, tt.rrs...)
			out := p.FilterResponse(q, resp)
			m := new(dns.Msg)
			if err := m.Unpack(out); err != nil {
				t.Fatal(err)
			}
			if tt.allowed {
				if !bytes.Equal(out, resp) {
					t.Errorf("allowed answer was changed: %v", m)
				}
			} else {
				if m.Rcode != dns.RcodeNameError || len(m.Answer) != 0 {
					t.Errorf("blocked answer: rcode %s with %d records, want NXDOMAIN and none", dns.RcodeToString[m.Rcode], len(m.Answer))
				}
				if ede := findEDE(m); ede == nil || ede.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(ede.ExtraText, tt.qname) {
					t.Errorf("blocked answer's EDE = %+v, want code 15 naming %s", ede, tt.qname)
				}
			}
			snap := p.snap.Load()
			for _, a := range tt.learned {
				if !snap.allowed(protoTCP, netip.MustParseAddr(a), 443) {
					t.Errorf("%s not allowed after the answer", a)
				}
			}
			for _, a := range tt.denied {
				if snap.allowed(protoTCP, netip.MustParseAddr(a), 443) {
					t.Errorf("%s allowed by a blocked answer", a)
				}
			}
		})
	}
}

func findEDE(m *dns.Msg) *dns.EDNS0_EDE {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

func TestAllowedPortsAndStatic(t *testing.T) {
	p, _ := newPolicy(t, "api.test:443,198.18.0.0/15:8000-8100,198.19.9.9", Config{})
	q, resp := answer(t, "api.test", "api.test. 60 IN A 198.20.0.1")
	p.FilterResponse(q, resp)
	snap := p.snap.Load()
	tests := []struct {
		proto uint8
		dst   string
		port  uint16
		want  bool
	}{
		{protoTCP, "198.20.0.1", 443, true},
		{protoUDP, "198.20.0.1", 443, true},
		{protoTCP, "198.20.0.1", 80, false},
		{protoICMP, "198.20.0.1", 0, false},
		{protoTCP, "198.18.4.4", 8000, true},
		{protoTCP, "198.18.4.4", 8101, false},
		{protoICMP, "198.19.9.9", 0, true},
		{protoUDP, "10.0.2.3", 53, true},
		{protoUDP, "10.0.2.2", 53, false},
		{protoTCP, "10.0.2.2", 80, false},
	}
	for _, tt := range tests {
		if got := snap.allowed(tt.proto, netip.MustParseAddr(tt.dst), tt.port); got != tt.want {
			t.Errorf("allowed(%d, %s, %d) = %v, want %v", tt.proto, tt.dst, tt.port, got, tt.want)
		}
	}
}

func TestTTLFloorAndExpiry(t *testing.T) {
	p, fw := newPolicy(t, "short.test", Config{MinTTL: -1})
	q, resp := answer(t, "short.test", "short.test. 1 IN A 198.18.2.1")
	p.FilterResponse(q, resp)
	list, err := fw.IPSet([]string{"list", "ts-allow4"})
	if err != nil || !strings.Contains(list, "198.18.2.1 timeout 1\n") {
		t.Fatalf("ipset list = %q, %v; want the address with timeout 1", list, err)
	}
	if got := p.lifetime(0); got != time.Second {
		t.Errorf("lifetime(0) without floor = %v, want 1s", got)
	}
	p2, _ := newPolicy(t, "x.test", Config{})
	if got := p2.lifetime(5); got != DefaultMinTTL {
		t.Errorf("lifetime(5) = %v, want the floor %v", got, DefaultMinTTL)
	}
	if got := p2.lifetime(3600); got != time.Hour {
		t.Errorf("lifetime(3600) = %v", got)
	}
}

func TestAllowDenyAtRuntime(t *testing.T) {
	p, fw := newPolicy(t, "a.test", Config{})
	b, _ := ParsePattern("198.18.7.0/24:22")
	if err := p.Allow(b); err != nil {
		t.Fatal(err)
	}
	if err := p.Allow(b); err != nil {
		t.Fatalf("allowing twice: %v", err)
	}
	if !strings.Contains(fw.Save(netfilter.IPv4, false), "-A TS-ALLOW -d 198.18.7.0/24 -p tcp -m tcp --dport 22 -j RETURN") {
		t.Fatal("runtime allow not in the chain")
	}
	if got := len(p.Patterns()); got != 2 {
		t.Fatalf("%d patterns, want 2", got)
	}
	q, resp := answer(t, "a.test", "a.test. 60 IN A 198.18.3.1")
	p.FilterResponse(q, resp)
	a, _ := ParsePattern("a.test")
	if err := p.Deny(a); err != nil {
		t.Fatal(err)
	}
	if p.snap.Load().allowed(protoTCP, netip.MustParseAddr("198.18.3.1"), 80) {
		t.Error("address learned through a denied pattern still allowed")
	}
	if err := p.Deny(a); err == nil || !strings.Contains(err.Error(), "not in the allowlist") {
		t.Errorf("denying an absent pattern: %v", err)
	}
	// One jump each, however often the chain was rebuilt.
	if n := strings.Count(fw.Save(netfilter.IPv4, false), "-j TS-ALLOW\n"); n != 2 {
		t.Errorf("%d jumps to TS-ALLOW, want 2", n)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditLines(t *testing.T) {
	var audit syncBuf
	p, _ := newPolicy(t, "allowed.test", Config{Audit: &audit})
	q, resp := answer(t, "allowed.test", "allowed.test. 60 IN A 198.18.1.1")
	p.FilterResponse(q, resp)
	q, resp = answer(t, "blocked.test", "blocked.test. 60 IN A 198.18.1.2")
	p.FilterResponse(q, resp)
	p.Close()
	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit has %d lines, want 2:\n%s", len(lines), audit.String())
	}
	want := []Decision{{Proto: "dns", Name: "allowed.test", Verdict: Allow}, {Proto: "dns", Name: "blocked.test", Verdict: Deny}}
	for i, l := range lines {
		var d Decision
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, l)
		}
		if d.Proto != want[i].Proto || d.Name != want[i].Name || d.Verdict != want[i].Verdict || d.Time.IsZero() {
			t.Errorf("line %d = %+v, want %+v", i, d, want[i])
		}
	}
}

func TestMalformedUpstreamAnswerIsRefused(t *testing.T) {
	p, _ := newPolicy(t, "allowed.test", Config{})
	q, _ := answer(t, "allowed.test")
	out := p.FilterResponse(q, []byte{1, 2, 3})
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("reply to a malformed upstream answer: %v %v", m, err)
	}
}
