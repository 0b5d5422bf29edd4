package difftest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Result is what one side did with a Case.
type Result struct {
	OK bool
	// Code is the exit status (0, 1 other problem, 2 parameter problem).
	Code int
	// Err is the error text when refused.
	Err string
	// Rules is the table's iptables -S text after an accepted command.
	Rules string
	// Out is what the accepted command itself printed (-L, -S).
	Out string
	// Lists are the outputs of Listings(c) after an accepted command,
	// "refused\n" where the listing was refused.
	Lists []string
}

// Listings are the listing commands run after every accepted command,
// on both sides, and compared byte for byte: -L with the formatting
// flags, -L and -S of one chain (the command's own, or the user chain
// uc), and -L without -n (names of protocols and services, "anywhere").
func Listings(c Case) [][]string {
	t := c.Table()
	ch := c.Chain()
	if ch == "" {
		ch = "uc"
	}
	return [][]string{
		{"-t", t, "-L", "-n"},
		{"-t", t, "-L", "-n", "-v"},
		{"-t", t, "-L", "-n", "-v", "-x", "--line-numbers"},
		{"-t", t, "-L"},
		{"-t", t, "-L", ch, "-v", "--line-numbers"},
		{"-t", t, "-S", ch},
	}
}

// refused is the listing text of a refused listing command.
const refused = "refused\n"

// Tools are the programs of the real side.
var Tools = []string{"unshare", "ipset", "iptables-legacy", "ip6tables-legacy",
	"iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy-save", "ip6tables-legacy-restore"}

// Missing returns the first tool not in PATH, or "".
func Missing() string {
	for _, t := range Tools {
		if _, err := exec.LookPath(t); err != nil {
			return t
		}
	}
	return ""
}

func prog(fam int, suffix string) string {
	if fam == 6 {
		return "ip6tables-legacy" + suffix
	}
	return "iptables-legacy" + suffix
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Sets are the ipset create commands both sides run first, so that
// -m set --match-set has sets of each family and type to name.
var Sets = [][]string{
	{"create", "s4", "hash:ip"},
	{"create", "n4", "hash:net"},
	{"create", "s6", "hash:ip", "family", "inet6"},
	{"create", "n6", "hash:net", "family", "inet6"},
}

// Base returns the restore text every command starts from, for one
// table: the built-in chains, a user chain "uc" holding one rule and
// an empty "uc2", and one rule in the first built-in chain (so that -D,
// -I 2 and -R have something to work on).
func Base(table string) string {
	first := tableChains[table][0]
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", table)
	for _, c := range tableChains[table] {
		fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", c)
	}
	b.WriteString(":uc - [0:0]\n:uc2 - [0:0]\n")
	fmt.Fprintf(&b, "-A %s -p tcp -m tcp --dport 22 -j uc\n-A uc -p udp -j RETURN\nCOMMIT\n", first)
	return b.String()
}

// RunReal runs the cases through the real iptables-legacy in a new
// network namespace: each starts from Base of its table. It batches all
// cases into one shell script (one unshare) to stay fast.
func RunReal(ctx context.Context, dir string, cases []Case) ([]Result, error) {
	var sc strings.Builder
	sc.WriteString("E=" + shq(filepath.Join(dir, "err")) + "\nO=" + shq(filepath.Join(dir, "out")) + "\n")
	for _, s := range Sets {
		fmt.Fprintf(&sc, "ipset %s || echo 'ipset %s failed' >&2\n", quoteAll(s), s[1])
	}
	for _, fam := range []int{4, 6} {
		for _, t := range tables {
			f := filepath.Join(dir, fmt.Sprintf("base%d.%s", fam, t))
			if err := os.WriteFile(f, []byte(Base(t)), 0o644); err != nil {
				return nil, err
			}
			fmt.Fprintf(&sc, "%s < %s || echo 'base %d %s failed' >&2\n", prog(fam, "-restore"), shq(f), fam, t)
		}
	}
	for i, c := range cases {
		base := shq(filepath.Join(dir, fmt.Sprintf("base%d.%s", c.Fam, c.Table())))
		fmt.Fprintf(&sc, "echo '@@@ %d'\n%s %s >$O 2>$E; rc=$?; echo \"rc=$rc\"; tr '\\n' ' ' < $E; echo\n", i, prog(c.Fam, ""), quoteAll(c.Args))
		fmt.Fprintf(&sc, "if [ $rc = 0 ]; then echo '@@@ out'; cat $O; echo '@@@ rules'; %s -t %s -S\n", prog(c.Fam, ""), shq(c.Table()))
		for _, l := range Listings(c) {
			fmt.Fprintf(&sc, "echo '@@@ list'; %s %s 2>/dev/null || echo %s\n", prog(c.Fam, ""), quoteAll(l), strings.TrimSpace(refused))
		}
		fmt.Fprintf(&sc, "%s < %s; fi\n", prog(c.Fam, "-restore"), base)
	}
	script := filepath.Join(dir, "cases.sh")
	if err := os.WriteFile(script, []byte(sc.String()), 0o644); err != nil {
		return nil, err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "unshare", "--net", "sh", script)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("unshare --net sh %s: %v: %s", script, err, errb.String())
	}
	if errb.Len() > 0 {
		return nil, fmt.Errorf("real iptables setup: %s", errb.String())
	}
	return parseReal(out.String(), len(cases))
}

func quoteAll(args []string) string {
	q := make([]string, len(args))
	for j, a := range args {
		q[j] = shq(a)
	}
	return strings.Join(q, " ")
}

// parseReal reads the script's output: per case "@@@ N", the exit
// status and error line, then (when accepted) "@@@ out", "@@@ rules"
// and one "@@@ list" section per listing.
func parseReal(out string, n int) ([]Result, error) {
	res := make([]Result, n)
	seen := 0
	var cur *Result
	var sec *string
	for _, part := range strings.Split(out, "@@@ ")[1:] {
		head, body, _ := strings.Cut(part, "\n")
		switch head {
		case "out":
			sec = &cur.Out
		case "rules":
			sec = &cur.Rules
		case "list":
			cur.Lists = append(cur.Lists, "")
			sec = &cur.Lists[len(cur.Lists)-1]
		default:
			i, err := strconv.Atoi(head)
			if err != nil || i < 0 || i >= n {
				return nil, fmt.Errorf("bad result block %q", part)
			}
			lines := strings.SplitN(body, "\n", 3)
			if len(lines) < 2 {
				return nil, fmt.Errorf("bad result block %q", part)
			}
			code, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "rc="))
			res[i] = Result{OK: code == 0, Code: code, Err: strings.TrimSpace(lines[1])}
			cur, sec, seen = &res[i], nil, seen+1
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("section %q before any case", head)
		}
		*sec = body
	}
	if seen != n {
		return nil, fmt.Errorf("real iptables printed %d results for %d cases", seen, n)
	}
	return res, nil
}

// RestoreSave restores text with the real iptables-legacy-restore (with
// -c when counters) in a new namespace and returns iptables-save -t T
// (with -c when counters) of each table in tables, or the refusal.
func RestoreSave(ctx context.Context, dir string, fam int, text string, counters bool, tbls []string) (map[string]string, error) {
	in := filepath.Join(dir, "ruleset")
	if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
		return nil, err
	}
	c := ""
	if counters {
		c = " -c"
	}
	var sc strings.Builder
	fmt.Fprintf(&sc, "%s%s < %s || exit 3\n", prog(fam, "-restore"), c, shq(in))
	for _, t := range tbls {
		fmt.Fprintf(&sc, "echo '@@%s'; %s%s -t %s\n", t, prog(fam, "-save"), c, t)
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "unshare", "--net", "sh", "-c", sc.String())
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", prog(fam, "-restore"), err, strings.TrimSpace(errb.String()))
	}
	res := map[string]string{}
	for _, b := range strings.Split(out.String(), "@@")[1:] {
		name, body, _ := strings.Cut(b, "\n")
		res[name] = StripComments(body)
	}
	return res, nil
}

// StripComments drops the "# Generated by"/"# Completed on" lines, whose
// time stamps and versions differ.
func StripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}
