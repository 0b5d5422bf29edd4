package difftest

import (
	"math/rand/v2"
	"strings"
)

// Case is one iptables command line (without the program name) for
// family 4 (iptables) or 6 (ip6tables).
type Case struct {
	Fam  int
	Args []string
}

// Table returns the table the command applies to.
func (c Case) Table() string {
	for i, a := range c.Args {
		if (a == "-t" || a == "--table") && i+1 < len(c.Args) {
			return c.Args[i+1]
		}
	}
	return "filter"
}

// Chain returns the chain the command names (the new name for -E), or
// "" when it names none.
func (c Case) Chain() string {
	for i, a := range c.Args {
		if i+1 >= len(c.Args) || strings.HasPrefix(c.Args[i+1], "-") {
			continue
		}
		switch a {
		case "-E", "--rename-chain":
			if i+2 < len(c.Args) {
				return c.Args[i+2]
			}
		case "-A", "-I", "-D", "-R", "-C", "-N", "-P", "-F", "-Z", "-X", "-L", "-S",
			"--append", "--insert", "--delete", "--replace", "--check", "--new-chain", "--policy",
			"--flush", "--zero", "--delete-chain", "--list", "--list-rules":
			return c.Args[i+1]
		}
	}
	return ""
}

// String formats c as a corpus line: the family, then the arguments,
// quoted where they hold spaces or are empty.
func (c Case) String() string {
	var b strings.Builder
	b.WriteString(map[int]string{4: "4", 6: "6"}[c.Fam])
	for _, a := range c.Args {
		b.WriteByte(' ')
		if a == "" || strings.ContainsAny(a, " \t\"'\\") {
			b.WriteString(`"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`)
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// opt is one option of an extension with the values to try, valid and
// not; an empty vals means a flag without argument.
type opt struct {
	name string
	vals []string
	neg  bool // may be negated
}

// ext is a match or target extension.
type ext struct {
	name string
	opts []opt
	fam  int // 0 both, 4 or 6 only
}

var (
	ports   = []string{"22", "0", "65535", "~65536", "1:1024", "~1024:1", ":80", "80:", "http", "~nosuchsvc", "~-1", "0:65535", "5:5"}
	marks   = []string{"1", "0x10/0xff", "0xffffffff", "~0x100000000", "~abc", "0/0", "010"}
	states  = []string{"NEW", "ESTABLISHED,RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT", "NEW,DNAT", "~BOGUS", "~new", "RELATED,ESTABLISHED"}
	natTo4  = []string{"10.0.0.1", "10.0.0.1:80", "10.0.0.1-10.0.0.5", "10.0.0.1:80-90", ":80", "~10.0.0.1:90-80", "~bad", "~fd00::1"}
	natTo6  = []string{"fd00::1", "[fd00::1]:80", "fd00::1-fd00::5", "[fd00::1]:80-90", "~10.0.0.1", "~bad"}
	toPorts = []string{"8080", "8080-8090", "~0", "~65536", "~9000-8000", "~abc", "1-65535"}
)

var matches4 = []ext{
	{name: "tcp", opts: []opt{{"--dport", ports, true}, {"--sport", ports, true}, {"--syn", nil, true},
		{"--tcp-flags", []string{"SYN,ACK SYN", "ALL NONE", "FIN,SYN,RST,ACK SYN", "~BOGUS SYN", "ALL ALL"}, true}}},
	{name: "udp", opts: []opt{{"--dport", ports, true}, {"--sport", ports, true}}},
	{name: "icmp", fam: 4, opts: []opt{{"--icmp-type", []string{"echo-request", "8", "8/0", "~3/255", "255", "~256", "any", "destination-unreachable", "port-unreachable", "~bogus"}, true}}},
	{name: "icmp6", fam: 6, opts: []opt{{"--icmpv6-type", []string{"echo-request", "128", "1/4", "neighbour-solicitation", "~256", "any", "~bogus"}, true}}},
	{name: "multiport", opts: []opt{{"--dports", []string{"22,80,443", "1:1024,8080", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "~1:2:3", "~80,", "http,https"}, true},
		{"--sports", []string{"22,80", "1024:65535"}, true}, {"--ports", []string{"53,123", "~0:0"}, true}}},
	{name: "conntrack", opts: []opt{{"--ctstate", states, true}}},
	{name: "state", opts: []opt{{"--state", states, true}}},
	{name: "mark", opts: []opt{{"--mark", marks, true}}},
	{name: "connmark", opts: []opt{{"--mark", marks, true}}},
	{name: "limit", opts: []opt{{"--limit", []string{"1/s", "3/min", "100/hour", "5/day", "~0/s", "~10001/s", "1/sec", "1/second", "~abc", "~1000000/s", "1/minute", "10000/s", "1", "2/d"}, false},
		{"--limit-burst", []string{"~0", "5", "10000", "~10001", "~abc", "1"}, false}}},
	{name: "comment", opts: []opt{{"--comment", []string{"hello", "with space", "", strings.Repeat("c", 256), strings.Repeat("c", 255), `q"uote`}, false}}},
	{name: "iprange", opts: []opt{{"--src-range", []string{"10.0.0.1-10.0.0.9", "10.0.0.9-10.0.0.1", "10.0.0.1", "~fd00::1-fd00::2", "~bad"}, true},
		{"--dst-range", []string{"192.168.0.1-192.168.0.200", "~fd00::1-fd00::9"}, true}}},
	{name: "set", opts: []opt{{"--match-set", []string{"s4 src", "s4 src,dst", "n4 dst", "s6 src", "n6 dst,src", "s4 src,dst,src",
		"~nosuch src", "~s4 bogus", "~s4 src,dst,src,dst,src,dst,src", "~n4"}, true},
		{"--return-nomatch", nil, false}, {"--update-counters", nil, true}, {"--packets-gt", []string{"5"}, false}}},
	{name: "nosuchmatch", opts: nil},
}

var targets = []ext{
	{name: "ACCEPT"}, {name: "DROP"}, {name: "RETURN"},
	{name: "REJECT", opts: []opt{{"--reject-with", []string{"icmp-port-unreachable", "icmp-net-unreachable", "icmp-host-unreachable",
		"icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited", "icmp-admin-prohibited", "tcp-reset",
		"~icmp6-port-unreachable", "~icmp6-adm-prohibited", "~no-route", "~icmp6-no-route", "~addr-unreach", "~bogus", "~port-unreach"}, false}}},
	{name: "LOG", opts: []opt{{"--log-prefix", []string{"x", "", "with space: ", strings.Repeat("p", 30), `a"b`, "fw: "}, false},
		{"--log-level", []string{"4", "debug", "7", "~8", "warning", "~bogus", "emerg", "warn"}, false},
		{"--log-tcp-sequence", nil, false}, {"--log-tcp-options", nil, false}, {"--log-ip-options", nil, false}, {"--log-uid", nil, false}}},
	{name: "DNAT", opts: []opt{{"--to-destination", nil, false}, {"--random", nil, false}, {"--persistent", nil, false}}},
	{name: "SNAT", opts: []opt{{"--to-source", nil, false}, {"--random", nil, false}, {"--random-fully", nil, false}, {"--persistent", nil, false}}},
	{name: "MASQUERADE", opts: []opt{{"--to-ports", toPorts, false}, {"--random", nil, false}, {"--random-fully", nil, false}}},
	{name: "REDIRECT", opts: []opt{{"--to-ports", toPorts, false}, {"--random", nil, false}}},
	{name: "MARK", opts: []opt{{"--set-mark", marks, false}, {"--set-xmark", marks, false}, {"--and-mark", marks, false}, {"--or-mark", marks, false}, {"--xor-mark", marks, false}}},
	{name: "CONNMARK", opts: []opt{{"--set-mark", marks, false}, {"--save-mark", nil, false}, {"--restore-mark", nil, false},
		{"--nfmask", marks, false}, {"--ctmask", marks, false}, {"--mask", marks, false}}},
	{name: "TTL", fam: 4, opts: []opt{{"--ttl-set", []string{"0", "1", "64", "255", "~256"}, false}, {"--ttl-dec", []string{"~0", "1", "255"}, false}, {"--ttl-inc", []string{"1", "5"}, false}}},
	{name: "HL", fam: 6, opts: []opt{{"--hl-set", []string{"0", "64", "255", "~256"}, false}, {"--hl-dec", []string{"~0", "1"}, false}, {"--hl-inc", []string{"1"}, false}}},
	{name: "TOS", opts: []opt{{"--set-tos", []string{"0x10", "0x10/0x3f", "Minimize-Delay", "Normal-Service", "~0x100", "~bogus"}, false},
		{"--and-tos", []string{"0x0f", "~300"}, false}, {"--or-tos", []string{"0x01"}, false}, {"--xor-tos", []string{"0x02"}, false}}},
	{name: "DSCP", opts: []opt{{"--set-dscp", []string{"0", "10", "63", "~64", "0x3f", "~abc"}, false}, {"--set-dscp-class", []string{"EF", "AF11", "cs1", "~bogus", "af41"}, false}}},
	{name: "SET", opts: []opt{{"--add-set", []string{"s4 src", "n4 dst,src"}, false}, {"--del-set", []string{"s4 dst"}, false}, {"--exist", nil, false}}},
}

// value picks one of vals: mostly a valid one; values written "~V" are
// (likely) invalid and picked 15% of the time.
func (g *Gen) value(vals []string) string {
	var good, bad []string
	for _, v := range vals {
		if strings.HasPrefix(v, "~") {
			bad = append(bad, v[1:])
		} else {
			good = append(good, v)
		}
	}
	if len(bad) > 0 && (len(good) == 0 || g.chance(0.15)) {
		return g.pick(bad)
	}
	return g.pick(good)
}

// Gen generates command lines from the grammar above.
type Gen struct {
	r *rand.Rand
}

// NewGen returns a generator with a fixed seed.
func NewGen(seed uint64) *Gen { return &Gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g *Gen) pick(s []string) string { return s[g.r.IntN(len(s))] }
func (g *Gen) chance(p float64) bool  { return g.r.Float64() < p }

var tableChains = map[string][]string{
	"raw":    {"PREROUTING", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
}

var tables = []string{"raw", "mangle", "nat", "filter"}

// chain picks a chain: mostly one of the table's, sometimes one of
// another table's, the user chain or a missing one.
func (g *Gen) chain(table string) string {
	switch x := g.r.IntN(20); {
	case x < 15:
		return g.pick(tableChains[table])
	case x < 19:
		return "uc"
	case x < 19:
		return "nochain"
	default:
		return g.pick(tableChains[g.pick(tables)])
	}
}

// Next returns a new command.
func (g *Gen) Next() Case {
	c := Case{Fam: 4}
	if g.chance(0.3) {
		c.Fam = 6
	}
	table := g.pick(tables)
	if table != "filter" || g.chance(0.5) {
		c.Args = []string{"-t", table}
	}
	ch := g.chain(table)
	switch x := g.r.IntN(100); {
	case x < 62:
		c.Args = append(c.Args, "-A", ch)
		c.Args = append(c.Args, g.rule(c.Fam, table)...)
	case x < 70:
		c.Args = append(c.Args, "-I", ch)
		if g.chance(0.5) {
			c.Args = append(c.Args, g.pick([]string{"1", "2", "3", "0"}))
		}
		c.Args = append(c.Args, g.rule(c.Fam, table)...)
	case x < 76:
		c.Args = append(c.Args, "-D", ch)
		if g.chance(0.4) {
			c.Args = append(c.Args, g.pick([]string{"1", "2", "5"}))
		} else {
			c.Args = append(c.Args, g.rule(c.Fam, table)...)
		}
	case x < 79:
		c.Args = append(c.Args, "-R", ch, g.pick([]string{"1", "2"}))
		c.Args = append(c.Args, g.rule(c.Fam, table)...)
	case x < 83:
		c.Args = append(c.Args, "-C", ch)
		c.Args = append(c.Args, g.rule(c.Fam, table)...)
	case x < 87:
		c.Args = append(c.Args, "-N", g.pick([]string{"newchain", "uc", "ACCEPT", "-bad", strings.Repeat("n", 29), strings.Repeat("n", 28), "INPUT", "a b"}))
	case x < 91:
		c.Args = append(c.Args, "-X")
		if g.chance(0.8) {
			c.Args = append(c.Args, g.pick([]string{ch, "uc", "uc2", "nochain"}))
		}
	case x < 93:
		c.Args = append(c.Args, "-E", g.pick([]string{"uc", "uc2", ch}), g.pick([]string{"renamed", "uc2", "INPUT", "DROP"}))
	case x < 97:
		c.Args = append(c.Args, "-P", ch, g.pick([]string{"ACCEPT", "DROP", "RETURN", "REJECT", "uc"}))
	case x < 97:
		c.Args = append(c.Args, "-F")
		if g.chance(0.5) {
			c.Args = append(c.Args, ch)
		}
	case x < 98:
		c.Args = append(c.Args, "-Z")
		if g.chance(0.5) {
			c.Args = append(c.Args, ch)
		}
	default:
		c.Args = append(c.Args, g.list(ch)...)
	}
	return c
}

// list builds a listing command: -L or -S, maybe with a chain and a
// rule number, maybe with -Z, and some of -L's formatting flags.
func (g *Gen) list(ch string) []string {
	a := []string{g.pick([]string{"-L", "-L", "-S"})}
	if g.chance(0.6) {
		a = append(a, ch)
		if g.chance(0.4) {
			a = append(a, g.pick([]string{"1", "2", "0"}))
		}
	}
	for _, f := range []string{"-n", "-v", "-x", "--line-numbers", "-Z"} {
		if g.chance(0.3) {
			a = append(a, f)
		}
	}
	if g.chance(0.2) {
		g.r.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] })
	}
	return a
}

// rule builds a rule specification as groups of arguments (header
// options, matches with their options, the target with its options),
// sometimes shuffled.
func (g *Gen) rule(fam int, table string) []string {
	var groups [][]string
	proto := ""
	neg := func(p float64, a ...string) []string {
		if g.chance(p) {
			return append([]string{"!"}, a...)
		}
		return a
	}
	if g.chance(0.6) {
		proto = g.value([]string{"tcp", "tcp", "udp", "udp", "icmp", "ipv6-icmp", "icmpv6", "all", "6", "17", "~256", "sctp", "gre", "TCP", "~foo", "0"})
		groups = append(groups, neg(0.1, "-p", proto))
	}
	addrs := []string{"10.0.0.1", "10.0.0.0/8", "10.1.2.3/8", "0/0", "192.168.1.0/255.255.255.0", "~10.0.0.0/33", "~300.1.1.1", "10.0.0.1,10.0.0.2", "~fd00::1", "198.18.0.0/15", "10.0.0.0/255.0.255.0"}
	if fam == 6 {
		addrs = []string{"::1", "fd00::/8", "fd00::1/128", "~2001:db8::/129", "~10.0.0.1", "::/0", "fd00::1,fd00::2", "fd00::5/64"}
	}
	for _, o := range []string{"-s", "-d"} {
		if g.chance(0.2) {
			groups = append(groups, neg(0.15, o, g.value(addrs)))
		}
	}
	for _, o := range []string{"-i", "-o"} {
		if g.chance(0.15) {
			groups = append(groups, neg(0.15, o, g.value([]string{"tun0", "eth+", "lo", "~averyveryverylongname0", "a/b", "+"})))
		}
	}
	if (proto == "tcp" || proto == "udp") && g.chance(0.4) {
		groups = append(groups, g.options(matches4[map[string]int{"tcp": 0, "udp": 1}[proto]], fam, 1+g.r.IntN(2)))
	}
	for n := g.r.IntN(3); n > 0; n-- {
		m := matches4[g.r.IntN(len(matches4))]
		if m.fam != 0 && m.fam != fam && g.chance(0.8) || m.opts == nil && g.chance(0.8) {
			continue
		}
		if proto == "" && g.chance(0.8) {
			// Give port matches the protocol they need, mostly.
			switch m.name {
			case "tcp", "udp":
				proto = m.name
			case "multiport":
				proto = g.pick([]string{"tcp", "udp"})
			case "icmp":
				proto = "icmp"
			case "icmp6":
				proto = "ipv6-icmp"
			}
			if proto != "" {
				groups = append([][]string{{"-p", proto}}, groups...)
			}
		}
		groups = append(groups, append([]string{"-m", m.name}, g.options(m, fam, 1+g.r.IntN(2))...))
	}
	if g.chance(0.93) {
		groups = append(groups, g.target(fam, table))
	}
	if g.chance(0.15) {
		g.r.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	}
	var out []string
	for _, gr := range groups {
		out = append(out, gr...)
	}
	return out
}

func (g *Gen) target(fam int, table string) []string {
	switch x := g.r.IntN(20); {
	case x < 2:
		return []string{"-j", "uc"}
	case x < 3:
		return []string{"-g", "uc"}
	case x < 3 || (x < 4 && g.chance(0.3)):
		return []string{"-j", g.pick([]string{"nochain", "INPUT", "QUEUE"})}
	}
	t := targets[g.r.IntN(len(targets))]
	if table == "nat" && g.chance(0.3) {
		t = targets[5+g.r.IntN(4)]
	}
	if table == "mangle" && g.chance(0.3) {
		t = targets[9+g.r.IntN(6)]
	}
	return append([]string{"-j", t.name}, g.options(t, fam, g.r.IntN(3))...)
}

// options picks n options of e (each at most once, mostly), with values.
func (g *Gen) options(e ext, fam int, n int) []string {
	var out []string
	if len(e.opts) == 0 {
		return nil
	}
	used := map[int]bool{}
	for i := 0; i < n; i++ {
		k := g.r.IntN(len(e.opts))
		if used[k] && g.chance(0.9) {
			continue // mostly each option once, as is valid
		}
		used[k] = true
		o := e.opts[k]
		if o.neg && g.chance(0.15) {
			out = append(out, "!")
		}
		out = append(out, o.name)
		vals := o.vals
		switch o.name {
		case "--to-destination", "--to-source":
			vals = natTo4
			if fam == 6 {
				vals = natTo6
			}
		}
		if len(vals) > 0 {
			v := g.value(vals)
			if o.name == "--tcp-flags" || strings.HasSuffix(o.name, "-set") {
				out = append(out, strings.Fields(v)...)
			} else {
				out = append(out, v)
			}
		}
	}
	return out
}
