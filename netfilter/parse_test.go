package netfilter

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

type goldenRule struct {
	ok    bool
	line  string
	canon string
}

// loadGolden reads testdata/rules.golden: verdicts and canonical -S
// output that the real iptables 1.8.9 gave for each line of rules.in
// (regenerate with testdata/gen-golden.sh).
func loadGolden(t testing.TB) []goldenRule {
	f, err := os.Open("testdata/rules.golden")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenRule
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "\t", 3)
		if len(parts) != 3 {
			t.Fatalf("bad golden line %q", sc.Text())
		}
		out = append(out, goldenRule{ok: parts[0] == "OK", line: parts[1], canon: parts[2]})
	}
	return out
}

func execLine(fw *Firewall, line string) (string, error) {
	args, err := splitArgs(line)
	if err != nil {
		return "", err
	}
	return fw.Exec(IPv4, append([]string{"-t"}, args...))
}

func canonical(fw *Firewall, table string) string {
	var lines []string
	for _, c := range fw.Ruleset().Chains(IPv4, mustTable(table)) {
		for _, r := range c.Rules {
			lines = append(lines, "-A "+c.Name+" "+RuleString(IPv4, r))
		}
	}
	return strings.Join(lines, " ;; ")
}

func mustTable(s string) TableID {
	t, err := ParseTable(s)
	if err != nil {
		return Filter
	}
	return t
}

// TestParseGolden checks every rule line against the verdict and the
// canonical form real iptables gave.
func TestParseGolden(t *testing.T) {
	rules := loadGolden(t)
	if len(rules) < 150 {
		t.Fatalf("only %d golden rules", len(rules))
	}
	for _, g := range rules {
		t.Run(g.line, func(t *testing.T) {
			fw, _ := New(nil, Config{})
			_, err := execLine(fw, g.line)
			if g.ok && err != nil && isDeliberateRefusal(t, g.line) {
				t.Logf("deliberate difference: %v", err)
				return
			}
			if g.ok && err != nil {
				t.Fatalf("iptables accepts %q, tunstack rejected it: %v", g.line, err)
			}
			if !g.ok {
				if err == nil {
					t.Fatalf("iptables rejects %q, tunstack accepted it", g.line)
				}
				return
			}
			if got := canonical(fw, strings.Fields(g.line)[0]); got != g.canon {
				t.Errorf("canonical form of %q:\n got %s\nwant %s", g.line, got, g.canon)
			}
		})
	}
}

// isDeliberateRefusal reports whether line is one of the deliberate
// differences (rules Linux accepts and tunstack refuses, naming the
// limitation) listed for the command differential in
// internal/difftest/testdata/deliberate.txt.
func isDeliberateRefusal(t testing.TB, line string) bool {
	b, err := os.ReadFile("internal/difftest/testdata/deliberate.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		re, _, ok := strings.Cut(l, "\t")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		if regexp.MustCompile(re).MatchString(line) {
			return true
		}
	}
	return false
}
