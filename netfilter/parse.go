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
		if v == "+" && !inv {
			// Matches every interface: iptables stores nothing.
			return nil
		}
		// "! -i +" is kept: it matches nothing, though iptables-save
		// does not print it (see ruleArgs).
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

func (p *ruleParser) loadMatch(name string) error {
	var m Match
	// A repeated -m NAME loads a second instance, as iptables-legacy
	// does (iptables-nft would merge them); options go to the newest.
	switch name {
	case "tcp":
		m = &TCP{}
	case "udp":
		m = &UDP{}
	case "icmp":
		if p.fam == IPv6 {
			return fmt.Errorf("couldn't load match \"icmp\" for ip6tables (use -m icmp6)")
		}
		m = &ICMP{Type: 0xff, AnyCode: true}
	case "icmp6", "icmpv6":
		if p.fam == IPv4 {
			return fmt.Errorf("couldn't load match %q for iptables (use -m icmp)", name)
		}
		m = &ICMP{V6: true, AnyCode: true, Type: 0xff}
	case "multiport":
		m = &Multiport{}
	case "conntrack":
		m = &Conntrack{}
	case "state":
		m = &State{}
	case "mark":
		m = &MarkMatch{}
	case "connmark":
		m = &ConnmarkMatch{}
	case "limit":
		m = &Limit{Avg: limitScale * 60 * 60 / 3, Burst: 5}
	case "comment":
		m = &Comment{}
	case "iprange":
		m = &IPRange{}
	case "set":
		m = &SetMatch{}
	default:
		return fmt.Errorf("couldn't load match %q: no such extension", name)
	}
	p.rule.Matches = append(p.rule.Matches, m)
	p.cur = m
	return nil
}

func (p *ruleParser) loadTarget(name string, isGoto bool) error {
	if isGoto {
		if err := checkChainName(name); err != nil {
			return err
		}
		p.target = Goto{Chain: name}
		return nil
	}
	switch name {
	case "ACCEPT":
		p.target = Accept{}
	case "DROP":
		p.target = Drop{}
	case "RETURN":
		p.target = Return{}
	case "REJECT":
		p.target = &Reject{}
	case "LOG":
		p.target = &Log{Level: 4}
	case "DNAT":
		p.target = &DNAT{}
	case "SNAT":
		p.target = &SNAT{}
	case "MASQUERADE":
		p.target = &Masquerade{}
	case "REDIRECT":
		p.target = &Redirect{}
	case "MARK":
		p.target = &Mark{}
	case "CONNMARK":
		p.target = &Connmark{NFMask: 0xffffffff, CTMask: 0xffffffff}
	case "TTL":
		p.target = &TTL{}
	case "HL":
		p.target = &TTL{HL: true}
	case "TOS":
		p.target = &TOS{}
	case "DSCP":
		p.target = &DSCP{}
	default:
		// Anything else is a jump to a user chain; whether the chain
		// exists is checked against the table when the rule is added.
		if err := checkChainName(name); err != nil {
			return err
		}
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
	if p.target != nil {
		if ok, err := p.targetOpt(opt, inv, r); ok || err != nil {
			return err
		}
	}
	// The most recently loaded match gets first pick, then the others,
	// newest first, as in xtables.
	for i := len(p.rule.Matches) - 1; i >= 0; i-- {
		if ok, err := p.matchOpt(p.rule.Matches[i], opt, inv, r); ok || err != nil {
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
			if ok, err := p.matchOpt(m, opt, inv, r); err != nil {
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

func (p *ruleParser) optOnce(m any, opt string) error {
	key := fmt.Sprintf("%p%s", m, opt)
	if p.tgtSeen[key] {
		return fmt.Errorf("multiple %s flags not allowed", opt)
	}
	p.tgtSeen[key] = true
	return nil
}

func (p *ruleParser) matchOpt(m Match, opt string, inv bool, r *argReader) (bool, error) {
	val := func() (string, error) {
		if err := p.optOnce(m, opt); err != nil {
			return "", err
		}
		v, err := r.next(opt)
		if err == nil && v == "!" {
			return "", fmt.Errorf("intrapositioned negation (%s ! X) is not supported; write ! %s X", opt, opt)
		}
		return v, err
	}
	ports := func(dst *Ports) error {
		v, err := val()
		if err != nil {
			return err
		}
		pr, err := parsePortRange(v)
		if err != nil {
			return err
		}
		// libxt_tcp refuses min > max; libxt_udp accepts it (the
		// range then matches nothing).
		if _, udp := m.(*UDP); pr.Lo > pr.Hi && !udp {
			return fmt.Errorf("invalid portrange %q (min > max)", v)
		}
		*dst = Ports{Set: true, Range: pr, Invert: inv}
		return nil
	}
	noInv := func() error {
		if inv {
			return fmt.Errorf("option %s cannot be negated", opt)
		}
		return nil
	}
	switch m := m.(type) {
	case *TCP:
		switch opt {
		case "--sport", "--source-port":
			return true, ports(&m.SrcPorts)
		case "--dport", "--destination-port":
			return true, ports(&m.DstPorts)
		case "--syn":
			if err := p.optOnce(m, "--tcp-flags"); err != nil {
				return true, err
			}
			m.Flags = TCPFlags{Set: true, Mask: TCPFin | TCPSyn | TCPRst | TCPAck, Comp: TCPSyn, Invert: inv}
			return true, nil
		case "--tcp-flags":
			mask, err := val()
			if err != nil {
				return true, err
			}
			comp, err := r.next(opt)
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
			m.Flags = TCPFlags{Set: true, Mask: mk, Comp: cp, Invert: inv}
			return true, nil
		}
	case *UDP:
		switch opt {
		case "--sport", "--source-port":
			return true, ports(&m.SrcPorts)
		case "--dport", "--destination-port":
			return true, ports(&m.DstPorts)
		}
	case *ICMP:
		if (!m.V6 && opt == "--icmp-type") || (m.V6 && opt == "--icmpv6-type") {
			v, err := val()
			if err != nil {
				return true, err
			}
			n, err := parseICMPType(v, m.V6)
			if err != nil {
				return true, err
			}
			*m = *n
			m.Invert = inv
			return true, nil
		}
	case *Multiport:
		dir := map[string]MultiportDir{"--sports": MultiportSrc, "--source-ports": MultiportSrc,
			"--dports": MultiportDst, "--destination-ports": MultiportDst, "--ports": MultiportBoth}
		if d, ok := dir[opt]; ok {
			if m.Ports != nil {
				return true, fmt.Errorf("multiport can only have one option")
			}
			v, err := val()
			if err != nil {
				return true, err
			}
			if m.Ports, err = parseMultiport(v); err != nil {
				return true, err
			}
			m.Dir, m.Invert = d, inv
			return true, nil
		}
	case *Conntrack:
		if opt == "--ctstate" {
			v, err := val()
			if err != nil {
				return true, err
			}
			st, err := parseCTStates(v)
			m.States, m.Invert = st, inv
			return true, err
		}
	case *State:
		if opt == "--state" {
			v, err := val()
			if err != nil {
				return true, err
			}
			st, err := parseCTStates(v)
			m.States, m.Invert = st, inv
			return true, err
		}
	case *MarkMatch:
		if opt == "--mark" {
			return true, parseMarkOption(val, inv, &m.Value, &m.Mask, &m.Invert)
		}
	case *ConnmarkMatch:
		if opt == "--mark" {
			return true, parseMarkOption(val, inv, &m.Value, &m.Mask, &m.Invert)
		}
	case *Limit:
		switch opt {
		case "--limit":
			if err := noInv(); err != nil {
				return true, err
			}
			v, err := val()
			if err != nil {
				return true, err
			}
			l, err := parseLimit(v, m.Burst)
			if err != nil {
				return true, err
			}
			m.Avg = l.Avg
			return true, nil
		case "--limit-burst":
			if err := noInv(); err != nil {
				return true, err
			}
			v, err := val()
			if err != nil {
				return true, err
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n > 10000 {
				return true, fmt.Errorf("bad --limit-burst %q (0 to 10000)", v)
			}
			m.Burst = uint32(n)
			return true, nil
		}
	case *Comment:
		if opt == "--comment" {
			if err := noInv(); err != nil {
				return true, err
			}
			v, err := val()
			if err != nil {
				return true, err
			}
			// iptables truncates to the kernel's 255 bytes.
			if len(v) > 255 {
				v = v[:255]
			}
			m.Text = v
			return true, nil
		}
	case *IPRange:
		if opt == "--src-range" || opt == "--dst-range" {
			v, err := val()
			if err != nil {
				return true, err
			}
			ar, err := parseAddrRange(v, p.fam)
			if err != nil {
				return true, err
			}
			ar.Invert = inv
			if opt == "--src-range" {
				m.Src = ar
			} else {
				m.Dst = ar
			}
			return true, nil
		}
	case *SetMatch:
		if opt == "--match-set" || opt == "--set" {
			v, err := val()
			if err != nil {
				return true, err
			}
			dirs, err := r.next(opt)
			if err != nil {
				return true, err
			}
			m.SetName, m.Invert = v, inv
			first, _, _ := strings.Cut(dirs, ",")
			switch first {
			case "src":
				m.Dst = false
			case "dst":
				m.Dst = true
			default:
				return true, fmt.Errorf("--match-set %s: bad direction %q (want src or dst)", v, dirs)
			}
			for _, d := range strings.Split(dirs, ",") {
				if d != "src" && d != "dst" {
					return true, fmt.Errorf("--match-set %s: bad direction %q (want src or dst)", v, d)
				}
			}
			if p.sets != nil {
				s := p.sets(v)
				if s == nil {
					return true, fmt.Errorf("set %q doesn't exist", v)
				}
				if (s.Family() == ipset.Inet6) != (p.fam == IPv6) {
					return true, fmt.Errorf("set %q has family %s, not usable from %s", v, s.Family(), p.fam)
				}
				m.set = s
			}
			return true, nil
		}
	}
	return false, nil
}

func (p *ruleParser) targetOpt(opt string, inv bool, r *argReader) (bool, error) {
	val := func() (string, error) {
		if inv {
			return "", fmt.Errorf("option %s cannot be negated", opt)
		}
		if err := p.optOnce(p, opt); err != nil {
			return "", err
		}
		return r.next(opt)
	}
	flag := func(b *bool) (bool, error) {
		if inv {
			return true, fmt.Errorf("option %s cannot be negated", opt)
		}
		if err := p.optOnce(p, opt); err != nil {
			return true, err
		}
		*b = true
		return true, nil
	}
	markOp := func(v *uint32, m *uint32) (bool, error) {
		if p.tgtSeen["markop"] {
			return true, fmt.Errorf("%s: only one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark allowed", p.target.Name())
		}
		p.tgtSeen["markop"] = true
		s, err := val()
		if err != nil {
			return true, err
		}
		switch opt {
		case "--set-xmark":
			*v, *m, err = parseValueMask(s)
		case "--set-mark":
			*v, *m, err = parseValueMask(s)
			*m |= *v
		case "--and-mark", "--or-mark", "--xor-mark":
			var x uint32
			if x, err = parseUint32(s); err == nil {
				*v, *m = map[string][2]uint32{"--and-mark": {0, ^x}, "--or-mark": {x, x}, "--xor-mark": {x, 0}}[opt][0],
					map[string][2]uint32{"--and-mark": {0, ^x}, "--or-mark": {x, x}, "--xor-mark": {x, 0}}[opt][1]
			}
		}
		return true, err
	}
	switch t := p.target.(type) {
	case *Reject:
		if opt == "--reject-with" {
			v, err := val()
			if err != nil {
				return true, err
			}
			t.With, err = parseRejectWith(v, p.fam)
			return true, err
		}
	case *Log:
		switch opt {
		case "--log-prefix":
			v, err := val()
			if err != nil {
				return true, err
			}
			if v == "" {
				return true, fmt.Errorf("--log-prefix: argument must have a minimum length of 1 characters")
			}
			// iptables truncates long prefixes to the kernel's 29 bytes.
			if len(v) > 29 {
				v = v[:29]
			}
			t.Prefix = v
			return true, nil
		case "--log-level":
			v, err := val()
			if err != nil {
				return true, err
			}
			t.Level, err = parseLogLevel(v)
			return true, err
		}
		for _, f := range logFlagOpts {
			if opt == f.opt {
				var b bool
				if _, err := flag(&b); err != nil {
					return true, err
				}
				t.Flags |= f.bit
				return true, nil
			}
		}
	case *DNAT:
		switch opt {
		case "--to-destination", "--to":
			v, err := val()
			if err != nil {
				return true, err
			}
			t.To, err = parseNATRange(v, p.fam)
			return true, err
		case "--random":
			return flag(&t.Random)
		case "--persistent":
			return flag(&t.Persistent)
		}
	case *SNAT:
		switch opt {
		case "--to-source", "--to":
			v, err := val()
			if err != nil {
				return true, err
			}
			t.To, err = parseNATRange(v, p.fam)
			return true, err
		case "--random":
			return flag(&t.Random)
		case "--random-fully":
			return flag(&t.RandomFully)
		case "--persistent":
			return flag(&t.Persistent)
		}
	case *Masquerade, *Redirect:
		var lo, hi *uint16
		var fl *NATFlags
		var set *bool
		if m, ok := t.(*Masquerade); ok {
			lo, hi, fl, set = &m.PortLo, &m.PortHi, &m.NATFlags, &m.Ports
		} else {
			rd := t.(*Redirect)
			lo, hi, fl, set = &rd.PortLo, &rd.PortHi, &rd.NATFlags, &rd.Ports
		}
		switch opt {
		case "--to-ports", "--to-port":
			v, err := val()
			if err != nil {
				return true, err
			}
			*lo, *hi, err = parseToPorts(v)
			*set = true
			return true, err
		case "--random":
			return flag(&fl.Random)
		case "--random-fully":
			if _, ok := t.(*Masquerade); ok {
				return flag(&fl.RandomFully)
			}
		}
	case *Mark:
		switch opt {
		case "--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark":
			return markOp(&t.Value, &t.Mask)
		}
	case *Connmark:
		switch opt {
		case "--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark":
			t.Mode = ConnmarkSet
			return markOp(&t.Value, &t.Mask)
		case "--save-mark", "--restore-mark":
			if inv {
				return true, fmt.Errorf("option %s cannot be negated", opt)
			}
			if p.tgtSeen["markop"] {
				return true, fmt.Errorf("CONNMARK: only one of --set-mark, --save-mark, --restore-mark allowed")
			}
			p.tgtSeen["markop"] = true
			t.Mode = ConnmarkSave
			if opt == "--restore-mark" {
				t.Mode = ConnmarkRestore
			}
			return true, nil
		case "--nfmask", "--ctmask", "--mask":
			v, err := val()
			if err != nil {
				return true, err
			}
			n, err := parseUint32(v)
			switch opt {
			case "--nfmask":
				t.NFMask = n
			case "--ctmask":
				t.CTMask = n
			default:
				t.NFMask, t.CTMask = n, n
			}
			if opt != "--nfmask" {
				// In set mode the kernel's ctmask is the set
				// operation's mask: the later option wins.
				t.Mask = n
			}
			return true, err
		}
	case *TTL:
		pre := "--ttl-"
		if t.HL {
			pre = "--hl-"
		}
		for i, mode := range ttlModeNames {
			if opt == pre+mode {
				if p.tgtSeen["ttlop"] {
					return true, fmt.Errorf("%s: only one of %sset, %sdec, %sinc allowed", t.Name(), pre, pre, pre)
				}
				p.tgtSeen["ttlop"] = true
				v, err := val()
				if err != nil {
					return true, err
				}
				n, err := strconv.ParseUint(v, 10, 8)
				if err != nil {
					return true, fmt.Errorf("%s %q: value must be 0-255", opt, v)
				}
				if n == 0 && i != 0 {
					return true, fmt.Errorf("%s %q: changing by 0 makes no sense", opt, v)
				}
				t.Mode, t.Value = TTLMode(i), uint8(n)
				return true, nil
			}
		}
	case *TOS:
		switch opt {
		case "--set-tos", "--and-tos", "--or-tos", "--xor-tos":
			if p.tgtSeen["tosop"] {
				return true, fmt.Errorf("TOS: only one of --set-tos, --and-tos, --or-tos, --xor-tos allowed")
			}
			p.tgtSeen["tosop"] = true
			v, err := val()
			if err != nil {
				return true, err
			}
			if opt == "--set-tos" {
				t.Value, t.Mask, err = parseTOS(v)
				return true, err
			}
			n, err := strconv.ParseUint(v, 0, 8)
			if err != nil {
				return true, fmt.Errorf("bad TOS value %q", v)
			}
			x := uint8(n)
			switch opt {
			case "--and-tos":
				t.Value, t.Mask = 0, ^x
			case "--or-tos":
				t.Value, t.Mask = x, x
			default:
				t.Value, t.Mask = x, 0
			}
			return true, nil
		}
	case *DSCP:
		switch opt {
		case "--set-dscp", "--set-dscp-class":
			if p.tgtSeen["dscpop"] {
				return true, fmt.Errorf("DSCP: only one of --set-dscp, --set-dscp-class allowed")
			}
			p.tgtSeen["dscpop"] = true
			v, err := val()
			if err != nil {
				return true, err
			}
			if opt == "--set-dscp-class" {
				c, ok := dscpClasses[strings.ToUpper(v)]
				if !ok {
					return true, fmt.Errorf("invalid DSCP class %q", v)
				}
				t.Value = c
				return true, nil
			}
			n, err := strconv.ParseUint(v, 0, 8)
			if err != nil || n > 63 {
				return true, fmt.Errorf("DSCP value %q out of range 0-63", v)
			}
			t.Value = uint8(n)
			return true, nil
		}
	}
	return false, nil
}

// finish checks what a complete rule needs: required options of each
// match and target, and protocol requirements.
func (p *ruleParser) finish() error {
	for _, m := range p.rule.Matches {
		switch m := m.(type) {
		case *Multiport:
			if m.Ports == nil {
				return fmt.Errorf("multiport: one of --sports, --dports or --ports is required")
			}
		case *Conntrack:
			if m.States == 0 {
				return fmt.Errorf("conntrack: at least one option is required")
			}
		case *State:
			if m.States == 0 {
				return fmt.Errorf("state: option --state must be specified")
			}
		case *MarkMatch, *ConnmarkMatch:
			if !p.seenOpt(m, "--mark") {
				return fmt.Errorf("%s match: option --mark must be specified", m.Name())
			}
		case *Comment:
			if !p.seenOpt(m, "--comment") {
				return fmt.Errorf("comment: option --comment must be specified")
			}
		case *SetMatch:
			if m.SetName == "" {
				return fmt.Errorf("set: option --match-set must be specified")
			}
		}
		if err := m.check(&p.rule, p.fam); err != nil {
			return err
		}
	}
	switch t := p.target.(type) {
	case *DNAT:
		if !t.To.From.IsValid() && !t.To.hasPorts() {
			return fmt.Errorf("DNAT: option --to-destination must be specified")
		}
	case *SNAT:
		if !t.To.From.IsValid() && !t.To.hasPorts() {
			return fmt.Errorf("SNAT: option --to-source must be specified")
		}
	case *Mark:
		if !p.tgtSeen["markop"] {
			return fmt.Errorf("MARK target: parameter --set/and/or/xor-mark is required")
		}
	case *Connmark:
		if !p.tgtSeen["markop"] {
			return fmt.Errorf("CONNMARK target: no operation specified")
		}
	case *TTL:
		if !p.tgtSeen["ttlop"] {
			return fmt.Errorf("%s: you must specify an action", t.Name())
		}
	case *TOS:
		if !p.tgtSeen["tosop"] {
			return fmt.Errorf("TOS: an action is required")
		}
	case *DSCP:
		if !p.tgtSeen["dscpop"] {
			return fmt.Errorf("DSCP target: parameter --set-dscp is required")
		}
	}
	p.rule.Target = p.target
	return nil
}

func (p *ruleParser) seenOpt(m any, opt string) bool { return p.tgtSeen[fmt.Sprintf("%p%s", m, opt)] }

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

// parseMarkOption parses "--mark VALUE[/MASK]", shared by -m mark and
// -m connmark.
func parseMarkOption(val func() (string, error), inv bool, value, mask *uint32, invert *bool) error {
	v, err := val()
	if err != nil {
		return err
	}
	*value, *mask, err = parseValueMask(v)
	*invert = inv
	return err
}
