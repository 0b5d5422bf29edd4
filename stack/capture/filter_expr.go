package capture

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// Arithmetic relations of pcap-filter: "proto[expr:size] & mask op value",
// "len >= N", "greater N", "less N", with pcap's named constants
// (tcpflags, tcp-syn, icmptype, icmp-echo, ...).

// arith is an unsigned 32-bit arithmetic expression over the packet.
type arith interface {
	// value computes the expression; ok is false when a load falls
	// outside the packet, which (as in BPF) rejects the packet outright.
	value(d *decoded) (v uint32, ok bool)
}

type constArith uint32

func (c constArith) value(*decoded) (uint32, bool) { return uint32(c), true }

type lenArith struct{}

func (lenArith) value(d *decoded) (uint32, bool) { return uint32(len(d.raw)), true }

// loadArith is proto[off:size]: size bytes, big-endian, at off from the
// start of proto's header.
type loadArith struct {
	proto string
	off   arith
	size  int
}

func (l loadArith) value(d *decoded) (uint32, bool) {
	off, ok := l.off.value(d)
	if !ok {
		return 0, false
	}
	base := l.base(d)
	end := uint64(off) + uint64(l.size)
	if base == nil || end > uint64(len(base)) {
		return 0, false
	}
	b := base[off:end]
	switch l.size {
	case 1:
		return uint32(b[0]), true
	case 2:
		return uint32(binary.BigEndian.Uint16(b)), true
	}
	return binary.BigEndian.Uint32(b), true
}

// base returns the bytes proto[] indexes, or nil when the packet is not
// of that protocol.
func (l loadArith) base(d *decoded) []byte {
	return protoBytes(l.proto, d)
}

// protoBytes returns the header of proto onwards, or nil when d is not
// such a packet. As in libpcap, transport protocols are IPv4 only and
// need the first fragment; icmp6[] needs ICMPv6 right after the IPv6
// header.
func protoBytes(proto string, d *decoded) []byte {
	switch proto {
	case "ip":
		if d.version == 4 {
			return d.raw
		}
	case "ip6":
		if d.version == 6 {
			return d.raw
		}
	case "tcp", "udp", "icmp":
		if d.version == 4 && !d.fragment && int(d.proto) == protoNames[proto].proto {
			return d.transport
		}
	case "icmp6":
		if d.version == 6 && len(d.raw) > 6 && d.raw[6] == protoICMPv6 {
			return d.raw[40:]
		}
	}
	return nil
}

type binArith struct {
	op   string
	a, b arith
}

func (n binArith) value(d *decoded) (uint32, bool) {
	a, ok := n.a.value(d)
	if !ok {
		return 0, false
	}
	b, ok := n.b.value(d)
	if !ok {
		return 0, false
	}
	switch n.op {
	case "+":
		return a + b, true
	case "-":
		return a - b, true
	case "*":
		return a * b, true
	case "/":
		if b == 0 {
			return 0, false
		}
		return a / b, true
	case "%":
		if b == 0 {
			return 0, false
		}
		return a % b, true
	case "&":
		return a & b, true
	case "|":
		return a | b, true
	case "^":
		return a ^ b, true
	case "<<":
		if b > 31 {
			return 0, true
		}
		return a << b, true
	case ">>":
		if b > 31 {
			return 0, true
		}
		return a >> b, true
	}
	return 0, false
}

type negArith struct{ a arith }

func (n negArith) value(d *decoded) (uint32, bool) {
	v, ok := n.a.value(d)
	return -v, ok
}

// relNode compares two expressions. protos are the protocols the
// expressions index: a packet of another protocol does not match.
type relNode struct {
	op     string
	a, b   arith
	protos []string
}

func (n relNode) eval(d *decoded) tri {
	for _, p := range n.protos {
		if protoBytes(p, d) == nil {
			return no
		}
	}
	a, ok := n.a.value(d)
	if !ok {
		return unknown
	}
	b, ok := n.b.value(d)
	if !ok {
		return unknown
	}
	switch n.op {
	case "=", "==":
		return triOf(a == b)
	case "!=":
		return triOf(a != b)
	case "<":
		return triOf(a < b)
	case "<=":
		return triOf(a <= b)
	case ">":
		return triOf(a > b)
	}
	return triOf(a >= b) // ">="
}

// namedConstants are pcap-filter's names for header offsets and values.
var namedConstants = map[string]uint32{
	"icmptype": 0, "icmpcode": 1, "icmp6type": 0, "icmp6code": 1, "tcpflags": 13,
	"tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08,
	"tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,
	"icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5,
	"icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
	"icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15,
	"icmp-ireqreply": 16, "icmp-maskreq": 17, "icmp-maskreply": 18,
	"icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
	"icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
	"icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
	"icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133, "icmp6-routeradvert": 134,
	"icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136, "icmp6-redirect": 137,
}

// startsRelation reports whether the tokens at p begin an arithmetic
// relation rather than a primitive.
func (p *parser) startsRelation() bool {
	t := strings.ToLower(p.peek())
	if t == "len" || t == "-" || t == "greater" || t == "less" {
		return true
	}
	_, isNum := parseNumber(t)
	_, isName := namedConstants[t]
	if isNum || isName {
		// "port 53 or 80": a bare value repeats the qualifiers; a number
		// starts a relation only when an operator follows it.
		return p.last == nil || p.i+1 < len(p.toks) && isOperator(p.toks[p.i+1].text)
	}
	if _, ok := protoNames[t]; ok && p.i+1 < len(p.toks) && p.toks[p.i+1].text == "[" {
		return true
	}
	return false
}

// parseRelation parses "expr relop expr", "greater N" or "less N".
func (p *parser) parseRelation() (node, error) {
	rel := &relNode{}
	switch strings.ToLower(p.peek()) {
	case "greater", "less":
		op := ">="
		if strings.EqualFold(p.next(), "less") {
			op = "<="
		}
		v, err := p.parseArith(rel, 0)
		if err != nil {
			return nil, err
		}
		rel.op, rel.a, rel.b = op, lenArith{}, v
		return *rel, nil
	}
	a, err := p.parseArith(rel, 0)
	if err != nil {
		return nil, err
	}
	op := p.peek()
	switch op {
	case "=", "==", "!=", "<", "<=", ">", ">=":
	default:
		if p.done() {
			return nil, p.errorf("expected a comparison (=, !=, <, >, <=, >=)")
		}
		return nil, p.errorf("expected a comparison (=, !=, <, >, <=, >=), found %q", op)
	}
	p.next()
	b, err := p.parseArith(rel, 0)
	if err != nil {
		return nil, err
	}
	rel.op, rel.a, rel.b = op, a, b
	return *rel, nil
}

// arithLevels are pcap's binary operators, loosest first.
var arithLevels = [][]string{{"|", "^"}, {"&"}, {"<<", ">>"}, {"+", "-"}, {"*", "/", "%"}}

func (p *parser) parseArith(rel *relNode, level int) (arith, error) {
	if level == len(arithLevels) {
		return p.parseArithTerm(rel)
	}
	left, err := p.parseArith(rel, level+1)
	if err != nil {
		return nil, err
	}
	for !p.done() && contains(arithLevels[level], p.peek()) {
		op := p.next()
		right, err := p.parseArith(rel, level+1)
		if err != nil {
			return nil, err
		}
		left = binArith{op, left, right}
	}
	return left, nil
}

// isOperator reports an arithmetic operator or a comparison.
func isOperator(t string) bool {
	switch t {
	case "=", "==", "!=", "<", "<=", ">", ">=":
		return true
	}
	for _, l := range arithLevels {
		if contains(l, t) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) parseArithTerm(rel *relNode) (arith, error) {
	if p.done() {
		return nil, p.errorf("expression ends early")
	}
	t := strings.ToLower(p.peek())
	switch {
	case t == "(":
		p.next()
		a, err := p.parseArith(rel, 0)
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, p.errorf("expected %q", ")")
		}
		p.next()
		return a, nil
	case t == "-":
		p.next()
		a, err := p.parseArithTerm(rel)
		if err != nil {
			return nil, err
		}
		return negArith{a}, nil
	case t == "len":
		p.next()
		return lenArith{}, nil
	}
	if v, ok := parseNumber(t); ok {
		p.next()
		return constArith(v), nil
	}
	if v, ok := namedConstants[t]; ok {
		p.next()
		return constArith(v), nil
	}
	if _, ok := protoNames[t]; ok && p.i+1 < len(p.toks) && p.toks[p.i+1].text == "[" {
		p.next()
		p.next()
		return p.parseLoad(rel, t)
	}
	return nil, p.errorf("unexpected %q in an arithmetic expression", p.peek())
}

// parseLoad parses the rest of proto[expr] or proto[expr:size].
func (p *parser) parseLoad(rel *relNode, proto string) (arith, error) {
	off, err := p.parseArith(rel, 0)
	if err != nil {
		return nil, err
	}
	size := 1
	if p.peek() == ":" {
		p.next()
		switch p.next() {
		case "1":
		case "2":
			size = 2
		case "4":
			size = 4
		default:
			p.i--
			return nil, p.errorf("data size must be 1, 2 or 4, not %q", p.peek())
		}
	}
	if p.peek() != "]" {
		return nil, p.errorf("expected %q", "]")
	}
	p.next()
	if !contains(rel.protos, proto) {
		rel.protos = append(rel.protos, proto)
	}
	return loadArith{proto: proto, off: off, size: size}, nil
}

// parseNumber reads a decimal, 0x hexadecimal or 0 octal number, as
// pcap-filter does.
func parseNumber(s string) (uint32, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, false
	}
	return uint32(v), true
}
