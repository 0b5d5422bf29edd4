package netfilter

import (
	"fmt"
	"strings"
)

// Target is what a rule does with a matching packet (-j NAME or -g
// CHAIN). The concrete types in this package are the targets there are.
type Target interface {
	// Name is the name written after -j.
	Name() string
	saveArgs(f Family) []string
	listInfo(f Family, numeric bool) string
	// check reports errors that depend on the rule, family and table,
	// such as DNAT outside the nat table.
	check(r *Rule, f Family, t TableID) error
	// hooks is the set of hooks (as a bit mask) the target may be
	// reached from; 0 means every hook.
	hooks() uint8
}

type verdictKind uint8

const (
	kContinue verdictKind = iota // non-terminating targets (LOG, MARK...)
	kAccept
	kDrop
	kReturn
	kJump
	kGoto
	kExternal // REJECT and NAT: delegated to a gVisor target
)

// Accept is -j ACCEPT.
type Accept struct{}

// Drop is -j DROP.
type Drop struct{}

// Return is -j RETURN.
type Return struct{}

// Jump is -j CHAIN: continue in the user chain, come back on RETURN.
type Jump struct{ Chain string }

// Goto is -g CHAIN: continue in the user chain, and on its RETURN return
// from the calling chain.
type Goto struct{ Chain string }

// Name implements Target.
func (Accept) Name() string { return "ACCEPT" }

// Name implements Target.
func (Drop) Name() string { return "DROP" }

// Name implements Target.
func (Return) Name() string { return "RETURN" }

// Name implements Target.
func (j Jump) Name() string { return j.Chain }

// Name implements Target.
func (g Goto) Name() string { return g.Chain }

func (Accept) saveArgs(Family) []string           { return nil }
func (Drop) saveArgs(Family) []string             { return nil }
func (Return) saveArgs(Family) []string           { return nil }
func (Jump) saveArgs(Family) []string             { return nil }
func (Goto) saveArgs(Family) []string             { return nil }
func (Accept) listInfo(Family, bool) string       { return "" }
func (Drop) listInfo(Family, bool) string         { return "" }
func (Return) listInfo(Family, bool) string       { return "" }
func (Jump) listInfo(Family, bool) string         { return "" }
func (Goto) listInfo(Family, bool) string         { return "[goto] " }
func (Accept) check(*Rule, Family, TableID) error { return nil }
func (Drop) check(_ *Rule, _ Family, t TableID) error {
	if t == NAT {
		return param(errNATDrop)
	}
	return nil
}
func (Return) check(*Rule, Family, TableID) error { return nil }
func (Jump) check(*Rule, Family, TableID) error   { return nil }
func (Goto) check(*Rule, Family, TableID) error   { return nil }
func (Accept) hooks() uint8                       { return 0 }
func (Drop) hooks() uint8                         { return 0 }
func (Return) hooks() uint8                       { return 0 }
func (Jump) hooks() uint8                         { return 0 }
func (Goto) hooks() uint8                         { return 0 }

// saveString quotes s as iptables-save does: bare unless it holds a
// space, quote or backslash.
func saveString(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func onlyTable(name string, t, want TableID) error {
	if t != want {
		return fmt.Errorf("target %q is only valid in the %s table, not %s", name, want, t)
	}
	return nil
}
