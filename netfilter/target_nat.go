package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NATRange is the --to-destination/--to-source argument:
// [ADDR[-ADDR]][:PORT[-PORT]]. Unset parts keep the packet's value.
//
// gVisor's NAT maps to one address and port, so tunstack refuses a
// range of more than one address or port (checkSingle) rather than use
// only its first (documented in doc.go).
type NATRange struct {
	From, To netip.Addr
	PortLo   uint16
	PortHi   uint16
}

func (r NATRange) hasPorts() bool { return r.PortLo != 0 || r.PortHi != 0 }

// checkSingle refuses a range of more than one address or port: Linux
// spreads connections over the range (by a hash of the addresses, and
// to another port when the first is taken), and tunstack, whose NAT is
// gVisor's, could only ever use the first.
func (r NATRange) checkSingle(name string) error {
	if r.From != r.To {
		return fmt.Errorf("%s to the address range %s-%s is not supported: tunstack's NAT maps to one address; give one", name, r.From, r.To)
	}
	if r.PortHi != r.PortLo {
		return fmt.Errorf("%s to the port range %d-%d is not supported: tunstack's NAT maps to one port; give one", name, r.PortLo, r.PortHi)
	}
	return nil
}

// checkSinglePort is checkSingle for --to-ports.
func checkSinglePort(name string, lo, hi uint16) error {
	if lo != hi {
		return fmt.Errorf("%s --to-ports %d-%d is not supported: tunstack's NAT maps to one port; give one", name, lo, hi)
	}
	return nil
}

func (r NATRange) String() string {
	var b strings.Builder
	v6 := r.From.Is6()
	if r.From.IsValid() {
		if v6 && r.hasPorts() {
			b.WriteString("[")
		}
		b.WriteString(r.From.String())
		if r.To != r.From {
			b.WriteString("-" + r.To.String())
		}
		if v6 && r.hasPorts() {
			b.WriteString("]")
		}
	}
	if r.hasPorts() {
		b.WriteString(":" + strconv.Itoa(int(r.PortLo)))
		if r.PortHi != r.PortLo {
			b.WriteString("-" + strconv.Itoa(int(r.PortHi)))
		}
	}
	return b.String()
}

func parseNATPorts(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(a, 10, 16)
	if err != nil || l == 0 {
		return 0, 0, fmt.Errorf("port %q not valid", s)
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(b, 10, 16); err != nil || h == 0 || h < l {
			return 0, 0, fmt.Errorf("port range %q not valid", s)
		}
	}
	return uint16(l), uint16(h), nil
}

// parseToPorts parses --to-ports P[-P], where, unlike NAT ranges, 0 is
// accepted (iptables does).
func parseToPorts(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("port %q not valid", s)
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(b, 10, 16); err != nil || h < l {
			return 0, 0, fmt.Errorf("port range %q not valid", s)
		}
	}
	return uint16(l), uint16(h), nil
}

func parseNATRange(s string, f Family) (NATRange, error) {
	var r NATRange
	addrPart, portPart := s, ""
	if f == IPv6 {
		if strings.HasPrefix(s, "[") {
			end := strings.Index(s, "]")
			if end < 0 {
				return r, fmt.Errorf("invalid address %q", s)
			}
			addrPart, portPart = s[1:end], strings.TrimPrefix(s[end+1:], ":")
			if s[end+1:] != "" && !strings.HasPrefix(s[end+1:], ":") {
				return r, fmt.Errorf("invalid address %q", s)
			}
		} else if strings.HasPrefix(s, ":") {
			addrPart, portPart = "", s[1:]
		}
	} else if a, p, ok := strings.Cut(s, ":"); ok {
		addrPart, portPart = a, p
		if p == "" {
			return r, fmt.Errorf("port range %q not valid", s)
		}
	}
	if addrPart != "" {
		a, b, isRange := strings.Cut(addrPart, "-")
		from, err := netip.ParseAddr(a)
		if err != nil || from.Is4() != (f == IPv4) || from.Zone() != "" {
			return r, fmt.Errorf("bad IP address %q", a)
		}
		to := from
		if isRange {
			if to, err = netip.ParseAddr(b); err != nil || to.Is4() != (f == IPv4) || to.Less(from) {
				return r, fmt.Errorf("bad IP address range %q", addrPart)
			}
		}
		r.From, r.To = from, to
	}
	if portPart != "" {
		lo, hi, err := parseNATPorts(portPart)
		if err != nil {
			return r, err
		}
		r.PortLo, r.PortHi = lo, hi
	}
	if !r.From.IsValid() && !r.hasPorts() {
		return r, fmt.Errorf("bad NAT range %q", s)
	}
	return r, nil
}

func needPortProto(r *Rule, name string) error {
	// As libxt_DNAT/SNAT/MASQUERADE/REDIRECT, -p icmp (1) counts as a
	// protocol with ports (its echo identifier), in both families, and
	// the protocol's negation is not looked at (! -p tcp passes).
	switch r.Protocol {
	case 1, 6, 17, 33, 132, 136:
		return nil
	}
	return param(fmt.Errorf("%s: need TCP, UDP, SCTP or DCCP with port specification", name))
}

// NATFlags are the --random, --random-fully and --persistent options;
// gVisor ignores them, tunstack keeps them for listing and saving.
type NATFlags struct {
	Random, RandomFully, Persistent bool
}

func (f NATFlags) args() []string {
	var a []string
	if f.Random {
		a = append(a, "--random")
	}
	if f.RandomFully {
		a = append(a, "--random-fully")
	}
	if f.Persistent {
		a = append(a, "--persistent")
	}
	return a
}

func (f NATFlags) list() string {
	s := ""
	if f.Random {
		s += " random"
	}
	if f.RandomFully {
		s += " random-fully"
	}
	if f.Persistent {
		s += " persistent"
	}
	return s
}

// DNAT is -j DNAT --to-destination RANGE (nat table, PREROUTING and
// OUTPUT).
type DNAT struct {
	To NATRange
	NATFlags
}

// Name implements Target.
func (*DNAT) Name() string { return "DNAT" }

func (t *DNAT) saveArgs(Family) []string {
	return append([]string{"--to-destination", t.To.String()}, t.args()...)
}

func (t *DNAT) listInfo(Family, bool) string { return "to:" + t.To.String() + t.list() }

func (t *DNAT) check(r *Rule, _ Family, tb TableID) error {
	if err := onlyTable("DNAT", tb, NAT); err != nil {
		return err
	}
	if err := t.To.checkSingle("DNAT"); err != nil {
		return err
	}
	if t.To.hasPorts() {
		return needPortProto(r, "DNAT")
	}
	return nil
}

func (*DNAT) hooks() uint8 { return Prerouting.bit() | Output.bit() }

// SNAT is -j SNAT --to-source RANGE (nat table, POSTROUTING and INPUT).
type SNAT struct {
	To NATRange
	NATFlags
}

// Name implements Target.
func (*SNAT) Name() string { return "SNAT" }

func (t *SNAT) saveArgs(Family) []string {
	return append([]string{"--to-source", t.To.String()}, t.args()...)
}

func (t *SNAT) listInfo(Family, bool) string { return "to:" + t.To.String() + t.list() }

func (t *SNAT) check(r *Rule, _ Family, tb TableID) error {
	if err := onlyTable("SNAT", tb, NAT); err != nil {
		return err
	}
	if err := t.To.checkSingle("SNAT"); err != nil {
		return err
	}
	if t.To.hasPorts() {
		return needPortProto(r, "SNAT")
	}
	return nil
}

func (*SNAT) hooks() uint8 { return Postrouting.bit() | Input.bit() }

// Masquerade is -j MASQUERADE [--to-ports P[-P]] (nat POSTROUTING).
type Masquerade struct {
	// Ports is set when --to-ports was given.
	Ports          bool
	PortLo, PortHi uint16
	NATFlags
}

// Name implements Target.
func (*Masquerade) Name() string { return "MASQUERADE" }

func portsString(lo, hi uint16) string {
	if lo == hi {
		return strconv.Itoa(int(lo))
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

func (t *Masquerade) saveArgs(Family) []string {
	var a []string
	if t.Ports {
		a = []string{"--to-ports", portsString(t.PortLo, t.PortHi)}
	}
	return append(a, t.args()...)
}

func (t *Masquerade) listInfo(Family, bool) string {
	s := ""
	if t.Ports {
		s = "masq ports: " + portsString(t.PortLo, t.PortHi)
	}
	return strings.TrimPrefix(s+t.list(), " ")
}

func (t *Masquerade) check(r *Rule, _ Family, tb TableID) error {
	if err := onlyTable("MASQUERADE", tb, NAT); err != nil {
		return err
	}
	if err := checkSinglePort("MASQUERADE", t.PortLo, t.PortHi); err != nil {
		return err
	}
	if t.Ports {
		return needPortProto(r, "MASQUERADE")
	}
	return nil
}

func (*Masquerade) hooks() uint8 { return Postrouting.bit() }

// Redirect is -j REDIRECT [--to-ports P[-P]] (nat PREROUTING and OUTPUT).
type Redirect struct {
	// Ports is set when --to-ports was given.
	Ports          bool
	PortLo, PortHi uint16
	NATFlags
}

// Name implements Target.
func (*Redirect) Name() string { return "REDIRECT" }

func (t *Redirect) saveArgs(Family) []string {
	var a []string
	if t.Ports {
		a = []string{"--to-ports", portsString(t.PortLo, t.PortHi)}
	}
	return append(a, t.args()...)
}

func (t *Redirect) listInfo(Family, bool) string {
	s := ""
	if t.Ports {
		s = "redir ports " + portsString(t.PortLo, t.PortHi)
	}
	return strings.TrimPrefix(s+t.list(), " ")
}

func (t *Redirect) check(r *Rule, _ Family, tb TableID) error {
	if err := onlyTable("REDIRECT", tb, NAT); err != nil {
		return err
	}
	if err := checkSinglePort("REDIRECT", t.PortLo, t.PortHi); err != nil {
		return err
	}
	if t.Ports {
		return needPortProto(r, "REDIRECT")
	}
	return nil
}

func (*Redirect) hooks() uint8 { return Prerouting.bit() | Output.bit() }

// natTo parses --to-destination/--to-source into to.
func natTo(c *optCtx, to *NATRange) (bool, error) {
	v, err := c.tval()
	if err != nil {
		return true, err
	}
	*to, err = parseNATRange(v, c.fam())
	return true, err
}

// natFlag sets a flag option (--random, ...) once.
func natFlag(c *optCtx, b *bool) (bool, error) {
	*b = true
	return true, c.flag()
}

func (t *DNAT) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--to-destination", "--to":
		return natTo(c, &t.To)
	case "--random":
		return natFlag(c, &t.Random)
	case "--persistent":
		return natFlag(c, &t.Persistent)
	}
	return false, nil
}

func (t *DNAT) finish(c *optCtx) error {
	if !t.To.From.IsValid() && !t.To.hasPorts() {
		return fmt.Errorf("DNAT: option --to-destination must be specified")
	}
	return portsFinish(c, "DNAT", t.To.hasPorts())
}

// portsFinish is the NAT targets' parameter check: ports need a
// protocol with ports.
func portsFinish(c *optCtx, name string, ports bool) error {
	if !ports {
		return nil
	}
	return needPortProto(&c.p.rule, name)
}

func (t *Masquerade) finish(c *optCtx) error { return portsFinish(c, "MASQUERADE", t.Ports) }

func (t *Redirect) finish(c *optCtx) error { return portsFinish(c, "REDIRECT", t.Ports) }

func (t *SNAT) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--to-source", "--to":
		return natTo(c, &t.To)
	case "--random":
		return natFlag(c, &t.Random)
	case "--random-fully":
		return natFlag(c, &t.RandomFully)
	case "--persistent":
		return natFlag(c, &t.Persistent)
	}
	return false, nil
}

func (t *SNAT) finish(c *optCtx) error {
	if !t.To.From.IsValid() && !t.To.hasPorts() {
		return fmt.Errorf("SNAT: option --to-source must be specified")
	}
	return portsFinish(c, "SNAT", t.To.hasPorts())
}

// toPortsOpt parses MASQUERADE's and REDIRECT's options.
func toPortsOpt(c *optCtx, lo, hi *uint16, set *bool, fl *NATFlags, fully bool) (bool, error) {
	switch c.opt {
	case "--to-ports", "--to-port":
		v, err := c.tval()
		if err != nil {
			return true, err
		}
		*lo, *hi, err = parseToPorts(v)
		*set = true
		return true, err
	case "--random":
		return natFlag(c, &fl.Random)
	case "--random-fully":
		if fully {
			return natFlag(c, &fl.RandomFully)
		}
	}
	return false, nil
}

func (t *Masquerade) parseOpt(c *optCtx) (bool, error) {
	return toPortsOpt(c, &t.PortLo, &t.PortHi, &t.Ports, &t.NATFlags, true)
}

func (t *Redirect) parseOpt(c *optCtx) (bool, error) {
	return toPortsOpt(c, &t.PortLo, &t.PortHi, &t.Ports, &t.NATFlags, false)
}

func (*DNAT) optNames() []string {
	return []string{"--to-destination", "--random", "--persistent"}
}

func (*SNAT) optNames() []string {
	return []string{"--to-source", "--random", "--random-fully", "--persistent"}
}

func (*Masquerade) optNames() []string {
	return []string{"--to-ports", "--random", "--random-fully"}
}

func (*Redirect) optNames() []string { return []string{"--to-ports", "--random"} }
