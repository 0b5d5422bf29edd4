package netfilter

import (
	"fmt"
	"strings"
)

// Ports is an optional, optionally inverted port range for --sport and
// --dport.
type Ports struct {
	Set    bool
	Range  PortRange
	Invert bool
}

func (p Ports) ok(port uint16) bool { return !p.Set || p.Range.contains(port) != p.Invert }

// list is the -L text of p for protocol proto; like iptables, it omits
// the whole range 0:65535 (which matches every port) unless inverted.
func (p Ports) list(name, proto string, numeric bool) string {
	if !p.Set || p.Range == (PortRange{0, 65535}) && !p.Invert {
		return ""
	}
	if p.Range.Lo == p.Range.Hi {
		return fmt.Sprintf(" %s:%s%s", name, bang(p.Invert), portName(p.Range.Lo, proto, numeric))
	}
	return fmt.Sprintf(" %ss:%s%s:%s", name, bang(p.Invert), portName(p.Range.Lo, proto, numeric), portName(p.Range.Hi, proto, numeric))
}

// TCPFlags is --tcp-flags MASK COMP (or --syn): the flags in Mask must
// equal those in Comp.
type TCPFlags struct {
	Set        bool
	Mask, Comp uint8
	Invert     bool
}

var tcpFlagNames = []struct {
	bit  uint8
	name string
}{
	{TCPFin, "FIN"}, {TCPSyn, "SYN"}, {TCPRst, "RST"}, {TCPPsh, "PSH"},
	{TCPAck, "ACK"}, {TCPUrg, "URG"},
}

func tcpFlagsString(f uint8) string {
	if f == 0 {
		return "NONE"
	}
	var names []string
	for _, n := range tcpFlagNames {
		if f&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

func parseTCPFlags(s string) (uint8, error) {
	var f uint8
	for _, n := range strings.Split(s, ",") {
		switch strings.ToUpper(n) {
		case "ALL":
			// ALL is the six classic flags, as in libxt_tcp.
			f = 0x3f
		case "NONE":
		default:
			found := false
			for _, fn := range tcpFlagNames {
				if strings.EqualFold(n, fn.name) {
					f |= fn.bit
					found = true
				}
			}
			if !found {
				return 0, fmt.Errorf("unknown TCP flag %q", n)
			}
		}
	}
	return f, nil
}

// TCP is the tcp match (-p tcp --sport/--dport/--tcp-flags/--syn).
type TCP struct {
	SrcPorts, DstPorts Ports
	Flags              TCPFlags
}

// Name implements Match.
func (*TCP) Name() string { return "tcp" }

// save returns the option as iptables-save prints it: nothing for the
// full range 0:65535, negated or not (libxt_tcp and libxt_udp print only
// a narrower range; negated, the full range matches nothing).
func (p Ports) save(opt string) []string {
	if !p.Set || p.Range == (PortRange{0, 65535}) {
		return nil
	}
	return withBang(p.Invert, opt, p.Range.String())
}

func (m *TCP) saveArgs(Family) []string {
	var a []string
	a = append(a, m.SrcPorts.save("--sport")...)
	a = append(a, m.DstPorts.save("--dport")...)
	if m.Flags.Set {
		a = append(a, withBang(m.Flags.Invert, "--tcp-flags", tcpFlagsString(m.Flags.Mask), tcpFlagsString(m.Flags.Comp))...)
	}
	return a
}

func (m *TCP) listInfo(_ Family, numeric bool) string {
	s := "tcp" + m.SrcPorts.list("spt", "tcp", numeric) + m.DstPorts.list("dpt", "tcp", numeric)
	if m.Flags.Set {
		if numeric {
			s += fmt.Sprintf(" flags:%s0x%02X/0x%02X", bang(m.Flags.Invert), m.Flags.Mask, m.Flags.Comp)
		} else {
			s += fmt.Sprintf(" flags:%s%s/%s", bang(m.Flags.Invert), tcpFlagsString(m.Flags.Mask), tcpFlagsString(m.Flags.Comp))
		}
	}
	return s
}

func (m *TCP) check(r *Rule, _ Family) error { return needProto(r, "tcp", 6) }

func (m *TCP) matches(p *Packet) bool {
	if !p.HasTransport || p.Protocol != 6 {
		return false
	}
	if !m.SrcPorts.ok(p.SrcPort) || !m.DstPorts.ok(p.DstPort) {
		return false
	}
	if m.Flags.Set && (p.TCPFlags&m.Flags.Mask == m.Flags.Comp) == m.Flags.Invert {
		return false
	}
	return true
}

// UDP is the udp match (-p udp --sport/--dport).
type UDP struct {
	SrcPorts, DstPorts Ports
}

// Name implements Match.
func (*UDP) Name() string { return "udp" }

func (m *UDP) saveArgs(Family) []string {
	var a []string
	a = append(a, m.SrcPorts.save("--sport")...)
	a = append(a, m.DstPorts.save("--dport")...)
	return a
}

func (m *UDP) listInfo(_ Family, numeric bool) string {
	return "udp" + m.SrcPorts.list("spt", "udp", numeric) + m.DstPorts.list("dpt", "udp", numeric)
}

func (m *UDP) check(r *Rule, _ Family) error { return needProto(r, "udp", 17) }

func (m *UDP) matches(p *Packet) bool {
	return p.HasTransport && p.Protocol == 17 && m.SrcPorts.ok(p.SrcPort) && m.DstPorts.ok(p.DstPort)
}

// needProto checks that a protocol-specific match follows -p proto, as
// iptables requires.
func needProto(r *Rule, name string, num uint8) error {
	if r.Protocol != num || r.ProtocolInvert {
		return fmt.Errorf("match %q requires \"-p %s\"", name, name)
	}
	return nil
}

// MultiportDir selects which port -m multiport tests.
type MultiportDir uint8

const (
	// MultiportSrc is --sports.
	MultiportSrc MultiportDir = iota
	// MultiportDst is --dports.
	MultiportDst
	// MultiportBoth is --ports: source or destination.
	MultiportBoth
)

// Multiport is -m multiport --sports/--dports/--ports with up to 15
// ports (a range counts as two).
type Multiport struct {
	Dir    MultiportDir
	Ports  []PortRange
	Invert bool
	// proto is the rule's protocol when parsed from text; it chooses
	// the service names -L prints (tcp when unset).
	proto uint8
}

// Name implements Match.
func (*Multiport) Name() string { return "multiport" }

var multiportOpts = [...]string{"--sports", "--dports", "--ports"}

func (m *Multiport) portList(numeric bool) string {
	proto := protoServiceName(m.proto)
	if proto == "" {
		proto = "tcp"
	}
	parts := make([]string, len(m.Ports))
	for i, r := range m.Ports {
		if r.Lo == r.Hi {
			parts[i] = portName(r.Lo, proto, numeric)
		} else {
			parts[i] = portName(r.Lo, proto, numeric) + ":" + portName(r.Hi, proto, numeric)
		}
	}
	return strings.Join(parts, ",")
}

func (m *Multiport) saveArgs(Family) []string {
	return withBang(m.Invert, multiportOpts[m.Dir], m.portList(true))
}

func (m *Multiport) listInfo(_ Family, numeric bool) string {
	// libxt_multiport prints " multiport dports ", then " !" when
	// inverted, then the ports.
	if m.Invert {
		return fmt.Sprintf("multiport %s  !%s", multiportOpts[m.Dir][2:], m.portList(numeric))
	}
	return fmt.Sprintf("multiport %s %s", multiportOpts[m.Dir][2:], m.portList(numeric))
}

func (m *Multiport) check(r *Rule, _ Family) error {
	switch r.Protocol {
	case 6, 17, 33, 132, 136:
		if !r.ProtocolInvert {
			return nil
		}
	}
	return fmt.Errorf("multiport needs \"-p tcp\", \"-p udp\", \"-p udplite\", \"-p sctp\" or \"-p dccp\"")
}

func (m *Multiport) matches(p *Packet) bool {
	if !p.hasPorts() {
		return false
	}
	for _, r := range m.Ports {
		switch m.Dir {
		case MultiportSrc:
			if r.contains(p.SrcPort) {
				return !m.Invert
			}
		case MultiportDst:
			if r.contains(p.DstPort) {
				return !m.Invert
			}
		default:
			if r.contains(p.SrcPort) || r.contains(p.DstPort) {
				return !m.Invert
			}
		}
	}
	return m.Invert
}

func parseMultiport(s, proto string) ([]PortRange, error) {
	var out []PortRange
	slots := 0
	for _, part := range strings.Split(s, ",") {
		r, err := parsePortRange(part, proto)
		if err != nil {
			return nil, err
		}
		if strings.Contains(part, ":") {
			if r.Lo >= r.Hi {
				return nil, fmt.Errorf("invalid portrange %q specified (multiport wants min < max)", part)
			}
			slots += 2
		} else {
			slots++
		}
		out = append(out, r)
	}
	if slots > 15 {
		return nil, fmt.Errorf("too many ports specified in %q (at most 15, a range counts as two)", s)
	}
	return out, nil
}

// ports parses a --sport/--dport value into dst. libxt_tcp refuses a
// range with min > max; libxt_udp accepts it (it then matches nothing).
func (c *optCtx) ports(dst *Ports, udp bool) error {
	v, err := c.val()
	if err != nil {
		return err
	}
	pr, err := parsePortRange(v, "")
	if err != nil {
		return err
	}
	if pr.Lo > pr.Hi && !udp {
		return fmt.Errorf("invalid portrange %q (min > max)", v)
	}
	*dst = Ports{Set: true, Range: pr, Invert: c.inv}
	return nil
}

func (m *TCP) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--sport", "--source-port":
		return true, c.ports(&m.SrcPorts, false)
	case "--dport", "--destination-port":
		return true, c.ports(&m.DstPorts, false)
	case "--syn":
		if err := c.once("--tcp-flags"); err != nil {
			return true, err
		}
		m.Flags = TCPFlags{Set: true, Mask: TCPFin | TCPSyn | TCPRst | TCPAck, Comp: TCPSyn, Invert: c.inv}
		return true, nil
	case "--tcp-flags":
		mask, err := c.val()
		if err != nil {
			return true, err
		}
		comp, err := c.next()
		if err != nil {
			return true, err
		}
		mk, err := parseTCPFlags(mask)
		if err != nil {
			return true, err
		}
		cp, err := parseTCPFlags(comp)
		if err != nil {
			return true, err
		}
		m.Flags = TCPFlags{Set: true, Mask: mk, Comp: cp, Invert: c.inv}
		return true, nil
	}
	return false, nil
}

func (m *UDP) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--sport", "--source-port":
		return true, c.ports(&m.SrcPorts, true)
	case "--dport", "--destination-port":
		return true, c.ports(&m.DstPorts, true)
	}
	return false, nil
}

var multiportDirs = map[string]MultiportDir{"--sports": MultiportSrc, "--source-ports": MultiportSrc,
	"--dports": MultiportDst, "--destination-ports": MultiportDst, "--ports": MultiportBoth}

func (m *Multiport) parseOpt(c *optCtx) (bool, error) {
	d, ok := multiportDirs[c.opt]
	if !ok {
		return false, nil
	}
	if m.Ports != nil {
		return true, fmt.Errorf("multiport can only have one option")
	}
	// libxt_multiport checks the protocol when it parses the option, so
	// -p must come before it.
	switch r := &c.p.rule; {
	case r.ProtocolInvert, r.Protocol != 6 && r.Protocol != 17 && r.Protocol != 33 && r.Protocol != 132 && r.Protocol != 136:
		return true, fmt.Errorf("multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp' (before its option)")
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	if m.Ports, err = parseMultiport(v, protoServiceName(c.p.rule.Protocol)); err != nil {
		return true, err
	}
	m.proto = c.p.rule.Protocol
	m.Dir, m.Invert = d, c.inv
	return true, nil
}

func (m *Multiport) finish(*optCtx) error {
	if m.Ports == nil {
		return fmt.Errorf("multiport: one of --sports, --dports or --ports is required")
	}
	return nil
}

func (*TCP) optNames() []string {
	return []string{"--sport", "--source-port", "--dport", "--destination-port", "--syn", "--tcp-flags"}
}

func (*UDP) optNames() []string {
	return []string{"--sport", "--source-port", "--dport", "--destination-port"}
}

func (*Multiport) optNames() []string {
	return []string{"--sports", "--source-ports", "--dports", "--destination-ports", "--ports"}
}
