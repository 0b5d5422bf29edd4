package difftest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// need skips (or, with TUNSTACK_REQUIRE_TUN=1 as in CI, fails) when the
// real iptables cannot be run here.
func need(t *testing.T) {
	t.Helper()
	why := ""
	if m := Missing(); m != "" {
		why = m + " not installed (Debian package iptables)"
	} else if os.Geteuid() != 0 {
		why = "needs root to create a network namespace for the real iptables"
	} else if out, err := exec.Command("unshare", "--net", "iptables-legacy", "-S").CombinedOutput(); err != nil {
		why = fmt.Sprintf("cannot run iptables-legacy in a new network namespace: %v: %s", err, out)
	}
	if why == "" {
		return
	}
	if os.Getenv("TUNSTACK_REQUIRE_TUN") == "1" {
		t.Fatalf("TUNSTACK_REQUIRE_TUN=1 but: %s", why)
	}
	t.Skip(why)
}

// parseLine splits a corpus line: family, then arguments separated by
// spaces, double quotes grouping (with \" and \\ inside).
func parseLine(line string) (Case, error) {
	var args []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quoted && ch == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case quoted && ch == '"':
			quoted = false
		case quoted:
			cur.WriteByte(ch)
		case ch == '"':
			quoted, in = true, true
		case ch == ' ':
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if in {
		args = append(args, cur.String())
	}
	if len(args) < 2 || (args[0] != "4" && args[0] != "6") {
		return Case{}, fmt.Errorf("corpus line %q: want FAMILY(4|6) ARGS", line)
	}
	fam, _ := strconv.Atoi(args[0])
	return Case{Fam: fam, Args: args[1:]}, nil
}

// readLines reads non-empty, non-comment lines of a testdata file.
func readLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// difference is a deliberate difference from Linux: commands matching
// re that iptables accepts and tunstack refuses (with an error naming
// the limitation), never the other way round.
type difference struct {
	re  *regexp.Regexp
	why string
}

// deliberate reads testdata/deliberate.txt: "REGEXP<TAB>REASON" lines.
func deliberate(t *testing.T) []difference {
	var out []difference
	for _, l := range readLines(t, "deliberate.txt") {
		re, why, ok := strings.Cut(l, "\t")
		if !ok {
			t.Fatalf("deliberate.txt line %q: want REGEXP<TAB>REASON", l)
		}
		out = append(out, difference{regexp.MustCompile(re), why})
	}
	return out
}

// isDeliberate returns the reason when the disagreement on line is a
// deliberate difference.
func isDeliberate(ds []difference, line string, real, ours Result) (string, bool) {
	if !real.OK || ours.OK {
		return "", false
	}
	for _, d := range ds {
		if d.re.MatchString(line) {
			return d.why, true
		}
	}
	return "", false
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestCommandsAgainstIptables runs the corpus and generated commands
// through the real iptables-legacy and tunstack and compares, for each,
// accepted or refused and the table's iptables -S text afterwards.
// DIFFTEST_N sets how many commands to generate (default 600, which runs in well under a minute),
// DIFFTEST_SEED the seed (default 1); DIFFTEST_RECORD=FILE writes the
// disagreements as corpus lines.
func TestCommandsAgainstIptables(t *testing.T) {
	need(t)
	var cases []Case
	for _, l := range readLines(t, "corpus.txt") {
		c, err := parseLine(l)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	corpus := len(cases)
	seed, n := envInt("DIFFTEST_SEED", 1), envInt("DIFFTEST_N", 600)
	t.Logf("generator: DIFFTEST_SEED=%d DIFFTEST_N=%d", seed, n)
	g := NewGen(uint64(seed))
	for i := n; i > 0; i-- {
		cases = append(cases, g.Next())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	real, err := RunReal(ctx, t.TempDir(), cases)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("real iptables: %d commands in %v", len(cases), time.Since(start).Round(time.Millisecond))
	known := deliberate(t)
	var agreed, codeAgreed, accepted, deliberateN, codeLogged, listsCompared, listsAgreed int
	var record []string
	for i, c := range cases {
		ours := RunOurs(c)
		r := real[i]
		if r.OK == ours.OK && r.Code == ours.Code {
			codeAgreed++
		} else if r.OK == ours.OK && testing.Verbose() && codeLogged < 20 {
			codeLogged++
			t.Logf("exit status %d, tunstack %d: %s\n  iptables: %s\n  tunstack: %s", r.Code, ours.Code, c, r.Err, ours.Err)
		}
		if r.OK {
			accepted++
		}
		line := c.String()
		if r.OK == ours.OK && r.Rules == ours.Rules {
			lc, la, diffs := compareLists(c, r, ours)
			listsCompared += lc
			listsAgreed += la
			if len(diffs) == 0 {
				agreed++
				continue
			}
			record = append(record, line)
			for _, d := range diffs {
				t.Errorf("%s: %s", line, d)
			}
			continue
		}
		if why, ok := isDeliberate(known, line, r, ours); ok {
			deliberateN++
			t.Logf("deliberate difference (%s): %s", why, line)
			continue
		}
		record = append(record, line)
		where := "generated"
		if i < corpus {
			where = "corpus"
		}
		switch {
		case r.OK != ours.OK:
			t.Errorf("%s: %s\n  iptables: ok=%v %s\n  tunstack: ok=%v %s", where, line, r.OK, r.Err, ours.OK, ours.Err)
		default:
			t.Errorf("%s: %s: -S differs\n  iptables:\n%s  tunstack:\n%s", where, line, r.Rules, ours.Rules)
		}
	}
	t.Logf("commands compared: %d (%d from the corpus, %d accepted by iptables); agreed: %d; deliberate differences: %d; exit status agreed: %d",
		len(cases), corpus, accepted, agreed, deliberateN, codeAgreed)
	t.Logf("listings compared (the command's own output and Listings after each accepted command): %d; agreed: %d", listsCompared, listsAgreed)
	if testing.Verbose() {
		logRefusals(t, real)
	}
	if f := os.Getenv("DIFFTEST_RECORD"); f != "" {
		sort.Strings(record)
		if err := os.WriteFile(f, []byte(strings.Join(record, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRulesetsAgainstIptables restores each testdata/rulesets file with
// the real iptables-legacy-restore and tunstack, then compares the
// iptables-save text of each table in it, byte for byte, with and
// without -c.
func TestRulesetsAgainstIptables(t *testing.T) {
	need(t)
	files, err := filepath.Glob("testdata/rulesets/*.v[46]")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rulesets in testdata/rulesets: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		fam := 4
		if strings.HasSuffix(file, ".v6") {
			fam = 6
		}
		var tbls []string
		for _, l := range strings.Split(string(text), "\n") {
			if strings.HasPrefix(l, "*") {
				tbls = append(tbls, strings.TrimSpace(l[1:]))
			}
		}
		for _, counters := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/c=%v", filepath.Base(file), counters), func(t *testing.T) {
				real, rerr := RestoreSave(ctx, t.TempDir(), fam, string(text), counters, tbls)
				ours, oerr := RestoreSaveOurs(fam, string(text), counters, tbls)
				if (rerr == nil) != (oerr == nil) {
					t.Fatalf("iptables-restore: %v; tunstack: %v", rerr, oerr)
				}
				for _, tb := range tbls {
					if real[tb] != ours[tb] {
						t.Errorf("table %s differs\niptables-save:\n%s\ntunstack:\n%s", tb, real[tb], ours[tb])
					}
				}
			})
		}
	}
}

// resolves reports whether the real iptables may look host names up
// for a listing: -L without -n of rules with addresses (tunstack never
// resolves; a documented difference).
func resolves(args []string, rules string) bool {
	if !slices.Contains(args, "-L") || slices.Contains(args, "-n") {
		return false
	}
	return strings.Contains(rules, " -s ") || strings.Contains(rules, " -d ") || strings.Contains(rules, "-range ")
}

// compareLists compares the accepted command's own output and the
// listings after it. It returns how many texts it compared, how many
// agreed, and a description of each disagreement.
func compareLists(c Case, real, ours Result) (compared, agreed int, diffs []string) {
	if !real.OK {
		return 0, 0, nil
	}
	texts := []struct {
		args       []string
		real, ours string
	}{{c.Args, real.Out, ours.Out}}
	for i, l := range Listings(c) {
		if i < len(real.Lists) && i < len(ours.Lists) {
			texts = append(texts, struct {
				args       []string
				real, ours string
			}{l, real.Lists[i], ours.Lists[i]})
		}
	}
	for _, x := range texts {
		if resolves(x.args, real.Rules) {
			continue
		}
		compared++
		if x.real == x.ours {
			agreed++
			continue
		}
		diffs = append(diffs, fmt.Sprintf("output of %s differs%s", strings.Join(x.args, " "), lineDiff(x.real, x.ours)))
	}
	return compared, agreed, diffs
}

// lineDiff shows the lines of two texts that differ, by position.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for i := 0; i < max(len(al), len(bl)); i++ {
		x, y := "(none)", "(none)"
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "\n  line %d iptables: %q\n  line %d tunstack: %q", i+1, x, i+1, y)
		}
	}
	return out.String()
}

// logRefusals logs the commonest reasons the real iptables gave for
// refusing, to keep the generator's mix of valid and invalid input in
// view.
func logRefusals(t *testing.T, res []Result) {
	n := map[string]int{}
	for _, r := range res {
		if !r.OK {
			e := strings.TrimPrefix(strings.TrimPrefix(r.Err, "iptables v1.8.9 (legacy): "), "ip6tables v1.8.9 (legacy): ")
			if len(e) > 50 {
				e = e[:50]
			}
			n[e]++
		}
	}
	var keys []string
	for k := range n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return n[keys[i]] > n[keys[j]] })
	for i, k := range keys {
		if i == 15 {
			break
		}
		t.Logf("refused %4d times: %s", n[k], k)
	}
}
