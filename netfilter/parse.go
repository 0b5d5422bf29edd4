package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tunstack/tunstack/netfilter/ipset"
)

// ruleParser turns rule-spec arguments (matches and target) into rules.
type ruleParser struct {
	fam   Family
	chain string // the chain the rule is for, when known
	sets  func(name string) *ipset.Set

	rule     Rule
	srcs     []netip.Prefix
	dsts     []netip.Prefix
	seen     map[string]bool
	cur      Match // the match the next options belong to first
	target   Target
	tgtSeen  map[string]bool
	counters *[2]uint64
}

// ParseRule parses one rule specification (as after "iptables -A CHAIN")
// into the rules it stands for: a list of addresses in -s or -d makes one
// rule per address, as iptables does.
func ParseRule(f Family, args []string) ([]*Rule, error) {
	rules, _, err := parseRule(f, "", args, nil)
	return rules, err
}

// parseRule parses a rule for chain (empty when not known).
func parseRule(f Family, chain string, args []string, sets func(string) *ipset.Set) ([]*Rule, *[2]uint64, error) {
	p := &ruleParser{fam: f, chain: chain, sets: sets, seen: map[string]bool{}, tgtSeen: map[string]bool{}}
	if err := p.parse(args); err != nil {
		return nil, nil, err
	}
	return p.expand(), p.counters, nil
}

type argReader struct {
	args []string
	i    int
}

func (a *argReader) next(opt string) (string, error) {
	if a.i >= len(a.args) {
		return "", fmt.Errorf("option %q requires an argument", opt)
	}
	v := a.args[a.i]
	a.i++
	return v, nil
}

func (p *ruleParser) once(opt string) error {
	if p.seen[opt] {
		return fmt.Errorf("multiple %s flags not allowed", opt)
	}
	p.seen[opt] = true
	return nil
}

var longHeaderOpts = map[string]string{
	"--protocol": "-p", "--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d",
	"--in-interface": "-i", "--out-interface": "-o", "--match": "-m", "--jump": "-j", "--goto": "-g",
	"--set-counters": "-c", "--fragment": "-f",
}

func (p *ruleParser) parse(args []string) error {
	r := &argReader{args: args}
	for r.i < len(args) {
		opt := args[r.i]
		r.i++
		inv := false
		if opt == "!" {
			inv = true
			if r.i >= len(args) {
				return fmt.Errorf("\"!\" at the end of the rule negates nothing")
			}
			opt = args[r.i]
			r.i++
			if opt == "!" {
				return fmt.Errorf("multiple consecutive ! not allowed")
			}
		}
		if s, ok := longHeaderOpts[opt]; ok {
			opt = s
		}
		var err error
		switch opt {
		case "-p", "-s", "-d", "-i", "-o":
			err = p.header(opt, inv, r)
		case "-m":
			if inv {
				return fmt.Errorf("\"!\" cannot negate -m")
			}
			var name string
			if name, err = r.next(opt); err == nil {
				err = p.loadMatch(name)
			}
		case "-j", "-g":
			if inv {
				return fmt.Errorf("\"!\" cannot negate %s", opt)
			}
			if p.target != nil {
				return fmt.Errorf("multiple -j or -g flags not allowed")
			}
			var name string
			if name, err = r.next(opt); err == nil {
				err = p.loadTarget(name, opt == "-g")
			}
		case "-c":
			var a, b string
			if a, err = r.next(opt); err == nil {
				if b, err = r.next(opt); err == nil {
					pk, e1 := strconv.ParseUint(a, 10, 64)
					by, e2 := strconv.ParseUint(b, 10, 64)
					if e1 != nil || e2 != nil {
						return fmt.Errorf("-c packet counter %q or byte counter %q not numeric", a, b)
					}
					p.counters = &[2]uint64{pk, by}
				}
			}
		default:
			if !strings.HasPrefix(opt, "-") || opt == "-" {
				return fmt.Errorf("bad argument %q", opt)
			}
			err = p.extOpt(opt, inv, r)
		}
		if err != nil {
			return err
		}
	}
	return p.finish()
}

func (p *ruleParser) header(opt string, inv bool, r *argReader) error {
	if err := p.once(opt); err != nil {
		return err
	}
	v, err := r.next(opt)
	if err != nil {
		return err
	}
	if v == "!" {
		return fmt.Errorf("intrapositioned negation (%s ! X) is not supported; write ! %s X", opt, opt)
	}
	switch opt {
	case "-p":
		n, err := parseProto(v)
		if err != nil {
			return err
		}
		if n == 0 && inv {
			return fmt.Errorf("rule would never match protocol (! -p %s)", v)
		}
		p.rule.Protocol, p.rule.ProtocolInvert = n, inv
	case "-s", "-d":
		list, err := parseAddrList(v, p.fam)
		if err != nil {
			return err
		}
		if inv && len(list) > 1 {
			return fmt.Errorf("! not allowed with multiple source or destination IP addresses (%s %s)", opt, v)
		}
		if opt == "-s" {
			p.srcs, p.rule.Src.Invert = list, inv
		} else {
			p.dsts, p.rule.Dst.Invert = list, inv
		}
	case "-i", "-o":
		if len(v) > 15 {
			return fmt.Errorf("interface name %q must be shorter than IFNAMSIZ (15)", v)
		}
		if v == "" {
			return fmt.Errorf("empty interface for %s is likely to be undesired", opt)
		}
		// iptables checks the chain's name, not the hooks it is
		// reached from (the kernel checks nothing).
		switch {
		case opt == "-i" && (p.chain == "POSTROUTING" || p.chain == "OUTPUT"),
			opt == "-o" && (p.chain == "PREROUTING" || p.chain == "INPUT"):
			return fmt.Errorf("can't use %s with %s", opt, p.chain)
		}
		// iptables only warns about '/' and ' ' ("not allowed by the
		// kernel") and accepts the rule; so does tunstack.
		// "+" is kept, as iptables stores it: it matches every interface
		// ("! -i +" none), iptables-save does not print it (see
		// ruleArgs) but iptables -L -v does.
		if opt == "-i" {
			p.rule.In = Iface{Name: v, Invert: inv}
		} else {
			p.rule.Out = Iface{Name: v, Invert: inv}
		}
	}
	return nil
}

// parseAddrList parses -s/-d: comma-separated ADDR[/LEN|/MASK].
func parseAddrList(s string, f Family) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		pf, err := parseAddr(part, f)
		if err != nil {
			return nil, err
		}
		out = append(out, pf)
	}
	return out, nil
}

func parseAddr(s string, f Family) (netip.Prefix, error) {
	as, ms, hasMask := strings.Cut(s, "/")
	if as == "0" && f == IPv4 {
		as = "0.0.0.0"
	}
	a, err := netip.ParseAddr(as)
	if err != nil || a.Zone() != "" || a.Is4() != (f == IPv4) {
		return netip.Prefix{}, fmt.Errorf("host/network %q not found", s)
	}
	bits := a.BitLen()
	if hasMask {
		if n, err := strconv.Atoi(ms); err == nil {
			if n < 0 || n > a.BitLen() {
				return netip.Prefix{}, fmt.Errorf("invalid mask %q specified", s)
			}
			bits = n
		} else if m, err := netip.ParseAddr(ms); err == nil && m.Is4() == a.Is4() {
			bits = -1
			b := m.AsSlice()
			ones, done := 0, false
			for _, x := range b {
				for i := 7; i >= 0; i-- {
					if x&(1<<i) != 0 {
						if done {
							return netip.Prefix{}, fmt.Errorf("non-contiguous mask %q is not supported", s)
						}
						ones++
					} else {
						done = true
					}
				}
			}
			bits = ones
		} else {
			return netip.Prefix{}, fmt.Errorf("invalid mask %q specified", s)
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// matchNew makes a fresh match per -m NAME; a nil error and nil match
// never happen. Adding a match: its type, parseOpt, finish, saveArgs,
// check and matches in its own file, and one line here.
var matchNew = map[string]func(f Family) (Match, error){
	"tcp": func(Family) (Match, error) { return &TCP{}, nil },
	"udp": func(Family) (Match, error) { return &UDP{}, nil },
	"icmp": func(f Family) (Match, error) {
		if f == IPv6 {
			return nil, fmt.Errorf("couldn't load match \"icmp\" for ip6tables (use -m icmp6)")
		}
		return &ICMP{Type: 0xff, AnyCode: true}, nil
	},
	"icmp6":     newICMP6,
	"icmpv6":    newICMP6,
	"multiport": func(Family) (Match, error) { return &Multiport{}, nil },
	"conntrack": func(Family) (Match, error) { return &Conntrack{}, nil },
	"state":     func(Family) (Match, error) { return &State{}, nil },
	"mark":      func(Family) (Match, error) { return &MarkMatch{}, nil },
	"connmark":  func(Family) (Match, error) { return &ConnmarkMatch{}, nil },
	"limit":     func(Family) (Match, error) { return &Limit{Avg: limitScale * 60 * 60 / 3, Burst: 5}, nil },
	"comment":   func(Family) (Match, error) { return &Comment{}, nil },
	"iprange":   func(Family) (Match, error) { return &IPRange{}, nil },
	"set":       func(Family) (Match, error) { return &SetMatch{}, nil },
}

func newICMP6(f Family) (Match, error) {
	if f == IPv4 {
		return nil, fmt.Errorf("couldn't load match \"icmp6\" for iptables (use -m icmp)")
	}
	return &ICMP{V6: true, AnyCode: true, Type: 0xff}, nil
}

// targetNew makes a fresh target per -j NAME; any other name is a jump
// to a user chain.
var targetNew = map[string]func() Target{
	"ACCEPT":     func() Target { return Accept{} },
	"DROP":       func() Target { return Drop{} },
	"RETURN":     func() Target { return Return{} },
	"REJECT":     func() Target { return &Reject{} },
	"LOG":        func() Target { return &Log{Level: 4} },
	"DNAT":       func() Target { return &DNAT{} },
	"SNAT":       func() Target { return &SNAT{} },
	"MASQUERADE": func() Target { return &Masquerade{} },
	"REDIRECT":   func() Target { return &Redirect{} },
	"MARK":       func() Target { return &Mark{} },
	"CONNMARK":   func() Target { return &Connmark{NFMask: 0xffffffff, CTMask: 0xffffffff} },
	"TTL":        func() Target { return &TTL{} },
	"HL":         func() Target { return &TTL{HL: true} },
	"TOS":        func() Target { return &TOS{} },
	"DSCP":       func() Target { return &DSCP{} },
}

// loadMatch loads -m name. A repeated -m NAME loads a second instance,
// as iptables-legacy does (iptables-nft would merge them); options go
// to the newest.
func (p *ruleParser) loadMatch(name string) error {
	mk, ok := matchNew[name]
	if !ok {
		return fmt.Errorf("couldn't load match %q: no such extension", name)
	}
	m, err := mk(p.fam)
	if err != nil {
		return err
	}
	p.rule.Matches = append(p.rule.Matches, m)
	p.cur = m
	return nil
}

func (p *ruleParser) loadTarget(name string, isGoto bool) error {
	if mk, ok := targetNew[name]; ok && !isGoto {
		p.target = mk()
		return nil
	}
	if name == "QUEUE" || name == "NFQUEUE" {
		return fmt.Errorf("target %s is not supported: tunstack has no queue to userspace", name)
	}
	if name == "SET" {
		return fmt.Errorf("target %s is not supported: rules cannot change ipsets in tunstack (use tunstack ipset)", name)
	}
	// Anything else is a jump to a user chain; whether the chain exists
	// is checked against the table when the rule is added.
	if err := checkChainName(name); err != nil {
		return err
	}
	if isGoto {
		p.target = Goto{Chain: name}
	} else {
		p.target = Jump{Chain: name}
	}
	return nil
}

func checkChainName(name string) error {
	if name == "" || len(name) > 28 || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "!") || strings.ContainsAny(name, " \t\n") {
		return fmt.Errorf("invalid chain name %q", name)
	}
	return nil
}

// implicitMatch returns the protocol match that -p loads implicitly for
// options like --dport, as iptables does.
func (p *ruleParser) implicitMatch() Match {
	switch p.rule.Protocol {
	case 6:
		return &TCP{}
	case 17:
		return &UDP{}
	case 1:
		if p.fam == IPv4 {
			return &ICMP{Type: 0xff, AnyCode: true}
		}
	case 58:
		if p.fam == IPv6 {
			return &ICMP{V6: true, Type: 0xff, AnyCode: true}
		}
	}
	return nil
}

func (p *ruleParser) extOpt(opt string, inv bool, r *argReader) error {
	if ok, err := p.offerLoaded(opt, inv, r); ok || err != nil {
		return err
	}
	// getopt_long takes an unambiguous abbreviation of a loaded
	// extension's option (-m multiport --dport 80,443 is --dports),
	// before xtables considers loading the protocol's match.
	if full, ok := p.abbrev(opt); ok {
		if ok, err := p.offerLoaded(full, inv, r); ok || err != nil {
			return err
		}
	}
	if m := p.implicitMatch(); m != nil {
		loaded := false
		for _, x := range p.rule.Matches {
			if x.Name() == m.Name() {
				loaded = true
			}
		}
		if !loaded {
			save := r.i
			if full, ok := uniquePrefix(m.(interface{ optNames() []string }).optNames(), opt); ok {
				opt = full
			}
			if ok, err := p.extOpt1(m, opt, inv, r); err != nil {
				return err
			} else if ok {
				// iptables loads the implicit match when its first
				// option comes, after the matches loaded so far.
				p.rule.Matches = append(p.rule.Matches, m)
				return nil
			}
			r.i = save
		}
	}
	return fmt.Errorf("unknown option %q", opt)
}

// offerLoaded offers an option to the target, then to the loaded
// matches, the most recently loaded first, as in xtables.
func (p *ruleParser) offerLoaded(opt string, inv bool, r *argReader) (bool, error) {
	if p.target != nil {
		if ok, err := p.extOpt1(p.target, opt, inv, r); ok || err != nil {
			return ok, err
		}
	}
	for i := len(p.rule.Matches) - 1; i >= 0; i-- {
		if ok, err := p.extOpt1(p.rule.Matches[i], opt, inv, r); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// globalLongOpts are iptables' own long options, which compete with the
// extensions' for an abbreviation.
var globalLongOpts = []string{"--table", "--numeric", "--verbose", "--exact", "--line-numbers",
	"--wait", "--wait-interval", "--ipv4", "--ipv6", "--version", "--modprobe", "--help"}

// abbrev returns the one option name of the loaded extensions (and
// iptables' own options) that opt abbreviates, as getopt_long does.
func (p *ruleParser) abbrev(opt string) (string, bool) {
	if !strings.HasPrefix(opt, "--") || len(opt) < 3 {
		return "", false
	}
	var names []string
	exts := append([]any{p.target}, anySlice(p.rule.Matches)...)
	for _, e := range exts {
		if n, ok := e.(interface{ optNames() []string }); ok {
			names = append(names, n.optNames()...)
		}
	}
	global := append([]string(nil), globalLongOpts...)
	for k := range longHeaderOpts {
		global = append(global, k)
	}
	for k := range longCommands {
		global = append(global, k)
	}
	found, ext := map[string]bool{}, false
	for i, n := range append(names, global...) {
		if strings.HasPrefix(n, opt) && n != opt {
			found[n] = true
			ext = i < len(names)
		}
	}
	if len(found) != 1 || !ext {
		return "", false
	}
	for n := range found {
		return n, true
	}
	return "", false
}

// uniquePrefix returns the one name in names that opt abbreviates (or
// equals).
func uniquePrefix(names []string, opt string) (string, bool) {
	match := ""
	for _, n := range names {
		if n == opt {
			return n, true
		}
		if strings.HasPrefix(n, opt) && len(opt) > 2 {
			if match != "" && match != n {
				return "", false
			}
			match = n
		}
	}
	return match, match != ""
}

func anySlice(ms []Match) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// extOpt1 offers an option to one match or target.
func (p *ruleParser) extOpt1(ext any, opt string, inv bool, r *argReader) (bool, error) {
	op, ok := ext.(optionParser)
	if !ok {
		return false, nil
	}
	return op.parseOpt(&optCtx{p: p, ext: ext, opt: opt, inv: inv, r: r})
}

// finish checks what a complete rule needs: required options of each
// match and target, and protocol requirements.
func (p *ruleParser) finish() error {
	if (len(p.srcs) > 1 || len(p.dsts) > 1) && (p.rule.Src.Invert || p.rule.Dst.Invert) {
		return fmt.Errorf("! not allowed with multiple source or destination IP addresses")
	}
	// As iptables: every parameter check (each extension's final check)
	// before the checks the kernel would make.
	for _, m := range p.rule.Matches {
		if f, ok := m.(finisher); ok {
			if err := f.finish(&optCtx{p: p, ext: m}); err != nil {
				return err
			}
		}
	}
	if f, ok := p.target.(finisher); ok {
		if err := f.finish(&optCtx{p: p, ext: p.target}); err != nil {
			return err
		}
	}
	for _, m := range p.rule.Matches {
		if err := m.check(&p.rule, p.fam); err != nil {
			return kernel(err)
		}
	}
	p.rule.Target = p.target
	return nil
}

// expand makes one rule per source × destination address.
func (p *ruleParser) expand() []*Rule {
	srcs, dsts := p.srcs, p.dsts
	if srcs == nil {
		srcs = []netip.Prefix{{}}
	}
	if dsts == nil {
		dsts = []netip.Prefix{{}}
	}
	var out []*Rule
	for _, s := range srcs {
		for _, d := range dsts {
			r := p.rule.clone(false)
			r.Src.Prefix, r.Dst.Prefix = s, d
			if p.counters != nil {
				r.counters.set(p.counters[0], p.counters[1])
			}
			out = append(out, r)
		}
	}
	return out
}
