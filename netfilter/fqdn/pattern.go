package fqdn

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Kind is what a Pattern matches.
type Kind uint8

const (
	// Name matches one DNS name exactly.
	Name Kind = iota + 1
	// Wildcard matches every name below a domain, not the domain itself.
	Wildcard
	// Prefix matches destination addresses in a CIDR prefix (a single
	// address is a /32 or /128).
	Prefix
)

// Pattern is one allowlist entry.
type Pattern struct {
	Kind Kind
	// Domain is the name (Name) or the domain below which names match
	// (Wildcard), lower case, without the trailing dot.
	Domain string
	// Prefix is the destination network (Prefix).
	Prefix netip.Prefix
	// PortLo and PortHi bound the destination port; both zero means any
	// port (and any protocol, ICMP included). A port limit applies to
	// TCP and UDP.
	PortLo, PortHi uint16
}

// AnyPort reports whether the pattern allows every port.
func (p Pattern) AnyPort() bool { return p.PortLo == 0 && p.PortHi == 0 }

// String formats the pattern as ParsePattern reads it.
func (p Pattern) String() string {
	var host string
	switch p.Kind {
	case Name:
		host = p.Domain
	case Wildcard:
		host = "*." + p.Domain
	case Prefix:
		if p.Prefix.IsSingleIP() {
			host = p.Prefix.Addr().String()
		} else {
			host = p.Prefix.String()
		}
		if p.Prefix.Addr().Is6() && !p.AnyPort() {
			host = "[" + host + "]"
		}
	}
	switch {
	case p.AnyPort():
		return host
	case p.PortLo == p.PortHi:
		return host + ":" + strconv.Itoa(int(p.PortLo))
	}
	return fmt.Sprintf("%s:%d-%d", host, p.PortLo, p.PortHi)
}

// MatchName reports whether a DNS name (any case, with or without the
// trailing dot) matches a Name or Wildcard pattern.
func (p Pattern) MatchName(name string) bool {
	name = canonical(name)
	switch p.Kind {
	case Name:
		return name == p.Domain
	case Wildcard:
		return strings.HasSuffix(name, "."+p.Domain)
	}
	return false
}

// ParsePatterns parses a comma-separated list of patterns, as
// --allow-host takes it.
func ParsePatterns(s string) ([]Pattern, error) {
	var out []Pattern
	for _, f := range strings.Split(s, ",") {
		p, err := ParsePattern(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePattern parses one pattern: NAME, *.DOMAIN, ADDR or ADDR/LEN,
// each optionally followed by :PORT or :LO-HI (an IPv6 address or prefix
// with a port in brackets: [fd00::5]:80, [fd00::/64]:80-90).
func ParsePattern(s string) (Pattern, error) {
	host, ports, hasPorts, err := splitPorts(s)
	if err != nil {
		return Pattern{}, fmt.Errorf("allow-host pattern %q: %w", s, err)
	}
	p, err := parseHost(host)
	if err != nil {
		return Pattern{}, fmt.Errorf("allow-host pattern %q: %w", s, err)
	}
	if hasPorts {
		if p.PortLo, p.PortHi, err = parsePortRange(ports); err != nil {
			return Pattern{}, fmt.Errorf("allow-host pattern %q: %w", s, err)
		}
	}
	return p, nil
}

// splitPorts separates HOST from an optional :PORTS.
func splitPorts(s string) (host, ports string, hasPorts bool, err error) {
	if s == "" {
		return "", "", false, fmt.Errorf("empty pattern")
	}
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", false, fmt.Errorf("missing ]")
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			return host, "", false, nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", false, fmt.Errorf("unexpected %q after ]", rest)
		}
		return host, rest[1:], true, nil
	}
	// More than one colon without brackets: a bare IPv6 address or prefix.
	if strings.Count(s, ":") > 1 {
		return s, "", false, nil
	}
	host, ports, hasPorts = strings.Cut(s, ":")
	return host, ports, hasPorts, nil
}

func parsePortRange(s string) (lo, hi uint16, err error) {
	los, his, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(los); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(his); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("port range %s is reversed", s)
		}
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not between 1 and 65535", s)
	}
	return uint16(n), nil
}

func parseHost(h string) (Pattern, error) {
	if strings.Contains(h, "/") {
		pfx, err := netip.ParsePrefix(h)
		if err != nil || pfx.Addr().Zone() != "" {
			return Pattern{}, fmt.Errorf("%q is not an IP prefix", h)
		}
		return Pattern{Kind: Prefix, Prefix: pfx.Masked()}, nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return Pattern{}, fmt.Errorf("%q: zoned addresses are not allowed", h)
		}
		a = a.Unmap()
		return Pattern{Kind: Prefix, Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if strings.Contains(h, ":") {
		return Pattern{}, fmt.Errorf("%q is not an IP address", h)
	}
	kind := Name
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		kind, h = Wildcard, rest
	}
	name := canonical(h)
	if err := checkName(name); err != nil {
		return Pattern{}, err
	}
	return Pattern{Kind: kind, Domain: name}, nil
}

// canonical lower-cases a name and drops its trailing dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// checkName accepts host names as DNS carries them: labels of 1 to 63
// letters, digits, '-' or '_', not starting or ending with '-', at most
// 253 characters, and not all-numeric (which would be a mistyped address).
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > 253 {
		return fmt.Errorf("name longer than 253 characters")
	}
	numeric := true
	for _, l := range strings.Split(name, ".") {
		if l == "" {
			return fmt.Errorf("%q has an empty label", name)
		}
		if len(l) > 63 {
			return fmt.Errorf("%q has a label longer than 63 characters", name)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q: a label starts or ends with '-'", name)
		}
		for _, c := range l {
			isDigit := c >= '0' && c <= '9'
			if !isDigit {
				numeric = false
			}
			if !isDigit && (c < 'a' || c > 'z') && c != '-' && c != '_' {
				return fmt.Errorf("%q: character %q is not allowed in a name", name, c)
			}
		}
	}
	if numeric {
		return fmt.Errorf("%q is neither a valid IP address nor a name", name)
	}
	return nil
}
