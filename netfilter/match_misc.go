package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tunstack/tunstack/netfilter/ipset"
)

type icmpName struct {
	name      string
	typ, code uint8
	codeRange bool // the name covers every code of the type
}

var icmp4Names = []icmpName{
	{"any", 0xff, 0, true},
	{"echo-reply", 0, 0, true}, {"pong", 0, 0, true},
	{"destination-unreachable", 3, 0, true},
	{"network-unreachable", 3, 0, false}, {"host-unreachable", 3, 1, false},
	{"protocol-unreachable", 3, 2, false}, {"port-unreachable", 3, 3, false},
	{"fragmentation-needed", 3, 4, false}, {"source-route-failed", 3, 5, false},
	{"network-unknown", 3, 6, false}, {"host-unknown", 3, 7, false},
	{"network-prohibited", 3, 9, false}, {"host-prohibited", 3, 10, false},
	{"TOS-network-unreachable", 3, 11, false}, {"TOS-host-unreachable", 3, 12, false},
	{"communication-prohibited", 3, 13, false}, {"host-precedence-violation", 3, 14, false},
	{"precedence-cutoff", 3, 15, false},
	{"source-quench", 4, 0, true},
	{"redirect", 5, 0, true}, {"network-redirect", 5, 0, false}, {"host-redirect", 5, 1, false},
	{"TOS-network-redirect", 5, 2, false}, {"TOS-host-redirect", 5, 3, false},
	{"echo-request", 8, 0, true}, {"ping", 8, 0, true},
	{"router-advertisement", 9, 0, true}, {"router-solicitation", 10, 0, true},
	{"time-exceeded", 11, 0, true}, {"ttl-exceeded", 11, 0, true},
	{"ttl-zero-during-transit", 11, 0, false}, {"ttl-zero-during-reassembly", 11, 1, false},
	{"parameter-problem", 12, 0, true}, {"ip-header-bad", 12, 0, false}, {"required-option-missing", 12, 1, false},
	{"timestamp-request", 13, 0, true}, {"timestamp-reply", 14, 0, true},
	{"address-mask-request", 17, 0, true}, {"address-mask-reply", 18, 0, true},
}

var icmp6Names = []icmpName{
	{"destination-unreachable", 1, 0, true},
	{"no-route", 1, 0, false}, {"communication-prohibited", 1, 1, false},
	{"beyond-scope", 1, 2, false}, {"address-unreachable", 1, 3, false},
	{"port-unreachable", 1, 4, false}, {"failed-policy", 1, 5, false}, {"reject-route", 1, 6, false},
	{"packet-too-big", 2, 0, true},
	{"time-exceeded", 3, 0, true}, {"ttl-exceeded", 3, 0, true},
	{"ttl-zero-during-transit", 3, 0, false}, {"ttl-zero-during-reassembly", 3, 1, false},
	{"parameter-problem", 4, 0, true}, {"bad-header", 4, 0, false},
	{"unknown-header-type", 4, 1, false}, {"unknown-option", 4, 2, false},
	{"echo-request", 128, 0, true}, {"ping", 128, 0, true},
	{"echo-reply", 129, 0, true}, {"pong", 129, 0, true},
	{"router-solicitation", 133, 0, true}, {"router-advertisement", 134, 0, true},
	{"neighbour-solicitation", 135, 0, true}, {"neighbor-solicitation", 135, 0, true},
	{"neighbour-advertisement", 136, 0, true}, {"neighbor-advertisement", 136, 0, true},
	{"redirect", 137, 0, true},
}

// ICMP is -m icmp --icmp-type (IPv4) or -m icmp6 --icmpv6-type (IPv6).
// Type 0xff with AnyCode is "any".
type ICMP struct {
	V6      bool
	Type    uint8
	Code    uint8
	AnyCode bool
	Invert  bool
}

// Name implements Match.
func (m *ICMP) Name() string {
	if m.V6 {
		return "icmp6"
	}
	return "icmp"
}

func parseICMPType(s string, v6 bool) (*ICMP, error) {
	names := icmp4Names
	opt := "--icmp-type"
	if v6 {
		names, opt = icmp6Names, "--icmpv6-type"
	}
	for _, n := range names {
		if n.name == s {
			return &ICMP{V6: v6, Type: n.typ, Code: n.code, AnyCode: n.codeRange}, nil
		}
	}
	ts, cs, hasCode := strings.Cut(s, "/")
	t, err := strconv.ParseUint(ts, 10, 8)
	if err != nil {
		return nil, fmt.Errorf("invalid ICMP type %q for %s", s, opt)
	}
	m := &ICMP{V6: v6, Type: uint8(t), AnyCode: !hasCode}
	if hasCode {
		c, err := strconv.ParseUint(cs, 10, 8)
		if err != nil {
			return nil, fmt.Errorf("invalid ICMP code %q for %s", s, opt)
		}
		m.Code = uint8(c)
	}
	return m, nil
}

func (m *ICMP) typeString() string {
	if m.Type == 0xff && m.AnyCode && !m.V6 {
		return "any"
	}
	if m.AnyCode {
		return strconv.Itoa(int(m.Type))
	}
	return fmt.Sprintf("%d/%d", m.Type, m.Code)
}

func (m *ICMP) saveArgs(Family) []string {
	if m.V6 {
		return withBang(m.Invert, "--icmpv6-type", m.typeString())
	}
	return withBang(m.Invert, "--icmp-type", m.typeString())
}

func (m *ICMP) listInfo(_ Family, numeric bool) string {
	names := icmp4Names
	label := "icmp"
	if m.V6 {
		names, label = icmp6Names, "ipv6-icmp"
	}
	if !numeric {
		for _, n := range names {
			if n.typ == m.Type && n.codeRange == m.AnyCode && (m.AnyCode || n.code == m.Code) {
				return fmt.Sprintf("%s %s%s", label, bang(m.Invert), n.name)
			}
		}
	}
	// libxt_icmp prints " icmp", then " !" when inverted, then "type N"
	// with no space before it.
	s := label + "type " + strconv.Itoa(int(m.Type))
	if m.Invert {
		s = label + " !type " + strconv.Itoa(int(m.Type))
	}
	if !m.AnyCode {
		s += fmt.Sprintf(" code %d", m.Code)
	}
	return s
}

func (m *ICMP) check(r *Rule, f Family) error {
	if m.V6 {
		if f != IPv6 {
			return fmt.Errorf("match \"icmp6\" is only valid for ip6tables")
		}
		return needProto(r, "icmpv6", 58)
	}
	if f != IPv4 {
		return fmt.Errorf("match \"icmp\" is only valid for iptables; use -p icmpv6 -m icmp6")
	}
	return needProto(r, "icmp", 1)
}

func (m *ICMP) matches(p *Packet) bool {
	want := uint8(1)
	if m.V6 {
		want = 58
	}
	if !p.HasTransport || p.Protocol != want {
		return false
	}
	ok := m.Type == 0xff && !m.V6 ||
		p.ICMPType == m.Type && (m.AnyCode || p.ICMPCode == m.Code)
	return ok != m.Invert
}

// limitScale is xt_limit's XT_LIMIT_SCALE: rates are kept as the average
// interval between packets in 1/10000 s.
const limitScale = 10000

var limitUnits = []struct {
	name string
	mult uint32
}{
	{"day", limitScale * 24 * 60 * 60},
	{"hour", limitScale * 60 * 60},
	{"min", limitScale * 60},
	{"sec", limitScale},
}

// Limit is -m limit --limit RATE --limit-burst N: a token bucket that
// matches at most RATE packets on average, with bursts up to N.
type Limit struct {
	// Avg is the average interval between packets in 1/10000 s, the
	// kernel's representation (so that printing round-trips).
	Avg   uint32
	Burst uint32

	mu sync.Mutex // guards tokens, last, primed (the bucket)
	// +checklocks:mu
	tokens int64 // in ns of credit
	// +checklocks:mu
	last int64 // ns since limitEpoch
	// +checklocks:mu
	primed bool
}

// NewLimit returns a Limit of n packets per unit ("sec", "min", "hour",
// "day") with the given burst.
func NewLimit(n uint32, unit string, burst uint32) (*Limit, error) {
	return parseLimit(fmt.Sprintf("%d/%s", n, unit), burst)
}

func parseLimit(s string, burst uint32) (*Limit, error) {
	num, unit, hasUnit := strings.Cut(s, "/")
	mult := uint32(1)
	if hasUnit {
		switch {
		case unit != "" && strings.HasPrefix("second", unit):
			mult = 1
		case unit != "" && strings.HasPrefix("minute", unit):
			mult = 60
		case unit != "" && strings.HasPrefix("hour", unit):
			mult = 60 * 60
		case unit != "" && strings.HasPrefix("day", unit):
			mult = 24 * 60 * 60
		default:
			return nil, fmt.Errorf("bad rate %q for --limit", s)
		}
	}
	r, err := strconv.ParseUint(num, 10, 32)
	if err != nil || r == 0 {
		return nil, fmt.Errorf("bad rate %q for --limit", s)
	}
	if r/uint64(mult) > limitScale {
		return nil, fmt.Errorf("rate %q too fast for --limit", s)
	}
	avg := uint64(limitScale) * uint64(mult) / r
	if avg == 0 {
		return nil, fmt.Errorf("rate %q too fast for --limit", s)
	}
	return &Limit{Avg: uint32(avg), Burst: burst}, nil
}

func (m *Limit) rate() string {
	i := 1
	for ; i < len(limitUnits); i++ {
		u := limitUnits[i].mult
		if m.Avg > u || u/m.Avg < u%m.Avg {
			break
		}
	}
	return fmt.Sprintf("%d/%s", limitUnits[i-1].mult/m.Avg, limitUnits[i-1].name)
}

// Name implements Match.
func (*Limit) Name() string { return "limit" }

func (m *Limit) saveArgs(Family) []string {
	a := []string{"--limit", m.rate()}
	if m.Burst != 5 {
		a = append(a, "--limit-burst", strconv.Itoa(int(m.Burst)))
	}
	return a
}

func (m *Limit) listInfo(Family, bool) string {
	return fmt.Sprintf("limit: avg %s burst %d", m.rate(), m.Burst)
}

// check refuses what the kernel's xt_limit refuses (ERANGE): a burst of
// 0, or a rate whose average times burst overflows its credit
// arithmetic (with HZ*CREDITS_PER_JIFFY = 32000, as on HZ=1000 and
// HZ=250 kernels). So "--limit 1/day" with the default burst of 5 is
// refused, as by Linux.
func (m *Limit) check(*Rule, Family) error {
	if m.Burst == 0 || user2credits(m.Avg*m.Burst) < user2credits(m.Avg) {
		return fmt.Errorf("limit: rate %s with burst %d overflows the kernel's counters, try lower (Numerical result out of range)", m.rate(), m.Burst)
	}
	return nil
}

// user2credits is xt_limit's conversion of a 1/10000 s interval to
// credits, including its 32-bit overflow behaviour.
func user2credits(user uint32) uint32 {
	const hzCPJ = 32000
	if user > 0xFFFFFFFF/hzCPJ {
		return (user / limitScale) * hzCPJ
	}
	return user * hzCPJ / limitScale
}

var limitEpoch = time.Now()

func (m *Limit) matches(*Packet) bool {
	cost := int64(m.Avg) * int64(time.Second/limitScale)
	now := int64(time.Since(limitEpoch))
	m.mu.Lock()
	defer m.mu.Unlock()
	max := cost * int64(m.Burst)
	if !m.primed {
		m.tokens, m.last, m.primed = max, now, true
	}
	m.tokens += now - m.last
	m.last = now
	if m.tokens > max {
		m.tokens = max
	}
	if m.tokens >= cost {
		m.tokens -= cost
		return true
	}
	return false
}

// Comment is -m comment --comment TEXT; it always matches.
type Comment struct {
	Text string
}

// Name implements Match.
func (*Comment) Name() string { return "comment" }

func (m *Comment) saveArgs(Family) []string { return []string{"--comment", saveString(m.Text)} }

func (m *Comment) listInfo(Family, bool) string { return "/* " + m.Text + " */" }

func (m *Comment) check(*Rule, Family) error { return nil }

func (m *Comment) matches(*Packet) bool { return true }

// AddrRange is an inclusive address range for -m iprange.
type AddrRange struct {
	Set      bool
	From, To netip.Addr
	Invert   bool
}

func (r AddrRange) ok(a netip.Addr) bool {
	if !r.Set {
		return true
	}
	in := a.Compare(r.From) >= 0 && a.Compare(r.To) <= 0
	return in != r.Invert
}

func parseAddrRange(s string, f Family) (AddrRange, error) {
	from, to, ok := strings.Cut(s, "-")
	a, err1 := netip.ParseAddr(from)
	b := a
	var err2 error
	if ok {
		b, err2 = netip.ParseAddr(to)
	}
	if err1 != nil || err2 != nil || a.Is4() != (f == IPv4) || b.Is4() != (f == IPv4) || a.Zone() != "" {
		return AddrRange{}, fmt.Errorf("bad IP address range %q", s)
	}
	return AddrRange{Set: true, From: a, To: b}, nil
}

// IPRange is -m iprange --src-range A-B --dst-range C-D.
type IPRange struct {
	Src, Dst AddrRange
}

// Name implements Match.
func (*IPRange) Name() string { return "iprange" }

func (m *IPRange) saveArgs(Family) []string {
	var a []string
	if m.Src.Set {
		a = append(a, withBang(m.Src.Invert, "--src-range", m.Src.From.String()+"-"+m.Src.To.String())...)
	}
	if m.Dst.Set {
		a = append(a, withBang(m.Dst.Invert, "--dst-range", m.Dst.From.String()+"-"+m.Dst.To.String())...)
	}
	return a
}

func (m *IPRange) listInfo(Family, bool) string {
	var parts []string
	if m.Src.Set {
		parts = append(parts, fmt.Sprintf("source IP range %s%s-%s", map[bool]string{true: "! "}[m.Src.Invert], m.Src.From, m.Src.To))
	}
	if m.Dst.Set {
		parts = append(parts, fmt.Sprintf("destination IP range %s%s-%s", map[bool]string{true: "! "}[m.Dst.Invert], m.Dst.From, m.Dst.To))
	}
	return strings.Join(parts, " ")
}

func (m *IPRange) check(*Rule, Family) error {
	if !m.Src.Set && !m.Dst.Set {
		return fmt.Errorf("iprange match: option \"--src-range\" or \"--dst-range\" must be specified")
	}
	return nil
}

func (m *IPRange) matches(p *Packet) bool { return m.Src.ok(p.Src) && m.Dst.ok(p.Dst) }

// SetMatch is -m set --match-set NAME src|dst: the packet's source or
// destination address is in the ipset NAME.
type SetMatch struct {
	SetName string
	// Dst selects the destination address (flag "dst"); otherwise the
	// source.
	Dst    bool
	Invert bool

	set *ipset.Set
	// dirs are the directions as given ("src,dst"): the kernel keeps
	// all (one per dimension of the set) and iptables prints them.
	dirs string
}

// Name implements Match.
func (*SetMatch) Name() string { return "set" }

func (m *SetMatch) dir() string {
	if m.dirs != "" {
		return m.dirs
	}
	if m.Dst {
		return "dst"
	}
	return "src"
}

func (m *SetMatch) saveArgs(Family) []string {
	return withBang(m.Invert, "--match-set", m.SetName, m.dir())
}

func (m *SetMatch) listInfo(Family, bool) string {
	return fmt.Sprintf("%smatch-set %s %s", map[bool]string{true: "! "}[m.Invert], m.SetName, m.dir())
}

func (m *SetMatch) check(*Rule, Family) error { return nil }

func (m *SetMatch) matches(p *Packet) bool {
	a := p.Src
	if m.Dst {
		a = p.Dst
	}
	in := m.set != nil && m.set.Contains(a)
	return in != m.Invert
}

func (m *ICMP) parseOpt(c *optCtx) (bool, error) {
	if (m.V6 || c.opt != "--icmp-type") && (!m.V6 || c.opt != "--icmpv6-type") {
		return false, nil
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	n, err := parseICMPType(v, m.V6)
	if err != nil {
		return true, err
	}
	*m = *n
	m.Invert = c.inv
	return true, nil
}

func (m *Limit) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--limit":
		if err := c.noInv(); err != nil {
			return true, err
		}
		v, err := c.val()
		if err != nil {
			return true, err
		}
		l, err := parseLimit(v, m.Burst)
		if err != nil {
			return true, err
		}
		m.Avg = l.Avg
		return true, nil
	case "--limit-burst":
		if err := c.noInv(); err != nil {
			return true, err
		}
		v, err := c.val()
		if err != nil {
			return true, err
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n > 10000 {
			return true, fmt.Errorf("bad --limit-burst %q (0 to 10000)", v)
		}
		m.Burst = uint32(n)
		return true, nil
	}
	return false, nil
}

func (m *Comment) parseOpt(c *optCtx) (bool, error) {
	if c.opt != "--comment" {
		return false, nil
	}
	if err := c.noInv(); err != nil {
		return true, err
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	// iptables truncates to the kernel's 255 bytes.
	if len(v) > 255 {
		v = v[:255]
	}
	m.Text = v
	return true, nil
}

func (m *Comment) finish(c *optCtx) error {
	if !c.seen("--comment") {
		return fmt.Errorf("comment: option --comment must be specified")
	}
	return nil
}

func (m *IPRange) parseOpt(c *optCtx) (bool, error) {
	if c.opt != "--src-range" && c.opt != "--dst-range" {
		return false, nil
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	ar, err := parseAddrRange(v, c.fam())
	if err != nil {
		return true, err
	}
	ar.Invert = c.inv
	if c.opt == "--src-range" {
		m.Src = ar
	} else {
		m.Dst = ar
	}
	return true, nil
}

func (m *SetMatch) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--match-set", "--set":
	case "--return-nomatch", "--update-counters", "--update-subcounters", "--packets-eq", "--packets-lt",
		"--packets-gt", "--bytes-eq", "--bytes-lt", "--bytes-gt":
		return true, fmt.Errorf("set: option %s is not supported: tunstack's sets keep no per-entry counters or nomatch entries", c.opt)
	default:
		return false, nil
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	dirs, err := c.next()
	if err != nil {
		return true, err
	}
	m.SetName, m.Invert, m.dirs = v, c.inv, dirs
	if n := strings.Count(dirs, ",") + 1; n > 6 {
		return true, fmt.Errorf("--match-set %s: too many directions %q (at most 6)", v, dirs)
	}
	for i, d := range strings.Split(dirs, ",") {
		if d != "src" && d != "dst" {
			return true, fmt.Errorf("--match-set %s: bad direction %q (want src or dst)", v, d)
		}
		if i == 0 {
			m.Dst = d == "dst"
		}
	}
	if c.p.sets == nil {
		return true, nil
	}
	s := c.p.sets(v)
	if s == nil {
		return true, fmt.Errorf("set %q doesn't exist", v)
	}
	if (s.Family() == ipset.Inet6) != (c.fam() == IPv6) {
		return true, fmt.Errorf("set %q has family %s, not usable from %s", v, s.Family(), c.fam())
	}
	m.set = s
	return true, nil
}

func (m *SetMatch) finish(*optCtx) error {
	if m.SetName == "" {
		return fmt.Errorf("set: option --match-set must be specified")
	}
	return nil
}

func (*Limit) optNames() []string { return []string{"--limit", "--limit-burst"} }

func (*Comment) optNames() []string { return []string{"--comment"} }

func (*IPRange) optNames() []string { return []string{"--src-range", "--dst-range"} }

func (*SetMatch) optNames() []string { return []string{"--match-set", "--set"} }

func (m *ICMP) optNames() []string {
	if m.V6 {
		return []string{"--icmpv6-type"}
	}
	return []string{"--icmp-type"}
}
