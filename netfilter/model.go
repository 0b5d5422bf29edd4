package netfilter

import (
	"fmt"
	"net/netip"
	"sort"
	"sync/atomic"
)

// Family is the address family a ruleset applies to, as chosen by
// iptables (IPv4) or ip6tables (IPv6).
type Family uint8

const (
	// IPv4 selects the iptables rules.
	IPv4 Family = iota
	// IPv6 selects the ip6tables rules.
	IPv6
	numFamilies
)

func (f Family) String() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// TableID names one of the four iptables tables.
type TableID uint8

const (
	// Raw is the raw table (PREROUTING, OUTPUT).
	Raw TableID = iota
	// Mangle is the mangle table (all five chains).
	Mangle
	// NAT is the nat table (PREROUTING, INPUT, OUTPUT, POSTROUTING).
	NAT
	// Filter is the filter table (INPUT, FORWARD, OUTPUT).
	Filter
	numTables
)

var tableNames = [numTables]string{"raw", "mangle", "nat", "filter"}

func (t TableID) String() string {
	if t < numTables {
		return tableNames[t]
	}
	return fmt.Sprintf("table(%d)", uint8(t))
}

// ParseTable returns the table called name.
func ParseTable(name string) (TableID, error) {
	for i, n := range tableNames {
		if n == name {
			return TableID(i), nil
		}
	}
	return 0, fmt.Errorf("table %q does not exist (want raw, mangle, nat or filter)", name)
}

// Hook is a netfilter hook, the attachment point of a built-in chain.
type Hook uint8

const (
	// Prerouting sees packets as they arrive, before routing.
	Prerouting Hook = iota
	// Input sees packets addressed to the stack itself.
	Input
	// Forward sees packets routed through the stack (in gateway mode: the
	// sandbox's traffic to other hosts and the replies).
	Forward
	// Output sees packets the stack itself sends.
	Output
	// Postrouting sees packets as they leave.
	Postrouting
	numHooks
)

var hookNames = [numHooks]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

func (h Hook) String() string {
	if h < numHooks {
		return hookNames[h]
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// hookBit returns h as a bit in a hook mask.
func (h Hook) bit() uint8 { return 1 << h }

// tableHooks lists, per table, the hooks that have a built-in chain, in the
// order iptables lists them.
var tableHooks = [numTables][]Hook{
	Raw:    {Prerouting, Output},
	Mangle: {Prerouting, Input, Forward, Output, Postrouting},
	NAT:    {Prerouting, Input, Output, Postrouting},
	Filter: {Input, Forward, Output},
}

// Policy is the verdict of a built-in chain for packets no rule decided.
type Policy uint8

const (
	// PolicyAccept lets the packet pass.
	PolicyAccept Policy = iota
	// PolicyDrop discards the packet.
	PolicyDrop
)

func (p Policy) String() string {
	if p == PolicyDrop {
		return "DROP"
	}
	return "ACCEPT"
}

// Counters count the packets and bytes a rule or policy matched. They are
// shared between rulesets so that unchanged rules keep their counts when
// another rule changes, as in iptables.
type Counters struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
}

// Packets returns the number of packets counted.
func (c *Counters) Packets() uint64 {
	if c == nil {
		return 0
	}
	return c.packets.Load()
}

// Bytes returns the number of bytes counted.
func (c *Counters) Bytes() uint64 {
	if c == nil {
		return 0
	}
	return c.bytes.Load()
}

func (c *Counters) add(bytes int) {
	c.packets.Add(1)
	c.bytes.Add(uint64(bytes))
}

func (c *Counters) set(p, b uint64) {
	c.packets.Store(p)
	c.bytes.Store(b)
}

func (c *Counters) zero() {
	if c != nil {
		c.set(0, 0)
	}
}

// Addr matches a source or destination address: a prefix, optionally
// inverted. The zero value matches every address.
type Addr struct {
	Prefix netip.Prefix
	Invert bool
}

func (a Addr) any() bool { return !a.Prefix.IsValid() || (a.Prefix.Bits() == 0 && !a.Invert) }

// Iface matches an interface name; a trailing "+" matches a prefix. The
// zero value matches every interface.
type Iface struct {
	Name   string
	Invert bool
}

// Rule is one iptables rule: header matches, extension matches (in the
// order they were given) and a target. Rules are immutable once added to a
// ruleset; build a new Rule to change one.
type Rule struct {
	// Protocol is the transport protocol number; 0 means any (-p all).
	Protocol       uint8
	ProtocolInvert bool
	Src, Dst       Addr
	In, Out        Iface
	// Matches are the -m extensions, in order.
	Matches []Match
	// Target decides what happens to a matching packet; nil means the
	// rule only counts.
	Target Target

	counters *Counters
}

// Counters returns the rule's packet and byte counters.
func (r *Rule) Counters() *Counters { return r.counters }

// clone returns a shallow copy of r that shares nothing mutable with it
// except, when keep is true, its counters.
func (r *Rule) clone(keep bool) *Rule {
	n := *r
	n.Matches = append([]Match(nil), r.Matches...)
	if !keep || r.counters == nil {
		n.counters = new(Counters)
	}
	return &n
}

// Chain is a built-in or user-defined chain.
type Chain struct {
	Name    string
	Builtin bool
	Hook    Hook   // for built-in chains
	Policy  Policy // for built-in chains
	Rules   []*Rule

	policyCounters *Counters
}

// PolicyCounters returns the counters of packets that reached the policy.
func (c *Chain) PolicyCounters() *Counters { return c.policyCounters }

func (c *Chain) clone() *Chain {
	n := *c
	n.Rules = append([]*Rule(nil), c.Rules...)
	return &n
}

// table is one family's table: its chains, built-ins first in hook order,
// then user chains sorted by name (the order iptables lists them).
type table struct {
	id     TableID
	chains []*Chain
	// used records whether any command touched this table, so that Save
	// prints it, as iptables-save prints only tables that exist.
	used bool
}

func newTable(id TableID) *table {
	t := &table{id: id}
	for _, h := range tableHooks[id] {
		t.chains = append(t.chains, &Chain{Name: h.String(), Builtin: true, Hook: h, policyCounters: new(Counters)})
	}
	return t
}

func (t *table) clone() *table {
	n := *t
	n.chains = make([]*Chain, len(t.chains))
	for i, c := range t.chains {
		n.chains[i] = c.clone()
	}
	return &n
}

func (t *table) chain(name string) *Chain {
	for _, c := range t.chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (t *table) chainIndex(name string) int {
	for i, c := range t.chains {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func (t *table) sortUser() {
	n := len(tableHooks[t.id])
	user := t.chains[n:]
	sort.Slice(user, func(i, j int) bool { return user[i].Name < user[j].Name })
}

// Ruleset is the complete rule state of both families. A Ruleset value
// held by the Firewall is never modified; changes build a new one.
type Ruleset struct {
	tables [numFamilies][numTables]*table
}

// NewRuleset returns the empty ruleset: every built-in chain empty with
// policy ACCEPT.
func NewRuleset() *Ruleset {
	rs := &Ruleset{}
	for f := range rs.tables {
		for t := range rs.tables[f] {
			rs.tables[f][t] = newTable(TableID(t))
		}
		rs.tables[f][Filter].used = true
	}
	return rs
}

// clone copies the ruleset deeply enough that chains and rule lists can be
// edited; Rules themselves are shared.
func (rs *Ruleset) clone() *Ruleset {
	n := &Ruleset{}
	for f := range rs.tables {
		for t := range rs.tables[f] {
			n.tables[f][t] = rs.tables[f][t].clone()
		}
	}
	return n
}

// Chains returns the chains of a table, built-ins first.
func (rs *Ruleset) Chains(f Family, t TableID) []*Chain {
	if f >= numFamilies || t >= numTables {
		return nil
	}
	return rs.tables[f][t].chains
}
