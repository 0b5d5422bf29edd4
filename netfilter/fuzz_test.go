package netfilter

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func FuzzParseRule(f *testing.F) {
	for _, g := range loadGolden(f) {
		f.Add(g.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args, err := splitArgs(line)
		if err != nil {
			return
		}
		fw, _ := New(nil, Config{})
		fw.Exec(IPv4, append([]string{"-t"}, args...))
		fw.Exec(IPv6, args)
		_ = fw.Save(IPv4, true)
		for _, tb := range []string{"filter", "nat", "mangle", "raw"} {
			fw.Exec(IPv4, []string{"-t", tb, "-L", "-v", "-n"})
			fw.Exec(IPv4, []string{"-t", tb, "-L"})
		}
	})
}

func FuzzRestore(f *testing.F) {
	f.Add("*filter\n:INPUT DROP [1:2]\n:X - [0:0]\n-A INPUT -j X\n[3:4] -A X -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
	f.Add("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n")
	f.Add("*mangle\n-A PREROUTING -j MARK --set-mark 1\nCOMMIT\n*filter\n-A INPUT -m comment --comment \"a \\\" b\" -j LOG\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, text string) {
		fw, _ := New(nil, Config{})
		if err := fw.Restore(IPv4, text, RestoreOptions{Counters: true}); err != nil {
			return
		}
		// What was accepted must save and restore to the same text.
		saved := fw.Save(IPv4, true)
		fw2, _ := New(nil, Config{})
		if err := fw2.Restore(IPv4, saved, RestoreOptions{Counters: true}); err != nil {
			t.Fatalf("saved text does not restore: %v\n%s", err, saved)
		}
		if a, b := stripDates(saved), stripDates(fw2.Save(IPv4, true)); a != b {
			t.Fatalf("save is not a fixed point:\n%s\nvs\n%s", a, b)
		}
	})
}

// TestSaveAcceptedByRealIptables feeds tunstack's save output for every
// accepted golden rule to the real "iptables-restore --test", when it is
// installed and usable (root in a namespace).
func TestSaveAcceptedByRealIptables(t *testing.T) {
	path, err := exec.LookPath("iptables-restore")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("iptables-restore not installed or not root: skipping the cross-check against the real binary")
	}
	fw, _ := New(nil, Config{})
	n := 0
	for _, g := range loadGolden(t) {
		if !g.ok || !strings.Contains(g.line, " -A ") {
			continue
		}
		if _, err := execLine(fw, g.line); err != nil {
			if isDeliberateRefusal(t, g.line) {
				continue
			}
			t.Fatalf("%s: %v", g.line, err)
		}
		n++
	}
	fw.Exec(IPv4, []string{"-t", "raw", "-L"})
	text := fw.Save(IPv4, true)
	cmd := exec.Command("unshare", "-n", path, "--test", "--counters")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore --test rejected tunstack's save of %d rules: %v\n%s\n%s", n, err, out, text)
	}
}

func TestSaveRestoreRoundTrip(t *testing.T) {
	fw, _ := New(nil, Config{})
	for _, g := range loadGolden(t) {
		if g.ok && strings.Contains(g.line, " -A ") {
			execLine(fw, g.line)
		}
	}
	saved := fw.Save(IPv4, false)
	fw2, _ := New(nil, Config{})
	if err := fw2.Restore(IPv4, saved, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if a, b := stripDates(saved), stripDates(fw2.Save(IPv4, false)); a != b {
		t.Fatalf("round trip differs:\n%s\nvs\n%s", a, b)
	}
}
