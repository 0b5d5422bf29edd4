package netfilter

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tunstack/tunstack/netfilter/ipset"
)

// command is one parsed iptables command line.
type command struct {
	fam    Family
	table  TableID
	op     string // "-A", "-I", ...
	chain  string
	num    int    // rule number for -I, -D, -R, -S, -Z
	arg2   string // new name for -E, policy for -P
	rule   []string
	opts   listOpts
	hasNum bool
	// zero is -Z given with -L or -S: list, then zero the counters.
	zero bool
}

var longCommands = map[string]string{
	"--append": "-A", "--insert": "-I", "--delete": "-D", "--replace": "-R", "--flush": "-F",
	"--zero": "-Z", "--new-chain": "-N", "--new": "-N", "--delete-chain": "-X", "--rename-chain": "-E",
	"--policy": "-P", "--list": "-L", "--list-rules": "-S", "--check": "-C",
}

// parseCommand separates the command, its positional arguments, the
// global flags and the rule specification.
func parseCommand(fam Family, args []string) (*command, error) {
	c := &command{fam: fam, table: Filter}
	var rest []string
	tableSet := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if l, ok := longCommands[a]; ok {
			a = l
		}
		switch {
		case a == "-t" || a == "--table":
			if tableSet {
				return nil, errors.New("the -t option cannot be used twice")
			}
			if i+1 >= len(args) {
				return nil, errors.New("option \"-t\" requires an argument")
			}
			i++
			t, err := ParseTable(args[i])
			if err != nil {
				return nil, err
			}
			c.table, tableSet = t, true
		case a == "-4":
			c.fam = IPv4
		case a == "-6":
			c.fam = IPv6
		case a == "-v" || a == "--verbose":
			c.opts.verbose = true
		case a == "-n" || a == "--numeric":
			c.opts.numeric = true
		case a == "-x" || a == "--exact":
			c.opts.exact = true
		case a == "--line-numbers":
			c.opts.lineNumbers = true
		case a == "-w" || a == "--wait":
			if i+1 < len(args) && isNumber(args[i+1]) {
				i++
			}
		case isCommandOpt(a):
			var err error
			if c.op != "" {
				if i, err = c.combine(a, args, i); err != nil {
					return nil, err
				}
				continue
			}
			c.op = a
			if i, err = c.positional(args, i); err != nil {
				return nil, err
			}
		default:
			rest = append(rest, args[i])
		}
	}
	if c.op == "" {
		return nil, errors.New("no command specified")
	}
	c.rule = rest
	switch c.op {
	case "-A", "-I", "-R", "-C":
	case "-D":
		if c.hasNum && len(rest) > 0 {
			return nil, fmt.Errorf("-D: unexpected argument %q after rule number", rest[0])
		}
	default:
		if len(rest) > 0 {
			return nil, fmt.Errorf("%s: unexpected argument %q", c.op, rest[0])
		}
	}
	if c.hasNum && c.num < 1 {
		return nil, fmt.Errorf("invalid rule number `%d'", c.num)
	}
	// As iptables' option/command table: the formatting flags go with
	// -L only (-L -Z included).
	if c.op != "-L" {
		for _, f := range []struct {
			set  bool
			name string
		}{{c.opts.numeric, "-n"}, {c.opts.exact, "-x"}, {c.opts.lineNumbers, "--line-numbers"}} {
			if f.set {
				return nil, fmt.Errorf("illegal option `%s' with this command", f.name)
			}
		}
	}
	return c, nil
}

// combine handles a second command option op at args[i]: iptables
// allows -Z with -L or -S (list, then zero). As there, a rule number
// given to a -Z that follows -L makes the command -Z alone, and one
// given to -L zeroes the whole chain.
func (c *command) combine(op string, args []string, i int) (int, error) {
	first := c.op
	pair := (first == "-L" || first == "-S") && op == "-Z" || first == "-Z" && (op == "-L" || op == "-S")
	if !pair || c.zero {
		return i, fmt.Errorf("cannot use %s with %s", op, first)
	}
	prev := *c
	c.op, c.chain, c.hasNum, c.num = op, "", false, 0
	i, err := c.positional(args, i)
	if err != nil {
		return i, err
	}
	if c.chain == "" {
		c.chain = prev.chain
	}
	if op == "-Z" {
		if c.hasNum {
			// CMD_ZERO_NUM replaces the listing.
			return i, nil
		}
		c.op, c.hasNum, c.num = first, prev.hasNum, prev.num
	} else if !c.hasNum {
		c.hasNum, c.num = prev.hasNum, prev.num
	}
	c.zero = true
	return i, nil
}

func isCommandOpt(a string) bool {
	switch a {
	case "-A", "-I", "-D", "-R", "-F", "-Z", "-N", "-X", "-E", "-P", "-L", "-S", "-C":
		return true
	}
	return false
}

// positional reads the arguments that follow the command option at
// args[i] (chain, rule number, new name or policy) and returns the index
// of the last one read.
func (c *command) positional(args []string, i int) (int, error) {
	a := c.op
	// Positional arguments follow the command directly.
	pos := func() (string, bool) {
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && args[i+1] != "!" {
			i++
			return args[i], true
		}
		return "", false
	}
	switch c.op {
	case "-A", "-I", "-D", "-R", "-N", "-E", "-P", "-C":
		ch, ok := pos()
		if !ok {
			return i, fmt.Errorf("option %q requires a chain name", a)
		}
		c.chain = ch
	default:
		c.chain, _ = pos()
	}
	switch c.op {
	case "-I", "-D", "-S", "-Z", "-L":
		if i+1 < len(args) && isNumber(args[i+1]) {
			i++
			n, _ := strconv.Atoi(args[i])
			c.num, c.hasNum = n, true
		}
	case "-R":
		if i+1 >= len(args) || !isNumber(args[i+1]) {
			return i, errors.New("-R requires a rule number")
		}
		i++
		c.num, _ = strconv.Atoi(args[i])
		c.hasNum = true
	case "-E", "-P":
		v, ok := pos()
		if !ok {
			return i, fmt.Errorf("option %q requires two arguments", a)
		}
		c.arg2 = v
	}
	return i, nil
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// exec applies c to rs, a private copy. It reports whether rs changed.
func (c *command) exec(rs *Ruleset, sets func(string) *ipset.Set) (string, bool, error) {
	t := rs.tables[c.fam][c.table]
	t.used = true
	switch c.op {
	case "-A", "-I", "-R", "-D", "-C":
		return c.execRule(t, sets)
	case "-F":
		return c.execFlush(t, sets)
	case "-Z":
		return c.execZero(t, sets)
	case "-N":
		return c.execNewChain(t, sets)
	case "-X":
		return c.execDelete(t, sets)
	case "-E":
		return c.execRename(t, sets)
	case "-P":
		return c.execPolicy(t, sets)
	case "-L", "-S":
		list := c.execList
		if c.op == "-S" {
			list = c.execSpec
		}
		out, _, err := list(t, sets)
		if err == nil && c.zero {
			z := *c
			z.hasNum = false
			var zout string
			zout, _, err = z.execZero(t, sets)
			out += zout
		}
		return out, false, err
	}
	return "", false, fmt.Errorf("unknown command %s", c.op)
}

// chainIn returns the command's chain in t.
func (c *command) chainIn(t *table) (*Chain, error) {
	ch := t.chain(c.chain)
	if ch == nil {
		return nil, fmt.Errorf("chain %q does not exist in table %s (No chain/target/match by that name)", c.chain, t.id)
	}
	return ch, nil
}

func (c *command) execRule(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	// As iptables: the command line is parsed whole, then the chain is
	// looked up, then the kernel's checks run.
	var nr []*Rule
	if !(c.op == "-D" && c.hasNum) {
		var err error
		if nr, _, err = parseRule(c.fam, c.chain, c.rule, sets); err != nil {
			return "", false, param(err)
		}
	}
	ch, err := c.chainIn(t)
	if err != nil {
		return "", false, err
	}
	if c.op == "-D" && c.hasNum {
		if c.num > len(ch.Rules) {
			return "", false, fmt.Errorf("index of deletion too big: rule %d of chain %s", c.num, ch.Name)
		}
		ch.Rules = append(ch.Rules[:c.num-1:c.num-1], ch.Rules[c.num:]...)
		return "", true, nil
	}
	for _, r := range nr {
		if err := validateRule(c.fam, c.table, r); err != nil {
			return "", false, err
		}
	}
	switch c.op {
	case "-A":
		ch.Rules = append(ch.Rules, nr...)
	case "-I":
		pos := 0
		if c.hasNum {
			pos = c.num - 1
		}
		if pos > len(ch.Rules) {
			return "", false, fmt.Errorf("index of insertion too big: %d (chain %s has %d rules)", c.num, ch.Name, len(ch.Rules))
		}
		// iptables inserts each address's rule at the same position,
		// so the last address's rule comes first.
		slices.Reverse(nr)
		ch.Rules = append(ch.Rules[:pos:pos], append(nr, ch.Rules[pos:]...)...)
	case "-R":
		if len(nr) != 1 {
			return "", false, errors.New("-R: the rule must stand for exactly one rule (one -s and one -d address)")
		}
		if c.num > len(ch.Rules) {
			return "", false, fmt.Errorf("index of replacement too big: rule %d of chain %s", c.num, ch.Name)
		}
		ch.Rules[c.num-1] = nr[0]
	case "-D", "-C":
		for _, r := range nr {
			want := RuleString(c.fam, r)
			found := -1
			for i, x := range ch.Rules {
				if RuleString(c.fam, x) == want {
					found = i
					break
				}
			}
			if found < 0 {
				return "", false, fmt.Errorf("bad rule (does a matching rule exist in that chain?): %s", want)
			}
			if c.op == "-D" {
				ch.Rules = append(ch.Rules[:found:found], ch.Rules[found+1:]...)
			}
		}
		return "", c.op == "-D", nil
	}
	return "", true, nil
}

func (c *command) execFlush(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	if c.chain == "" {
		for _, ch := range t.chains {
			ch.Rules = nil
		}
		return "", true, nil
	}
	ch, err := c.chainIn(t)
	if err != nil {
		return "", false, err
	}
	ch.Rules = nil
	return "", true, nil
}

func (c *command) execZero(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	// Counters are shared objects, so zeroing needs no new ruleset.
	var out strings.Builder
	for _, ch := range t.chains {
		if c.chain != "" && ch.Name != c.chain {
			continue
		}
		if c.opts.verbose && !c.hasNum {
			fmt.Fprintf(&out, "Zeroing chain `%s'\n", ch.Name)
		}
		for i, r := range ch.Rules {
			if !c.hasNum || i+1 == c.num {
				r.counters.zero()
			}
		}
		if !c.hasNum {
			ch.policyCounters.zero()
		}
	}
	if c.chain != "" && t.chain(c.chain) == nil {
		return "", false, fmt.Errorf("chain %q does not exist in table %s", c.chain, t.id)
	}
	return out.String(), false, nil
}

func (c *command) execNewChain(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	if err := param(checkChainName(c.chain)); err != nil {
		return "", false, err
	}
	if t.chain(c.chain) != nil {
		return "", false, fmt.Errorf("chain %q already exists", c.chain)
	}
	if isTargetName(c.chain) {
		return "", false, param(fmt.Errorf("chain name %q may not clash with target name", c.chain))
	}
	t.chains = append(t.chains, &Chain{Name: c.chain})
	t.sortUser()
	return "", true, nil
}

func (c *command) execDelete(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	return "", true, c.deleteChains(t)
}

func (c *command) execRename(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	ch, err := c.chainIn(t)
	if err != nil {
		return "", false, err
	}
	if ch.Builtin {
		return "", false, fmt.Errorf("cannot rename built-in chain %s", ch.Name)
	}
	if err := param(checkChainName(c.arg2)); err != nil {
		return "", false, err
	}
	if t.chain(c.arg2) != nil || isVerdict(c.arg2) {
		return "", false, fmt.Errorf("chain %q already exists (File exists)", c.arg2)
	}
	old := ch.Name
	ch.Name = c.arg2
	// References follow the chain, as in the kernel.
	for _, x := range t.chains {
		for i, r := range x.Rules {
			if j, ok := jumpName(r.Target); ok && j == old {
				nr := *r
				if _, g := r.Target.(Goto); g {
					nr.Target = Goto{Chain: c.arg2}
				} else {
					nr.Target = Jump{Chain: c.arg2}
				}
				x.Rules[i] = &nr
			}
		}
	}
	t.sortUser()
	return "", true, nil
}

func (c *command) execPolicy(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	ch, err := c.chainIn(t)
	if err != nil {
		return "", false, err
	}
	if !ch.Builtin {
		return "", false, fmt.Errorf("cannot set policy of user chain %s", ch.Name)
	}
	switch c.arg2 {
	case "ACCEPT":
		ch.Policy = PolicyAccept
	case "DROP":
		if t.id == NAT {
			return "", false, param(errNATDrop)
		}
		ch.Policy = PolicyDrop
	default:
		return "", false, fmt.Errorf("bad policy %q (want ACCEPT or DROP)", c.arg2)
	}
	return "", true, nil
}

func (c *command) execList(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	var b strings.Builder
	first := true
	for _, ch := range t.chains {
		if c.chain != "" && ch.Name != c.chain {
			continue
		}
		if c.hasNum {
			// -L CHAIN N prints rule N alone, or nothing.
			first = false
			listRule(&b, c.fam, ch, c.num, c.opts)
			continue
		}
		if !first {
			b.WriteString("\n")
		}
		first = false
		listChain(&b, c.fam, t, ch, c.opts)
	}
	if first && c.chain != "" {
		return "", false, fmt.Errorf("chain %q does not exist in table %s", c.chain, t.id)
	}
	return b.String(), false, nil
}

func (c *command) execSpec(t *table, sets func(string) *ipset.Set) (string, bool, error) {
	var b strings.Builder
	found := false
	for _, ch := range t.chains {
		if c.chain != "" && ch.Name != c.chain {
			continue
		}
		found = true
		if c.hasNum {
			continue
		}
		if ch.Builtin && c.opts.verbose {
			fmt.Fprintf(&b, "-P %s %s -c %d %d\n", ch.Name, ch.Policy, ch.policyCounters.Packets(), ch.policyCounters.Bytes())
		} else if ch.Builtin {
			fmt.Fprintf(&b, "-P %s %s\n", ch.Name, ch.Policy)
		} else {
			fmt.Fprintf(&b, "-N %s\n", ch.Name)
		}
	}
	if !found && c.chain != "" {
		return "", false, fmt.Errorf("chain %q does not exist in table %s", c.chain, t.id)
	}
	for _, ch := range t.chains {
		if c.chain != "" && ch.Name != c.chain {
			continue
		}
		if c.hasNum && c.num > len(ch.Rules) {
			return "", false, fmt.Errorf("index of rule %d too big in chain %s", c.num, ch.Name)
		}
		specRules(&b, c.fam, ch, c.num, c.opts.verbose)
	}
	return b.String(), false, nil
}

func isTargetName(s string) bool {
	switch s {
	case "ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "DNAT", "SNAT", "MASQUERADE", "REDIRECT",
		"MARK", "CONNMARK", "TTL", "HL", "TOS", "DSCP", "QUEUE", "NFQUEUE", "SET":
		return true
	}
	return false
}

// errNATDrop is iptables' refusal of DROP (target or policy) in nat.
var errNATDrop = errors.New(`the "nat" table is not intended for filtering, the use of DROP is therefore inhibited`)

// isVerdict reports whether s is a standard verdict name, which libiptc
// refuses as a chain name on rename.
func isVerdict(s string) bool {
	return s == "ACCEPT" || s == "DROP" || s == "QUEUE" || s == "RETURN"
}

// deleteChains is -X: one user chain, or (without a name) every user
// chain. As libiptc, a built-in chain is refused (EINVAL), then a
// referenced one (EMLINK), then a non-empty one (ENOTEMPTY); and -X
// without a name deletes nothing if any chain cannot be deleted.
func (c *command) deleteChains(t *table) error {
	var del []*Chain
	if c.chain == "" {
		for _, ch := range t.chains {
			if !ch.Builtin {
				del = append(del, ch)
			}
		}
	} else {
		ch := t.chain(c.chain)
		if ch == nil {
			return fmt.Errorf("chain %q does not exist in table %s (No chain/target/match by that name)", c.chain, t.id)
		}
		if ch.Builtin {
			return fmt.Errorf("cannot delete built-in chain %s (Invalid argument)", ch.Name)
		}
		del = []*Chain{ch}
	}
	for _, ch := range del {
		if n := references(t, ch.Name); n > 0 {
			return fmt.Errorf("chain %s is referenced by %d rule(s): cannot delete it (Too many links)", ch.Name, n)
		}
		if len(ch.Rules) > 0 {
			return fmt.Errorf("chain %s is not empty: flush it first (Directory not empty)", ch.Name)
		}
	}
	for _, ch := range del {
		i := t.chainIndex(ch.Name)
		t.chains = append(t.chains[:i:i], t.chains[i+1:]...)
	}
	return nil
}
