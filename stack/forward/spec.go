package forward

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Spec is one forward: a host port (or unix socket path) to a sandbox port.
type Spec struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// HostIP is the host address to listen on; invalid means all
	// addresses (IPv4 and IPv6).
	HostIP netip.Addr `json:"host_ip,omitzero"`
	// HostPort is the host port; unused with HostPath.
	HostPort uint16 `json:"host_port,omitempty"`
	// HostPath is a unix socket path to listen on instead of a port.
	HostPath string `json:"host_path,omitempty"`
	// SandboxPort is the port in the sandbox.
	SandboxPort uint16 `json:"sandbox_port"`
}

// String formats s the way ParseSpec reads it; it is also the forward's ID.
func (s Spec) String() string {
	var b strings.Builder
	switch {
	case s.HostPath != "":
		b.WriteString(s.HostPath)
	case s.HostIP.IsValid():
		b.WriteString(netip.AddrPortFrom(s.HostIP, s.HostPort).String())
	default:
		b.WriteString(strconv.Itoa(int(s.HostPort)))
	}
	fmt.Fprintf(&b, ":%d/%s", s.SandboxPort, s.Proto)
	return b.String()
}

// ParseSpec reads [HOSTIP:]HOSTPORT:SANDBOXPORT[/tcp|/udp], the range form
// [HOSTIP:]LO-HI:LO-HI (both ranges the same length), or
// /HOST/PATH.sock:SANDBOXPORT[/tcp]. An IPv6 HOSTIP is written in brackets.
func ParseSpec(s string) ([]Spec, error) {
	orig := s
	bad := func(why string, a ...any) ([]Spec, error) {
		return nil, fmt.Errorf("forward %q: %s", orig, fmt.Sprintf(why, a...))
	}
	proto := "tcp"
	if i := strings.LastIndexByte(s, '/'); i >= 0 && !strings.Contains(s[i:], ":") {
		proto = s[i+1:]
		s = s[:i]
		if proto != "tcp" && proto != "udp" {
			return bad("protocol %q: want tcp or udp", proto)
		}
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return bad("want [HOSTIP:]HOSTPORT:SANDBOXPORT[/tcp|/udp]")
	}
	host, sbox := s[:i], s[i+1:]
	slo, shi, err := parseRange(sbox)
	if err != nil {
		return bad("sandbox port: %v", err)
	}
	if strings.HasPrefix(host, "/") {
		if proto != "tcp" {
			return bad("a unix socket forward is a stream (tcp) forward")
		}
		if slo != shi {
			return bad("a unix socket forwards to one port, not a range")
		}
		return []Spec{{Proto: proto, HostPath: host, SandboxPort: slo}}, nil
	}
	var ip netip.Addr
	hostPort := host
	if j := strings.LastIndexByte(host, ':'); j >= 0 {
		ipStr := strings.TrimSuffix(strings.TrimPrefix(host[:j], "["), "]")
		if ip, err = netip.ParseAddr(ipStr); err != nil {
			return bad("host address %q: %v", host[:j], err)
		}
		if ip.Zone() != "" {
			return bad("host address %q: zones are not supported", host[:j])
		}
		ip = ip.Unmap()
		hostPort = host[j+1:]
	}
	hlo, hhi, err := parseRange(hostPort)
	if err != nil {
		return bad("host port: %v", err)
	}
	if hhi-hlo != shi-slo {
		return bad("host range %d-%d and sandbox range %d-%d differ in length", hlo, hhi, slo, shi)
	}
	var out []Spec
	for k := 0; k <= int(hhi-hlo); k++ {
		out = append(out, Spec{Proto: proto, HostIP: ip, HostPort: hlo + uint16(k), SandboxPort: slo + uint16(k)})
	}
	return out, nil
}

func parseRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePort(b); err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("range %q ends before it starts", s)
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}
