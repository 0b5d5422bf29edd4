package netfilter

import (
	"bufio"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/tunstack/tunstack/netfilter/ipset"
)

// RestoreOptions are iptables-restore's flags.
type RestoreOptions struct {
	// Counters restores [packets:bytes] counters (-c); otherwise they
	// start at zero.
	Counters bool
	// NoFlush keeps existing rules of the tables in the input (-n).
	NoFlush bool
}

// LineError is a restore error with its input line number.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// splitArgs splits a rule line into arguments as iptables-restore does:
// whitespace separates, double quotes group, and a backslash escapes a
// quote inside double quotes. Single quotes are ordinary characters, as
// in iptables-restore.
func splitArgs(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg := false
	var quote byte
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quote != 0:
			if ch == '\\' && quote == '"' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\') {
				i++
				cur.WriteByte(line[i])
			} else if ch == quote {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '"':
			quote, inArg = ch, true
		case ch == ' ' || ch == '\t':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quoted string")
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

var chainLine = regexp.MustCompile(`^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?\s*$`)
var counterPrefix = regexp.MustCompile(`^\[(\d+):(\d+)\]\s+`)

// restore applies iptables-save text for family f to rs (a private
// copy). Every table in the text is replaced (or, with NoFlush, added
// to); tables not in the text are untouched.
func restore(rs *Ruleset, f Family, text string, o RestoreOptions, sets func(string) *ipset.Set) error {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var cur *table
	lineNo, tableLine := 0, 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lerr := func(err error) error { return &LineError{Line: lineNo, Err: err} }
		switch {
		case strings.HasPrefix(line, "*"):
			if cur != nil {
				return lerr(fmt.Errorf("table %s started before COMMIT of table %s", line[1:], cur.id))
			}
			id, err := ParseTable(line[1:])
			if err != nil {
				return lerr(err)
			}
			cur, tableLine = rs.tables[f][id], lineNo
			if !o.NoFlush {
				fresh := newTable(id)
				*cur = *fresh
			}
			cur.used = true
		case line == "COMMIT":
			if cur == nil {
				return lerr(errors.New("COMMIT outside a table"))
			}
			if err := validateTable(f, cur); err != nil {
				return lerr(err)
			}
			cur = nil
		case strings.HasPrefix(line, ":"):
			if cur == nil {
				return lerr(errors.New("chain line outside a table"))
			}
			if err := restoreChain(cur, line, o); err != nil {
				return lerr(err)
			}
		default:
			if cur == nil {
				return lerr(fmt.Errorf("rule %q outside a table (missing *table line)", line))
			}
			if err := restoreRule(rs, cur, f, line, o, sets); err != nil {
				return lerr(err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return &LineError{Line: lineNo + 1, Err: err}
	}
	if cur != nil {
		return &LineError{Line: lineNo + 1, Err: fmt.Errorf("COMMIT expected for table %s (started at line %d)", cur.id, tableLine)}
	}
	return nil
}

func ruleCount(t *table) int {
	n := 0
	for _, c := range t.chains {
		n += len(c.Rules)
	}
	return n
}

func applyCounters(t *table, cmd *command, c [2]uint64) {
	ch := t.chain(cmd.chain)
	if ch == nil || len(ch.Rules) == 0 {
		return
	}
	i := len(ch.Rules) - 1
	if cmd.op == "-I" {
		i = 0
		if cmd.hasNum {
			i = cmd.num - 1
		}
	}
	r := ch.Rules[i].clone(false)
	r.counters.set(c[0], c[1])
	ch.Rules[i] = r
}

// restoreChain applies a ":CHAIN POLICY [packets:bytes]" line to t.
func restoreChain(cur *table, line string, o RestoreOptions) error {
	m := chainLine.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("bad chain line %q", line)
	}
	name, pol := m[1], m[2]
	if err := checkChainName(name); err != nil {
		return err
	}
	ch := cur.chain(name)
	if ch != nil && ch.Builtin {
		switch pol {
		case "ACCEPT":
			ch.Policy = PolicyAccept
		case "DROP":
			ch.Policy = PolicyDrop
		default:
			return fmt.Errorf("bad policy %q for built-in chain %s", pol, name)
		}
		if o.Counters && m[3] == "" {
			return fmt.Errorf("invalid policy counters for chain %s (-c needs [packets:bytes])", name)
		}
		if o.Counters {
			p, _ := strconv.ParseUint(m[3], 10, 64)
			b, _ := strconv.ParseUint(m[4], 10, 64)
			ch.policyCounters = new(Counters)
			ch.policyCounters.set(p, b)
		}
		return nil
	}
	if pol != "-" {
		return fmt.Errorf("cannot set policy %q on user-defined chain %s", pol, name)
	}
	if ch != nil {
		if !o.NoFlush {
			return fmt.Errorf("chain %s declared twice", name)
		}
		ch.Rules = nil
		return nil
	}
	if isTargetName(name) {
		return fmt.Errorf("chain name %q is a target name", name)
	}
	cur.chains = append(cur.chains, &Chain{Name: name})
	cur.sortUser()
	return nil
}

// restoreRule applies one command line (with optional [packets:bytes]
// prefix) to table cur of rs.
func restoreRule(rs *Ruleset, cur *table, f Family, line string, o RestoreOptions, sets func(string) *ipset.Set) error {
	var counters *[2]uint64
	if m := counterPrefix.FindStringSubmatch(line); m != nil {
		p, e1 := strconv.ParseUint(m[1], 10, 64)
		b, e2 := strconv.ParseUint(m[2], 10, 64)
		if e1 != nil || e2 != nil {
			return fmt.Errorf("bad counters in %q", line)
		}
		counters = &[2]uint64{p, b}
		line = line[len(m[0]):]
	}
	args, err := splitArgs(line)
	if err != nil {
		return err
	}
	cmd, err := parseCommand(f, args)
	if err != nil {
		return err
	}
	switch cmd.op {
	case "-L", "-S", "-C":
		return fmt.Errorf("command %s not allowed in iptables-restore input", cmd.op)
	}
	for _, a := range args {
		if a == "-t" || a == "--table" {
			return errors.New("the -t option is not allowed in iptables-restore input")
		}
	}
	cmd.table = cur.id
	if cmd.op == "-A" || cmd.op == "-I" || cmd.op == "-R" {
		if cur.chain(cmd.chain) == nil {
			return fmt.Errorf("chain %q does not exist", cmd.chain)
		}
	}
	before := ruleCount(cur)
	if _, _, err := cmd.exec(rs, sets); err != nil {
		return err
	}
	// Rules added by this line take its counters with -c.
	if counters != nil && o.Counters && (cmd.op == "-A" || cmd.op == "-I") && ruleCount(cur) > before {
		applyCounters(cur, cmd, *counters)
	}
	return nil
}
