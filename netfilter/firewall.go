package netfilter

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tunstack/tunstack/netfilter/ipset"
	"github.com/tunstack/tunstack/stack"
)

// Config configures a Firewall.
type Config struct {
	// Gateway selects tunstack's sandbox mapping: the stack terminates
	// all sandbox traffic locally, and packets not addressed to (or not
	// sent from) a local address traverse FORWARD instead of INPUT (or
	// OUTPUT). See the package documentation.
	Gateway bool
	// IsLocal reports whether an address is one of the stack's own
	// (gateway services, DNS). Default: an address assigned to a NIC.
	IsLocal func(tcpip.Address) bool
	// HostInterface is the interface name forwarded packets leave by
	// (matched by -o in FORWARD) and replies arrive on (-i), standing for
	// the host side of the gateway. Default "".
	HostInterface string
	// Logger receives LOG target output; nil discards it.
	Logger *slog.Logger
	// MaxFlows bounds connection tracking (default DefaultMaxFlows): at
	// the bound an unassured flow is evicted, else the new flow goes
	// untracked (counted in Stats).
	MaxFlows int
}

// Firewall is the iptables emulation of one gVisor stack. All methods
// are safe for concurrent use. Every change, from the command line or
// from Go, builds a new ruleset under one mutex, validates it whole and
// swaps it in atomically.
type Firewall struct {
	gs     *gstack.Stack
	cfg    Config
	log    *slog.Logger
	sets   *ipset.Registry
	flows  *flowTable
	defrag *Reassembler
	logq   *logQueue
	linked atomic.Bool // a LinkEndpoint tracks flows
	rh     rejectHandlers

	mu sync.Mutex // serialises commits; guards rs, hooks, nextHook, installed
	// +checklocks:mu
	rs *Ruleset
	// +checklocks:mu
	hooks [numHooks][]*goHook
	// +checklocks:mu
	nextHook uint64
	// +checklocks:mu
	installed bool

	cur atomic.Pointer[compiled]
}

// New creates a firewall for s. Nothing is installed into the stack until
// the first rule, policy or Go hook, so an unused firewall costs nothing
// per packet. s may be nil for a firewall that only validates and
// formats (no packets).
func New(s *stack.Stack, cfg Config) (*Firewall, error) {
	if s == nil {
		return NewGVisor(nil, cfg)
	}
	return NewGVisor(s.GVisor(), cfg)
}

// NewGVisor is New for a raw gVisor stack (one not made by package
// stack), such as a test's hand-built stack. Its hooks ask that stack for
// interface names, which takes the stack's lock; gVisor's Stack.Wait (and
// Destroy) holds that lock while it waits for each link endpoint's reader,
// so a reader caught in a hook deadlocks it. Shut such a stack down as
// stack.Close does: Attach(nil) and Wait on each NIC's link endpoint
// first, then Close and Wait.
func NewGVisor(s *gstack.Stack, cfg Config) (*Firewall, error) {
	fw := &Firewall{gs: s, cfg: cfg, log: cfg.Logger, rs: NewRuleset()}
	// Read the services database now, while files can still be opened
	// (a sandbox's instance drops privileges after setup).
	services()
	if fw.log == nil {
		fw.log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	fw.flows = newFlowTable(cfg.MaxFlows)
	fw.defrag = NewReassembler(ReassemblerConfig{})
	fw.logq = newLogQueue(fw.log)
	fw.sets = ipset.NewRegistry(fw.setInUse)
	if s != nil {
		if p, ok := s.NetworkProtocolInstance(ipv4.ProtocolNumber).(gstack.RejectIPv4WithHandler); ok {
			fw.rh.v4 = p
		}
		if p, ok := s.NetworkProtocolInstance(ipv6.ProtocolNumber).(gstack.RejectIPv6WithHandler); ok {
			fw.rh.v6 = p
		}
	}
	fw.cur.Store(compile(fw.rs, fw.hooks, fw.rh))
	return fw, nil
}

// Sets returns the firewall's ipset registry.
func (fw *Firewall) Sets() *ipset.Registry { return fw.sets }

// IPSet runs an ipset command line (without "ipset").
func (fw *Firewall) IPSet(args []string) (string, error) { return fw.sets.Exec(args) }

func (fw *Firewall) setInUse(name string) bool {
	rs := fw.cur.Load().rs
	for f := range rs.tables {
		for _, t := range rs.tables[f] {
			for _, c := range t.chains {
				for _, r := range c.Rules {
					for _, m := range r.Matches {
						if sm, ok := m.(*SetMatch); ok && sm.SetName == name {
							return true
						}
					}
				}
			}
		}
	}
	return false
}

// Empty reports whether the firewall has nothing to do: no rule, every
// policy ACCEPT, no Go hook. A port forward may then bypass the stack
// (package forward's splice path) without escaping a rule.
func (fw *Firewall) Empty() bool { return fw.cur.Load().empty }

// Ruleset returns the current ruleset. Treat it as read-only.
func (fw *Firewall) Ruleset() *Ruleset { return fw.cur.Load().rs }

// commitLocked validates rs, compiles it and makes it current. On error
// nothing changes.
func (fw *Firewall) commitLocked(rs *Ruleset) error {
	if err := rs.validate(); err != nil {
		return err
	}
	c := compile(rs, fw.hooks, fw.rh)
	if !c.empty {
		fw.installLocked()
	}
	fw.rs = rs
	fw.cur.Store(c)
	return nil
}

// Exec runs one iptables (f == IPv4) or ip6tables (f == IPv6) command
// line, without the program name, and returns what iptables would print.
func (fw *Firewall) Exec(f Family, args []string) (string, error) {
	cmd, err := parseCommand(f, args)
	if err != nil {
		return "", fmt.Errorf("%s: %w", f, param(err))
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	rs := fw.rs.clone()
	out, changed, err := cmd.exec(rs, fw.sets.Get)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd.fam, err)
	}
	if changed {
		if err := fw.commitLocked(rs); err != nil {
			// Validation errors already name the family and table.
			return "", err
		}
	}
	return out, nil
}

// Save returns the iptables-save (f == IPv4) or ip6tables-save text;
// counters adds [packets:bytes] before each rule (iptables-save -c).
func (fw *Firewall) Save(f Family, counters bool) string {
	return fw.Ruleset().save(f, counters, time.Now())
}

// Restore replaces the tables present in text (iptables-save format for
// family f) atomically: on any error nothing changes and the error
// carries the line number (*LineError).
func (fw *Firewall) Restore(f Family, text string, o RestoreOptions) error {
	return fw.RestoreAll(map[Family]string{f: text}, o)
}

// RestoreAll restores IPv4 and IPv6 text in one atomic commit.
func (fw *Firewall) RestoreAll(texts map[Family]string, o RestoreOptions) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	rs := fw.rs.clone()
	for _, f := range []Family{IPv4, IPv6} {
		if text, ok := texts[f]; ok {
			if err := restore(rs, f, text, o, fw.sets.Get); err != nil {
				return fmt.Errorf("%s-restore: %w", f, err)
			}
		}
	}
	return fw.commitLocked(rs)
}

// Validate checks text as iptables-restore --test does, against this
// firewall's sets, without changing anything.
func (fw *Firewall) Validate(f Family, text string) error {
	fw.mu.Lock()
	rs := fw.rs.clone()
	fw.mu.Unlock()
	if err := restore(rs, f, text, RestoreOptions{}, fw.sets.Get); err != nil {
		return fmt.Errorf("%s-restore: %w", f, err)
	}
	return nil
}

// Validate checks iptables-save text fully (parsing, table and hook
// restrictions, jump loops) with no firewall, as
// "iptables-restore --test" does. Set matches are not checked against
// existing sets.
func Validate(f Family, text string) error {
	if err := restore(NewRuleset(), f, text, RestoreOptions{}, nil); err != nil {
		return fmt.Errorf("%s-restore: %w", f, err)
	}
	return nil
}

// Tx is a batch of typed changes applied by Update.
type Tx struct {
	rs *Ruleset
}

func (tx *Tx) chain(f Family, t TableID, chain string) (*Chain, error) {
	if f >= numFamilies || t >= numTables {
		return nil, fmt.Errorf("bad family %d or table %d", f, t)
	}
	tb := tx.rs.tables[f][t]
	tb.used = true
	c := tb.chain(chain)
	if c == nil {
		return nil, fmt.Errorf("chain %q does not exist in table %s", chain, t)
	}
	return c, nil
}

func prepare(f Family, t TableID, r *Rule) (*Rule, error) {
	if r == nil {
		return nil, errors.New("nil rule")
	}
	if err := validateRule(f, t, r); err != nil {
		return nil, err
	}
	return r.clone(r.counters != nil), nil
}

// Append adds r at the end of chain.
func (tx *Tx) Append(f Family, t TableID, chain string, r *Rule) error {
	return tx.Insert(f, t, chain, -1, r)
}

// Insert adds r at position pos (1-based, as iptables -I); pos < 1
// appends.
func (tx *Tx) Insert(f Family, t TableID, chain string, pos int, r *Rule) error {
	c, err := tx.chain(f, t, chain)
	if err != nil {
		return err
	}
	nr, err := prepare(f, t, r)
	if err != nil {
		return err
	}
	if pos < 1 {
		c.Rules = append(c.Rules, nr)
		return nil
	}
	if pos > len(c.Rules)+1 {
		return fmt.Errorf("index of insertion too big: %d", pos)
	}
	c.Rules = append(c.Rules[:pos-1:pos-1], append([]*Rule{nr}, c.Rules[pos-1:]...)...)
	return nil
}

// Delete removes rule number n (1-based) of chain.
func (tx *Tx) Delete(f Family, t TableID, chain string, n int) error {
	c, err := tx.chain(f, t, chain)
	if err != nil {
		return err
	}
	if n < 1 || n > len(c.Rules) {
		return fmt.Errorf("rule %d out of range (chain %s has %d rules)", n, chain, len(c.Rules))
	}
	c.Rules = append(c.Rules[:n-1:n-1], c.Rules[n:]...)
	return nil
}

// Flush removes every rule of chain ("" for every chain of the table).
func (tx *Tx) Flush(f Family, t TableID, chain string) error {
	if chain == "" {
		for _, c := range tx.rs.Chains(f, t) {
			c.Rules = nil
		}
		return nil
	}
	c, err := tx.chain(f, t, chain)
	if err != nil {
		return err
	}
	c.Rules = nil
	return nil
}

// NewChain creates a user chain.
func (tx *Tx) NewChain(f Family, t TableID, name string) error {
	cmd := &command{fam: f, table: t, op: "-N", chain: name}
	_, _, err := cmd.exec(tx.rs, nil)
	return err
}

// SetPolicy sets a built-in chain's policy.
func (tx *Tx) SetPolicy(f Family, t TableID, chain string, p Policy) error {
	c, err := tx.chain(f, t, chain)
	if err != nil {
		return err
	}
	if !c.Builtin {
		return fmt.Errorf("cannot set policy of user chain %s", chain)
	}
	c.Policy = p
	return nil
}

// Exec runs an iptables command line inside the transaction.
func (tx *Tx) Exec(f Family, args []string, sets *ipset.Registry) (string, error) {
	cmd, err := parseCommand(f, args)
	if err != nil {
		return "", err
	}
	var get func(string) *ipset.Set
	if sets != nil {
		get = sets.Get
	}
	out, _, err := cmd.exec(tx.rs, get)
	return out, err
}

// Update applies fn's changes atomically: if fn or validation fails,
// nothing changes.
func (fw *Firewall) Update(fn func(tx *Tx) error) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	tx := &Tx{rs: fw.rs.clone()}
	if err := fn(tx); err != nil {
		return err
	}
	return fw.commitLocked(tx.rs)
}

// AddHook registers fn at hook h. Lower priorities run first; negative
// priorities run before the hook's iptables chains, others after. The
// returned function removes the hook.
func (fw *Firewall) AddHook(h Hook, priority int, fn HookFunc) (remove func(), err error) {
	if h >= numHooks || fn == nil {
		return nil, fmt.Errorf("bad hook %d or nil function", h)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.nextHook++
	id := fw.nextHook
	hs := append(append([]*goHook(nil), fw.hooks[h]...), &goHook{id: id, priority: priority, fn: fn})
	sortHooks(hs)
	fw.hooks[h] = hs
	if err := fw.commitLocked(fw.rs); err != nil {
		return nil, err
	}
	return func() {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		var keep []*goHook
		for _, x := range fw.hooks[h] {
			if x.id != id {
				keep = append(keep, x)
			}
		}
		fw.hooks[h] = keep
		_ = fw.commitLocked(fw.rs)
	}, nil
}

// Conntrack lists the tracked flows.
func (fw *Firewall) Conntrack() []Flow { return fw.flows.list() }

// installLocked puts the dispatchers into gVisor's tables, once.
func (fw *Firewall) installLocked() {
	if fw.installed || fw.gs == nil {
		return
	}
	fw.installed = true
	it := fw.gs.IPTables()
	consulted := map[gstack.TableID][]gstack.Hook{
		gstack.RawID:    {gstack.Prerouting, gstack.Output},
		gstack.MangleID: {gstack.Prerouting, gstack.Output, gstack.Postrouting},
		gstack.NATID:    {gstack.Prerouting, gstack.Input, gstack.Output, gstack.Postrouting},
		gstack.FilterID: {gstack.Input, gstack.Forward, gstack.Output},
	}
	for _, fam := range []Family{IPv4, IPv6} {
		for tid, hooks := range consulted {
			var t gstack.Table
			for h := range t.BuiltinChains {
				t.BuiltinChains[h] = gstack.HookUnset
				t.Underflows[h] = gstack.HookUnset
			}
			filter := gstack.EmptyFilter4()
			if fam == IPv6 {
				filter = gstack.EmptyFilter6()
			}
			for _, h := range hooks {
				plan := plans[[2]int{int(h), int(tid)}]
				d := &dispatcher{fw: fw, fam: fam, ghook: h, plan: plan,
					track: tid == gstack.RawID}
				t.BuiltinChains[h] = len(t.Rules)
				t.Underflows[h] = len(t.Rules)
				t.Rules = append(t.Rules, gstack.Rule{Filter: filter, Target: d})
			}
			t.Rules = append(t.Rules, gstack.Rule{Filter: filter, Target: &gstack.ErrorTarget{NetworkProtocol: netProto(fam)}})
			it.ForceReplaceTable(tid, t, fam == IPv6)
		}
	}
}

func (fw *Firewall) nicName(id tcpip.NICID) string {
	if fw.gs == nil || id == 0 {
		return ""
	}
	return fw.gs.FindNICNameFromID(id)
}

func (fw *Firewall) isLocal(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	ta := tcpipAddr(a)
	if fw.cfg.IsLocal != nil {
		return fw.cfg.IsLocal(ta)
	}
	proto := header.IPv4ProtocolNumber
	if a.Is6() {
		proto = header.IPv6ProtocolNumber
	}
	return fw.gs.CheckLocalAddress(0, proto, ta) != 0
}

// rejectNow sends the rejection a Go hook asked for.
func (fw *Firewall) rejectNow(p *Packet, pkt *gstack.PacketBuffer, hook gstack.Hook, r *gstack.Route, ep gstack.AddressableEndpoint) {
	if p.Family == IPv4 && fw.rh.v4 != nil {
		w := gstack.RejectIPv4WithICMPPortUnreachable
		if p.Protocol == 6 {
			w = gstack.RejectIPv4WithTCPReset
		}
		(&gstack.RejectIPv4Target{Handler: fw.rh.v4, RejectWith: w}).Action(pkt, hook, r, ep)
	} else if p.Family == IPv6 && fw.rh.v6 != nil {
		w := gstack.RejectIPv6WithICMPPortUnreachable
		if p.Protocol == 6 {
			w = gstack.RejectIPv6WithTCPReset
		}
		(&gstack.RejectIPv6Target{Handler: fw.rh.v6, RejectWith: w}).Action(pkt, hook, r, ep)
	}
}

// String summarises the firewall for logs.
func (fw *Firewall) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "netfilter(gateway=%v)", fw.cfg.Gateway)
	return b.String()
}
