package netfilter

import (
	"fmt"
)

// maxDepth bounds nested jumps. The kernel has no fixed limit but its
// stack; tunstack's evaluator keeps a fixed-size stack so that packets
// never allocate.
const maxDepth = 32

// validateTable checks everything the kernel checks when a table is
// committed: jump targets exist, no loops, and each target is only
// reachable from hooks where it is valid (REJECT from INPUT, FORWARD and
// OUTPUT; DNAT from PREROUTING and OUTPUT; ...). These checks also keep
// every input away from gVisor's panics.
func validateTable(f Family, t *table) error {
	idx := map[string]int{}
	for i, c := range t.chains {
		idx[c.Name] = i
	}
	for _, c := range t.chains {
		for n, r := range c.Rules {
			if err := validateRule(f, t.id, r); err != nil {
				return fmt.Errorf("chain %s rule %d: %w", c.Name, n+1, err)
			}
			if name, ok := jumpName(r.Target); ok {
				i, exists := idx[name]
				if !exists {
					return param(fmt.Errorf("chain %s rule %d: target chain %q does not exist in table %s (couldn't load target)", c.Name, n+1, name, t.id))
				}
				if t.chains[i].Builtin {
					return fmt.Errorf("chain %s rule %d: cannot jump to built-in chain %q", c.Name, n+1, name)
				}
			}
		}
	}
	masks, err := hookMasks(t, idx)
	if err != nil {
		return err
	}
	for i, c := range t.chains {
		for n, r := range c.Rules {
			if n >= walked(c) {
				break // never reached: the kernel checks nothing here
			}
			if r.Target == nil {
				continue
			}
			if allowed := r.Target.hooks(); allowed != 0 && masks[i]&^allowed != 0 {
				return fmt.Errorf("chain %s rule %d: target %s is not valid from hook %s", c.Name, n+1, r.Target.Name(), firstHook(masks[i]&^allowed))
			}
		}
	}
	return nil
}

// hookMasks returns, per chain, the hooks it is reachable from, walking
// from each built-in chain as the kernel's mark_source_chains does:
// jumps are followed, a chain reaching itself is a loop, and a chain's
// walk ends at its first unconditional ACCEPT, DROP or RETURN (so rules
// after it, and chains only they jump to, are unreachable and, as in
// the kernel, not checked). Loops among unreachable chains are allowed,
// as in the kernel: no packet can enter them.
func hookMasks(t *table, idx map[string]int) ([]uint8, error) {
	masks := make([]uint8, len(t.chains))
	onPath := make([]bool, len(t.chains))
	var walk func(i int, hook Hook, depth int) error
	walk = func(i int, hook Hook, depth int) error {
		if onPath[i] {
			return fmt.Errorf("chain %s: jump loop (a chain reaches itself; Too many levels of symbolic links)", t.chains[i].Name)
		}
		if depth > maxDepth {
			return fmt.Errorf("chain %s: jumps nested deeper than %d", t.chains[i].Name, maxDepth)
		}
		if masks[i]&hook.bit() != 0 {
			return nil
		}
		masks[i] |= hook.bit()
		onPath[i] = true
		defer func() { onPath[i] = false }()
		c := t.chains[i]
		for _, r := range c.Rules[:walked(c)] {
			if name, ok := jumpName(r.Target); ok {
				if err := walk(idx[name], hook, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i, c := range t.chains {
		if c.Builtin {
			if err := walk(i, c.Hook, 0); err != nil {
				return nil, err
			}
		}
	}
	return masks, nil
}

// walked returns how many of c's rules the kernel's walk visits: up to
// and including the first unconditional ACCEPT, DROP or RETURN.
func walked(c *Chain) int {
	for n, r := range c.Rules {
		switch r.Target.(type) {
		case Accept, Drop, Return:
			if r.unconditional() {
				return n + 1
			}
		}
	}
	return len(c.Rules)
}

// unconditional reports whether r matches every packet: no header
// match, no extension match (the kernel's unconditional()).
func (r *Rule) unconditional() bool {
	return r.Protocol == 0 && !r.ProtocolInvert && r.Src.any() && r.Dst.any() &&
		r.In.Name == "" && r.Out.Name == "" && len(r.Matches) == 0
}

func firstHook(mask uint8) Hook {
	for h := Hook(0); h < numHooks; h++ {
		if mask&h.bit() != 0 {
			return h
		}
	}
	return 0
}

func jumpName(t Target) (string, bool) {
	switch t := t.(type) {
	case Jump:
		return t.Chain, true
	case Goto:
		return t.Chain, true
	}
	return "", false
}

// validateRule runs the per-rule checks that do not depend on the
// rest of the table.
func validateRule(f Family, tb TableID, r *Rule) error {
	if r.Src.Prefix.IsValid() && r.Src.Prefix.Addr().Is4() != (f == IPv4) {
		return fmt.Errorf("source %s is not an %s address", r.Src.Prefix, f)
	}
	if r.Dst.Prefix.IsValid() && r.Dst.Prefix.Addr().Is4() != (f == IPv4) {
		return fmt.Errorf("destination %s is not an %s address", r.Dst.Prefix, f)
	}
	for _, m := range r.Matches {
		if m == nil {
			return fmt.Errorf("nil match")
		}
		if err := m.check(r, f); err != nil {
			return err
		}
	}
	if r.Target != nil {
		if err := r.Target.check(r, f, tb); err != nil {
			return err
		}
	}
	return nil
}

// validate checks every table of every family.
func (rs *Ruleset) validate() error {
	for f := range rs.tables {
		for _, t := range rs.tables[f] {
			if err := validateTable(Family(f), t); err != nil {
				return fmt.Errorf("%s -t %s: %w", Family(f), t.id, err)
			}
		}
	}
	return nil
}
