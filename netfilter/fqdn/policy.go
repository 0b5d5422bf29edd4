package fqdn

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/netfilter/ipset"
)

// Chain is the filter chain the policy installs in each family.
const Chain = "TS-ALLOW"

// DefaultMinTTL is the shortest time an address learned from a DNS answer
// stays allowed. Programs and resolvers cache answers beyond their TTL
// (30 s is common), and a lookup whose TTL is 0 must still be usable by
// the connection that follows it.
const DefaultMinTTL = 30 * time.Second

// DefaultLogInterval is how often a denial of one destination is logged.
const DefaultLogInterval = 10 * time.Second

// maxLearned bounds each learned-address set (ipset maxelem).
const maxLearned = 65536

// Config configures a Policy.
type Config struct {
	// Patterns are the initial allowlist.
	Patterns []Pattern
	// DNS are the stack's resolver addresses (the DNS relay): port 53 on
	// them is always allowed, since the policy learns from its answers.
	DNS []netip.Addr
	// HostInterface is the firewall's name for the host side of the
	// gateway (netfilter.Config.HostInterface): the policy polices
	// FORWARD packets leaving by it, i.e. the sandbox's egress, and not
	// connections that port forwards open into the sandbox.
	HostInterface string
	// MinTTL is the floor of a learned address's lifetime (default
	// DefaultMinTTL; a negative value means no floor).
	MinTTL time.Duration
	// LogInterval is how often a denial of one destination is logged
	// (default DefaultLogInterval).
	LogInterval time.Duration
	// Logger receives denial lines; nil discards them.
	Logger *slog.Logger
	// Audit, if set, receives every decision as a JSON line (see
	// Decision). Writes happen on a goroutine of the policy's.
	Audit io.Writer
	// Owner, if set, names the sandbox process that owns a flow, for logs
	// and the audit (as ss -p finds it). It may be slow: it runs off the
	// packet path.
	Owner func(proto string, src, dst netip.AddrPort) (pid int, comm string)
}

// Policy is a DNS-aware egress allowlist installed in a firewall. Its
// methods are safe for concurrent use.
type Policy struct {
	fw  *netfilter.Firewall
	cfg Config
	rec *recorder

	// mu serialises changes: patterns and the firewall rules built from
	// them change together.
	mu       sync.Mutex
	patterns []Pattern // +checklocks:mu

	// snap is what the packet path and the DNS filter read: the compiled
	// patterns and their sets, replaced whole on every change.
	snap atomic.Pointer[snapshot]

	// names remembers which allowed name an address was learned from,
	// for logs; bounded by maxLearned.
	namesMu sync.Mutex
	names   map[netip.Addr]string // +checklocks:namesMu

	removeHooks []func()
}

// snapshot is an immutable compiled policy.
type snapshot struct {
	patterns []Pattern
	// static are the Prefix patterns.
	static []Pattern
	// groups are the learned-address sets, one per family and port
	// limit of the name patterns.
	groups []group
	dns    []netip.Addr
}

// group is a learned-address set and the port limit its rules apply.
type group struct {
	set            *ipset.Set
	portLo, portHi uint16
}

// New installs a policy in fw: its sets, its chain and the jumps to it at
// the top of INPUT and FORWARD, in both families. The firewall must be in
// gateway mode.
func New(fw *netfilter.Firewall, cfg Config) (*Policy, error) {
	if cfg.MinTTL == 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = DefaultLogInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Policy{fw: fw, cfg: cfg, names: map[netip.Addr]string{}}
	if err := p.apply(cfg.Patterns, false); err != nil {
		return nil, err
	}
	p.rec = startRecorder(cfg)
	for _, h := range []netfilter.Hook{netfilter.Input, netfilter.Forward} {
		remove, err := fw.AddHook(h, -100, p.observe)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.removeHooks = append(p.removeHooks, remove)
	}
	return p, nil
}

// Close stops the policy's logging and audit. The rules and sets stay in
// the firewall, which keeps enforcing them.
func (p *Policy) Close() error {
	for _, r := range p.removeHooks {
		r()
	}
	p.removeHooks = nil
	if p.rec != nil {
		p.rec.close()
	}
	return nil
}

// Patterns returns the current allowlist.
func (p *Policy) Patterns() []Pattern {
	return slices.Clone(p.snap.Load().patterns)
}

// Allow adds a pattern. Adding a present one does nothing.
func (p *Policy) Allow(pat Pattern) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Contains(p.patterns, pat) {
		return nil
	}
	return p.applyLocked(append(slices.Clone(p.patterns), pat), false)
}

// Deny removes a pattern. The addresses learned so far are forgotten (the
// other patterns' are learned again at their next lookup); established
// flows go on.
func (p *Policy) Deny(pat Pattern) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.patterns, pat)
	if i < 0 {
		return fmt.Errorf("allow-host: %s is not in the allowlist", pat)
	}
	return p.applyLocked(slices.Delete(slices.Clone(p.patterns), i, i+1), true)
}

func (p *Policy) apply(pats []Pattern, forget bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applyLocked(pats, forget)
}

// applyLocked makes pats the policy: it creates the sets they need,
// rebuilds the chain in one firewall commit, and publishes the snapshot.
func (p *Policy) applyLocked(pats []Pattern, forget bool) error {
	snap := &snapshot{patterns: pats, dns: p.cfg.DNS}
	for _, pat := range pats {
		if pat.Kind == Prefix {
			snap.static = append(snap.static, pat)
		}
	}
	for _, fam := range []ipset.Family{ipset.Inet, ipset.Inet6} {
		for _, pr := range portLimits(pats) {
			s, err := p.fw.Sets().Create(setName(fam, pr), ipset.HashIP,
				ipset.Options{Family: fam, HasTimeout: true, MaxElem: maxLearned}, true)
			if err != nil {
				return fmt.Errorf("allow-host: %w", err)
			}
			if forget {
				s.Flush()
			}
			snap.groups = append(snap.groups, group{set: s, portLo: pr[0], portHi: pr[1]})
		}
	}
	err := p.fw.Update(func(tx *netfilter.Tx) error {
		for _, f := range []netfilter.Family{netfilter.IPv4, netfilter.IPv6} {
			if err := p.install(tx, f, snap); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("allow-host: installing the policy: %w", err)
	}
	p.patterns = pats
	p.snap.Store(snap)
	return nil
}

// portLimits lists the distinct port limits of the name patterns.
func portLimits(pats []Pattern) [][2]uint16 {
	var out [][2]uint16
	for _, pat := range pats {
		if pat.Kind == Prefix {
			continue
		}
		pr := [2]uint16{pat.PortLo, pat.PortHi}
		if !slices.Contains(out, pr) {
			out = append(out, pr)
		}
	}
	return out
}

// setName names the learned set of a family and port limit: ts-allow4,
// ts-allow6-443, ts-allow4-8000-8100.
func setName(f ipset.Family, pr [2]uint16) string {
	n := "ts-allow4"
	if f == ipset.Inet6 {
		n = "ts-allow6"
	}
	switch {
	case pr == [2]uint16{}:
		return n
	case pr[0] == pr[1]:
		return n + "-" + strconv.Itoa(int(pr[0]))
	}
	return fmt.Sprintf("%s-%d-%d", n, pr[0], pr[1])
}

// install rebuilds the chain of family f in tx and makes sure INPUT and
// FORWARD jump to it first.
func (p *Policy) install(tx *netfilter.Tx, f netfilter.Family, snap *snapshot) error {
	sets := p.fw.Sets()
	run := func(args ...string) error {
		_, err := tx.Exec(f, args, sets)
		return err
	}
	if run("-F", Chain) != nil {
		if err := run("-N", Chain); err != nil {
			return err
		}
	}
	jumps := [][]string{{"INPUT", "-j", Chain}, {"FORWARD", "-o", p.cfg.HostInterface, "-j", Chain}}
	for _, j := range jumps {
		if run(append([]string{"-C"}, j...)...) != nil {
			if err := run(append([]string{"-I", j[0], "1"}, j[1:]...)...); err != nil {
				return err
			}
		}
	}
	for _, r := range rules(f, snap) {
		if err := run(append([]string{"-A", Chain}, r...)...); err != nil {
			return fmt.Errorf("rule %q: %w", r, err)
		}
	}
	return nil
}

// rules returns the chain's rules for family f, in order.
func rules(f netfilter.Family, snap *snapshot) [][]string {
	v6 := f == netfilter.IPv6
	out := [][]string{{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"}}
	if v6 {
		// Neighbour discovery to the gateway, should the sandbox do any.
		for _, t := range []string{"router-solicitation", "neighbour-solicitation", "neighbour-advertisement"} {
			out = append(out, []string{"-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", t, "-j", "RETURN"})
		}
	}
	for _, a := range snap.dns {
		if a.Is6() != v6 {
			continue
		}
		for _, proto := range []string{"udp", "tcp"} {
			out = append(out, []string{"-d", netip.PrefixFrom(a, a.BitLen()).String(), "-p", proto, "-m", proto, "--dport", "53", "-j", "RETURN"})
		}
	}
	for _, pat := range snap.static {
		if pat.Prefix.Addr().Is6() != v6 {
			continue
		}
		out = append(out, withPorts([]string{"-d", pat.Prefix.String()}, nil, pat.PortLo, pat.PortHi)...)
	}
	for _, g := range snap.groups {
		if (g.set.Family() == ipset.Inet6) != v6 {
			continue
		}
		out = append(out, withPorts(nil, []string{"-m", "set", "--match-set", g.set.Name(), "dst"}, g.portLo, g.portHi)...)
	}
	// Both answers reach a Linux program as EHOSTUNREACH: ICMP
	// "communication administratively prohibited" does for IPv4, but its
	// ICMPv6 counterpart maps to EACCES, so IPv6 says "address
	// unreachable".
	reject := "icmp-admin-prohibited"
	if v6 {
		reject = "icmp6-addr-unreachable"
	}
	return append(out, []string{"-j", "REJECT", "--reject-with", reject})
}

// withPorts returns the RETURN rules for a destination match (pre before
// -p, post after it): one rule without a port limit, or one for TCP and
// one for UDP with it.
func withPorts(pre, post []string, lo, hi uint16) [][]string {
	if lo == 0 && hi == 0 {
		return [][]string{append(append(slices.Clone(pre), post...), "-j", "RETURN")}
	}
	ports := strconv.Itoa(int(lo))
	if hi != lo {
		ports += ":" + strconv.Itoa(int(hi))
	}
	var out [][]string
	for _, proto := range []string{"tcp", "udp"} {
		r := append(slices.Clone(pre), "-p", proto)
		r = append(r, post...)
		r = append(r, "-m", proto, "--dport", ports, "-j", "RETURN")
		out = append(out, r)
	}
	return out
}

// allowed mirrors the chain for the decision log: whether a new flow to
// dst:port over proto is allowed. It does not allocate.
func (s *snapshot) allowed(proto uint8, dst netip.Addr, port uint16) bool {
	ported := proto == protoTCP || proto == protoUDP
	portOK := func(lo, hi uint16) bool {
		return lo == 0 && hi == 0 || ported && port >= lo && port <= hi
	}
	if ported && port == 53 && slices.Contains(s.dns, dst) {
		return true
	}
	for _, pat := range s.static {
		if pat.Prefix.Contains(dst) && portOK(pat.PortLo, pat.PortHi) {
			return true
		}
	}
	for _, g := range s.groups {
		if portOK(g.portLo, g.portHi) && g.set.Contains(dst) {
			return true
		}
	}
	return false
}

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)
