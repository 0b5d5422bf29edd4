package netfilter

import (
	"fmt"
	"strings"
)

func parseCTStates(s string) (CTState, error) {
	var st CTState
	for _, n := range strings.Split(s, ",") {
		found := false
		for _, c := range ctStateNames {
			if strings.EqualFold(n, c.name) {
				st |= c.s
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("bad ctstate %q (want INVALID, NEW, RELATED, ESTABLISHED, UNTRACKED, SNAT or DNAT)", n)
		}
	}
	return st, nil
}

// Conntrack is -m conntrack --ctstate STATES.
type Conntrack struct {
	States CTState
	Invert bool
}

// Name implements Match.
func (*Conntrack) Name() string { return "conntrack" }

func (m *Conntrack) saveArgs(Family) []string {
	return withBang(m.Invert, "--ctstate", m.States.String())
}

func (m *Conntrack) listInfo(Family, bool) string {
	if m.Invert {
		return "! ctstate " + m.States.String()
	}
	return "ctstate " + m.States.String()
}

func (m *Conntrack) check(*Rule, Family) error { return nil }

func (m *Conntrack) matches(p *Packet) bool {
	st := p.CTState()
	if m.States&ctNAT != 0 {
		st |= natState(p)
	}
	return (st&m.States != 0) != m.Invert
}

// State is the older -m state --state STATES.
type State struct {
	States CTState
	Invert bool
}

// Name implements Match.
func (*State) Name() string { return "state" }

func (m *State) saveArgs(Family) []string { return withBang(m.Invert, "--state", m.States.String()) }

func (m *State) listInfo(Family, bool) string {
	if m.Invert {
		return "! state " + m.States.String()
	}
	return "state " + m.States.String()
}

func (m *State) check(*Rule, Family) error { return nil }

func (m *State) matches(p *Packet) bool { return (p.CTState()&m.States != 0) != m.Invert }

// MarkMatch is -m mark --mark VALUE[/MASK]: (mark & Mask) == Value.
type MarkMatch struct {
	Value, Mask uint32
	Invert      bool
}

// Name implements Match.
func (*MarkMatch) Name() string { return "mark" }

func markString(v, m uint32) string {
	if m == 0xffffffff {
		return hex(v)
	}
	return hex(v) + "/" + hex(m)
}

func (m *MarkMatch) saveArgs(Family) []string {
	return withBang(m.Invert, "--mark", markString(m.Value, m.Mask))
}

func (m *MarkMatch) listInfo(Family, bool) string {
	// libxt_mark prints " mark match", " !" and " VALUE".
	if m.Invert {
		return "mark match ! " + markString(m.Value, m.Mask)
	}
	return "mark match " + markString(m.Value, m.Mask)
}

func (m *MarkMatch) check(*Rule, Family) error { return nil }

func (m *MarkMatch) matches(p *Packet) bool { return (p.pkt.Mark&m.Mask == m.Value) != m.Invert }

// ConnmarkMatch is -m connmark --mark VALUE[/MASK], tested against the
// connection's mark (set by -j CONNMARK).
type ConnmarkMatch struct {
	Value, Mask uint32
	Invert      bool
}

// Name implements Match.
func (*ConnmarkMatch) Name() string { return "connmark" }

func (m *ConnmarkMatch) saveArgs(Family) []string {
	return withBang(m.Invert, "--mark", markString(m.Value, m.Mask))
}

func (m *ConnmarkMatch) listInfo(Family, bool) string {
	// libxt_connmark prints " connmark match ", "!" and " VALUE".
	return "connmark match " + bang(m.Invert) + " " + markString(m.Value, m.Mask)
}

func (m *ConnmarkMatch) check(*Rule, Family) error { return nil }

func (m *ConnmarkMatch) matches(p *Packet) bool {
	return (p.connmark()&m.Mask == m.Value) != m.Invert
}

func (m *Conntrack) parseOpt(c *optCtx) (bool, error) {
	if c.opt != "--ctstate" {
		return false, nil
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	st, err := parseCTStates(v)
	m.States, m.Invert = st, c.inv
	return true, err
}

func (m *Conntrack) finish(*optCtx) error {
	if m.States == 0 {
		return fmt.Errorf("conntrack: at least one option is required")
	}
	return nil
}

func (m *State) parseOpt(c *optCtx) (bool, error) {
	if c.opt != "--state" {
		return false, nil
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	st, err := parseCTStates(v)
	if err == nil && st&ctNAT != 0 {
		// -m state knows only the five real states.
		st, err = 0, fmt.Errorf("bad state %q (want INVALID, NEW, RELATED, ESTABLISHED or UNTRACKED)", v)
	}
	m.States, m.Invert = st, c.inv
	return true, err
}

func (m *State) finish(*optCtx) error {
	if m.States == 0 {
		return fmt.Errorf("state: option --state must be specified")
	}
	return nil
}

// markOpt parses "--mark VALUE[/MASK]", shared by -m mark and -m
// connmark.
func markOpt(c *optCtx, value, mask *uint32, invert *bool) (bool, error) {
	if c.opt != "--mark" {
		return false, nil
	}
	v, err := c.val()
	if err != nil {
		return true, err
	}
	*value, *mask, err = parseValueMask(v)
	*invert = c.inv
	return true, err
}

func markFinish(c *optCtx, name string) error {
	if !c.seen("--mark") {
		return fmt.Errorf("%s match: option --mark must be specified", name)
	}
	return nil
}

func (m *MarkMatch) parseOpt(c *optCtx) (bool, error) {
	return markOpt(c, &m.Value, &m.Mask, &m.Invert)
}
func (m *MarkMatch) finish(c *optCtx) error { return markFinish(c, "mark") }

func (m *ConnmarkMatch) parseOpt(c *optCtx) (bool, error) {
	return markOpt(c, &m.Value, &m.Mask, &m.Invert)
}
func (m *ConnmarkMatch) finish(c *optCtx) error { return markFinish(c, "connmark") }

func (*Conntrack) optNames() []string { return []string{"--ctstate"} }

func (*State) optNames() []string { return []string{"--state"} }

func (*MarkMatch) optNames() []string { return []string{"--mark"} }

func (*ConnmarkMatch) optNames() []string { return []string{"--mark"} }
