package capture

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Filter is a compiled tcpdump (pcap-filter) expression.
//
// Supported: the protocols ip, ip6, tcp, udp, icmp, icmp6 (alone or as
// qualifiers); host, net (CIDR, a partial address such as 10.0.2, or NET
// mask MASK), port and portrange, each with src, dst, "src or dst" or "src
// and dst"; and, or, not (&&, ||, !) and parentheses. As in tcpdump, a bare
// value repeats the previous primitive's qualifiers ("host a or b"); not
// binds tightest, and and or have equal precedence and associate to the
// left. Arithmetic relations too: proto[expr], proto[expr:size] (ip, ip6,
// tcp, udp, icmp, icmp6), len, numbers, + - * / % & | ^ << >>, the
// comparisons = == != < <= > >=, greater N, less N, and pcap's names
// (tcpflags, tcp-syn, icmptype, icmp-echo, ...): "tcp[tcpflags] &
// tcp-syn != 0", "ip[6:2] & 0x1fff = 0". As in BPF, a load beyond the
// packet rejects it.
type Filter struct {
	expr string
	root node
}

// String returns the expression the filter was parsed from.
func (f *Filter) String() string { return f.expr }

// Match reports whether the packet (an IPv4 or IPv6 datagram) matches.
func (f *Filter) Match(pkt []byte) bool {
	var d decoded
	d.decode(pkt)
	return f.match(&d)
}

func (f *Filter) match(d *decoded) bool { return f.root == nil || f.root.eval(d) == yes }

// tri is a three-valued verdict: a relation whose load falls beyond the
// packet is unknown, and a packet whose verdict stays unknown is
// rejected, as the BPF code libpcap generates (and optimises) does.
type tri uint8

const (
	no tri = iota
	yes
	unknown
)

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

// node is a filter expression tree.
type node interface{ eval(d *decoded) tri }

type andNode struct{ a, b node }
type orNode struct{ a, b node }
type notNode struct{ a node }

func (n andNode) eval(d *decoded) tri {
	a := n.a.eval(d)
	if a == no {
		return no
	}
	b := n.b.eval(d)
	if b == no {
		return no
	}
	if a == yes && b == yes {
		return yes
	}
	return unknown
}

func (n orNode) eval(d *decoded) tri {
	a := n.a.eval(d)
	if a == yes {
		return yes
	}
	b := n.b.eval(d)
	if b == yes {
		return yes
	}
	if a == no && b == no {
		return no
	}
	return unknown
}

func (n notNode) eval(d *decoded) tri {
	switch n.a.eval(d) {
	case yes:
		return no
	case no:
		return yes
	}
	return unknown
}

// protoNode matches a protocol: "ip", "ip6", or an IP protocol number
// within family (0 for either).
type protoNode struct {
	family int
	proto  int // -1: any (family only)
}

func (n protoNode) eval(d *decoded) tri {
	if d.version == 0 || (n.family != 0 && d.version != n.family) {
		return no
	}
	return triOf(n.proto < 0 || int(d.proto) == n.proto)
}

// dir selects the address or port a primitive tests.
type dir int

const (
	dirEither dir = iota // src or dst (the default)
	dirSrc
	dirDst
	dirBoth // src and dst
)

func (k dir) test(src, dst bool) bool {
	switch k {
	case dirSrc:
		return src
	case dirDst:
		return dst
	case dirBoth:
		return src && dst
	}
	return src || dst
}

type netNode struct {
	dir    dir
	prefix netip.Prefix
}

func (n netNode) eval(d *decoded) tri {
	if d.version == 0 {
		return no
	}
	return triOf(n.dir.test(n.prefix.Contains(d.src), n.prefix.Contains(d.dst)))
}

type portNode struct {
	dir    dir
	lo, hi uint16
	proto  int // protoTCP, protoUDP, or 0 for either (and SCTP)
}

func (n portNode) eval(d *decoded) tri {
	if !d.hasPorts || (n.proto != 0 && int(d.proto) != n.proto) {
		return no
	}
	in := func(p uint16) bool { return p >= n.lo && p <= n.hi }
	return triOf(n.dir.test(in(d.sport), in(d.dport)))
}

// ParseFilter compiles a tcpdump expression; "" matches every packet. An
// error names the token it could not use.
func ParseFilter(expr string) (*Filter, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	f := &Filter{expr: expr}
	if len(toks) == 0 {
		return f, nil
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if !p.done() {
		return nil, p.errorf("unexpected %q", p.peek())
	}
	f.root = root
	return f, nil
}

type token struct {
	text string
	pos  int
}

// twoCharOps are the operators of two characters, tried before one.
var twoCharOps = []string{"&&", "||", "<<", ">>", "<=", ">=", "==", "!="}

func lex(s string) ([]token, error) {
	var out []token
	depth := 0 // inside proto[...], where ':' separates the size
	for i := 0; i < len(s); {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\n' {
			i++
			continue
		}
		if op := twoCharOp(s[i:]); op != "" {
			out = append(out, token{op, i})
			i += 2
			continue
		}
		// '-' is an operator after a value or bracket, else part of a word
		// (tcp-syn, 1-100).
		afterValue := len(out) > 0 && (out[len(out)-1].text == "]" || out[len(out)-1].text == ")" || isWordToken(out[len(out)-1].text))
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		}
		if strings.IndexByte("()[]!&|^+*%<>=", c) >= 0 || (c == ':' && depth > 0) || (c == '-' && afterValue) || (c == '/' && depth > 0) {
			out = append(out, token{s[i : i+1], i})
			i++
			continue
		}
		j := i + 1
		for j < len(s) && strings.IndexByte(" \t\n()[]!&|^+*%<>=", s[j]) < 0 && !(depth > 0 && (s[j] == ':' || s[j] == '-' || s[j] == '/')) {
			j++
		}
		out = append(out, token{s[i:j], i})
		i = j
	}
	return out, nil
}

func twoCharOp(s string) string {
	for _, op := range twoCharOps {
		if strings.HasPrefix(s, op) {
			return op
		}
	}
	return ""
}

// isWordToken reports whether t is a word (a value or name), not an
// operator or bracket.
func isWordToken(t string) bool {
	return t != "" && strings.IndexByte("()[]!&|^+*%<>=:-/", t[0]) < 0
}

// quals are a primitive's qualifiers, remembered for bare values.
type quals struct {
	proto string // "", ip, ip6, tcp, udp, icmp, icmp6
	dir   dir
	kind  string // host, net, port, portrange
}

type parser struct {
	toks []token
	i    int
	last *quals
}

func (p *parser) done() bool { return p.i >= len(p.toks) }

func (p *parser) peek() string {
	if p.done() {
		return ""
	}
	return p.toks[p.i].text
}

func (p *parser) next() string {
	t := p.peek()
	p.i++
	return t
}

func (p *parser) errorf(format string, a ...any) error {
	where := "at end of expression"
	if !p.done() {
		where = fmt.Sprintf("at offset %d", p.toks[p.i].pos)
	}
	return fmt.Errorf("filter: %s %s", fmt.Sprintf(format, a...), where)
}

// parseOr parses a sequence joined by and/or, left to right with equal
// precedence, as pcap-filter does.
func (p *parser) parseOr() (node, error) {
	left, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for !p.done() {
		op := strings.ToLower(p.peek())
		if op != "and" && op != "&&" && op != "or" && op != "||" {
			return left, nil
		}
		p.next()
		right, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		if op == "and" || op == "&&" {
			left = andNode{left, right}
		} else {
			left = orNode{left, right}
		}
	}
	return left, nil
}

func (p *parser) parseUnary() (node, error) {
	switch t := strings.ToLower(p.peek()); t {
	case "":
		return nil, p.errorf("expression ends early")
	case "not", "!":
		p.next()
		n, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case "(":
		start := p.i
		p.next()
		n, err := p.parseOr()
		if err != nil {
			// Perhaps an arithmetic relation: "(tcp[12] & 0xf0) >> 2 > 5".
			p.i, p.last = start, nil
			if rel, rerr := p.parseRelation(); rerr == nil {
				return rel, nil
			}
			return nil, err
		}
		if p.peek() != ")" {
			if p.done() {
				return nil, p.errorf("missing %q", ")")
			}
			return nil, p.errorf("expected %q, found %q", ")", p.peek())
		}
		p.next()
		return n, nil
	case ")":
		return nil, p.errorf("unexpected %q", ")")
	}
	if p.startsRelation() {
		p.last = nil
		return p.parseRelation()
	}
	return p.parsePrimitive()
}

var protoNames = map[string]protoNode{
	"ip":    {4, -1},
	"ip6":   {6, -1},
	"tcp":   {0, protoTCP},
	"udp":   {0, protoUDP},
	"icmp":  {4, protoICMP},
	"icmp6": {6, protoICMPv6},
}

func isKeyword(t string) bool {
	switch t {
	case "and", "or", "not", "&&", "||", "!", "(", ")":
		return true
	}
	return false
}

// parsePrimitive parses [proto] [dir] [kind] VALUE, a protocol alone, or a
// bare value that repeats the previous qualifiers.
func (p *parser) parsePrimitive() (node, error) {
	start := p.i
	var q quals
	t := strings.ToLower(p.peek())
	if _, ok := protoNames[t]; ok {
		q.proto = t
		p.next()
		t = strings.ToLower(p.peek())
		if t == "" || isKeyword(t) {
			return protoNames[q.proto], nil
		}
	}
	sawDir := false
	if t == "src" || t == "dst" {
		sawDir = true
		q.dir = dirSrc
		if t == "dst" {
			q.dir = dirDst
		}
		p.next()
		if c := strings.ToLower(p.peek()); c == "or" || c == "and" {
			p.next()
			other := strings.ToLower(p.next())
			if (other != "src" && other != "dst") || other == t {
				p.i--
				return nil, p.errorf("after %q %q, expected %q, found %q", t, c, map[string]string{"src": "dst", "dst": "src"}[t], p.peek())
			}
			q.dir = dirEither
			if c == "and" {
				q.dir = dirBoth
			}
		}
		t = strings.ToLower(p.peek())
	}
	switch t {
	case "host", "net", "port", "portrange":
		q.kind = t
		p.next()
	default:
		if p.i == start && p.last != nil && !isKeyword(t) && t != "" {
			// A bare value: "host a or b" means "host a or host b".
			q = *p.last
		} else if q.proto != "" || sawDir {
			// "src 1.2.3.4", "tcp src 80": the kind follows from the value.
			q.kind = ""
		} else {
			return nil, p.errorf("unknown primitive %q", p.peek())
		}
	}
	if p.done() || isKeyword(strings.ToLower(p.peek())) {
		what := q.kind
		if what == "" {
			what = "qualifier"
		}
		return nil, p.errorf("%s: missing value", what)
	}
	tok := p.toks[p.i]
	p.next()
	n, err := p.value(&q, tok)
	if err != nil {
		return nil, err
	}
	p.last = &q
	return n, nil
}

// value builds the node for a primitive's value.
func (p *parser) value(q *quals, tok token) (node, error) {
	v := tok.text
	bad := func(format string, a ...any) error {
		return fmt.Errorf("filter: %s at offset %d", fmt.Sprintf(format, a...), tok.pos)
	}
	kind := q.kind
	if kind == "" {
		// Guess like pcap: a number is a port under tcp/udp, else a host.
		if _, err := strconv.Atoi(v); err == nil && (q.proto == "tcp" || q.proto == "udp") {
			kind = "port"
		} else {
			kind = "host"
		}
	}
	var n node
	switch kind {
	case "host", "net":
		pfx, err := parseNet(v, kind == "host", p)
		if err != nil {
			return nil, bad("%s %q: %v", kind, v, err)
		}
		n = netNode{q.dir, pfx}
		switch q.proto {
		case "tcp", "udp", "icmp", "icmp6", "ip", "ip6":
			pn := protoNames[q.proto]
			if (pn.family == 4 && !pfx.Addr().Is4()) || (pn.family == 6 && pfx.Addr().Is4()) {
				return nil, bad("%s %q does not go with %s", kind, v, q.proto)
			}
			n = andNode{pn, n}
		}
	case "port", "portrange":
		lo, hi, err := parsePorts(v, kind == "portrange", q.proto)
		if err != nil {
			return nil, bad("%s %q: %v", kind, v, err)
		}
		pn := portNode{dir: q.dir, lo: lo, hi: hi}
		switch q.proto {
		case "tcp":
			pn.proto = protoTCP
		case "udp":
			pn.proto = protoUDP
		case "", "ip", "ip6":
		default:
			return nil, bad("%s does not go with %s", kind, q.proto)
		}
		n = pn
		if q.proto == "ip" || q.proto == "ip6" {
			n = andNode{protoNames[q.proto], pn}
		}
	}
	return n, nil
}

// parseNet reads an address (host) or a network: CIDR, a partial dotted
// address ("10.0.2" is 10.0.2.0/24), or "ADDR mask MASK".
func parseNet(v string, host bool, p *parser) (netip.Prefix, error) {
	if host {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address (names are not resolved)")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if strings.EqualFold(p.peek(), "mask") {
		p.next()
		m, err := netip.ParseAddr(p.peek())
		if err != nil || !m.Is4() {
			return netip.Prefix{}, fmt.Errorf("mask %q is not an IPv4 netmask", p.peek())
		}
		p.next()
		ones, bits := net.IPMask(m.AsSlice()).Size()
		if bits == 0 {
			return netip.Prefix{}, fmt.Errorf("mask %s is not contiguous", m)
		}
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("not an IPv4 network")
		}
		return netip.PrefixFrom(a, ones).Masked(), nil
	}
	if pfx, err := netip.ParsePrefix(v); err == nil {
		if pfx.Masked() != pfx {
			return netip.Prefix{}, fmt.Errorf("non-network bits set in %s", v)
		}
		return pfx, nil
	}
	if a, err := netip.ParseAddr(v); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	parts := strings.Split(v, ".")
	if len(parts) >= 1 && len(parts) <= 3 {
		var b [4]byte
		for i, s := range parts {
			n, err := strconv.ParseUint(s, 10, 8)
			if err != nil {
				return netip.Prefix{}, fmt.Errorf("not a network")
			}
			b[i] = byte(n)
		}
		return netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts)), nil
	}
	return netip.Prefix{}, fmt.Errorf("not a network")
}

func parsePorts(v string, isRange bool, proto string) (uint16, uint16, error) {
	one := func(s string) (uint16, error) {
		if s == "" {
			return 0, fmt.Errorf("missing port")
		}
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			if n > 65535 {
				return 0, fmt.Errorf("port %d out of range", n)
			}
			return uint16(n), nil
		}
		network := proto
		if network != "udp" {
			network = "tcp"
		}
		n, err := net.LookupPort(network, s)
		if err != nil {
			return 0, fmt.Errorf("unknown port name %q", s)
		}
		return uint16(n), nil
	}
	if !isRange {
		p, err := one(v)
		return p, p, err
	}
	a, b, ok := strings.Cut(v, "-")
	if !ok {
		return 0, 0, fmt.Errorf("want LOW-HIGH")
	}
	lo, err := one(a)
	if err != nil {
		return 0, 0, err
	}
	hi, err := one(b)
	if err != nil {
		return 0, 0, err
	}
	if hi < lo {
		lo, hi = hi, lo // pcap accepts a reversed range
	}
	return lo, hi, nil
}
