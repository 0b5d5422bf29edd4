package netfilter

import (
	"fmt"
	"strconv"
	"strings"
)

// Match is an iptables match extension (-m NAME ...). The concrete types
// in this package (TCP, UDP, Multiport, Conntrack, ...) are the matches
// there are; Go programs that need a test no match expresses register a
// Hook instead.
type Match interface {
	// Name is the extension name as written after -m.
	Name() string
	// saveArgs returns the options in iptables-save's canonical form,
	// without the leading "-m NAME".
	saveArgs(f Family) []string
	// listInfo returns the text iptables -L prints for the match.
	listInfo(f Family, numeric bool) string
	// check reports rule-level errors, such as a port match without the
	// matching -p.
	check(r *Rule, f Family) error
	// matches tests a packet. It must not allocate.
	matches(p *Packet) bool
}

// PortRange is an inclusive range of ports. Lo == Hi is a single port.
type PortRange struct {
	Lo, Hi uint16
}

func (r PortRange) contains(p uint16) bool { return p >= r.Lo && p <= r.Hi }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d:%d", r.Lo, r.Hi)
}

// parsePort parses one port: a number 0-65535 or a service name of
// protocol proto ("tcp", "udp", ...), or of any protocol when proto is
// "" (libxt_tcp and libxt_udp look names up with getaddrinfo, which
// tries TCP, then UDP, then SCTP; multiport with getservbyname and the
// rule's protocol).
func parsePort(s, proto string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("invalid port/service %q specified", s)
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n > 65535 {
			return 0, fmt.Errorf("port %q out of range 0-65535", s)
		}
		return uint16(n), nil
	}
	protos := []string{proto}
	if proto == "" {
		protos = []string{"tcp", "udp", "sctp"}
	}
	for _, pr := range protos {
		if p, ok := services().byName[s+"/"+pr]; ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("invalid port/service %q specified", s)
}

// parsePortRange parses "P", "LO:HI", ":HI" or "LO:" as iptables does.
func parsePortRange(s, proto string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	if !isRange {
		p, err := parsePort(s, proto)
		return PortRange{p, p}, err
	}
	r := PortRange{0, 65535}
	var err error
	if lo != "" {
		if r.Lo, err = parsePort(lo, proto); err != nil {
			return r, err
		}
	}
	if hi != "" {
		if r.Hi, err = parsePort(hi, proto); err != nil {
			return r, err
		}
	}
	// iptables accepts min > max here (such a range matches nothing);
	// multiport refuses it.
	return r, nil
}

// portName is p as iptables -L prints it: the service's name for
// protocol proto, unless numeric or the port has none.
func portName(p uint16, proto string, numeric bool) string {
	if !numeric {
		if n, ok := services().byPort[strconv.Itoa(int(p))+"/"+proto]; ok {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

func bang(inv bool) string {
	if inv {
		return "!"
	}
	return ""
}

// withBang prefixes args with "!" when inv is set, the canonical
// position of negation in iptables-save output.
func withBang(inv bool, args ...string) []string {
	if inv {
		return append([]string{"!"}, args...)
	}
	return args
}

func hex(v uint32) string { return "0x" + strconv.FormatUint(uint64(v), 16) }

// parseUint32 parses a mark or mask: decimal, 0x hex or 0 octal.
func parseUint32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("bad value %q (want a 32-bit number)", s)
	}
	return uint32(n), nil
}

// parseValueMask parses "VALUE[/MASK]", the mask defaulting to all ones.
func parseValueMask(s string) (v, m uint32, err error) {
	vs, ms, hasMask := strings.Cut(s, "/")
	if v, err = parseUint32(vs); err != nil {
		return 0, 0, err
	}
	m = 0xffffffff
	if hasMask {
		if m, err = parseUint32(ms); err != nil {
			return 0, 0, err
		}
	}
	return v, m, nil
}
