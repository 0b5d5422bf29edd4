package netfilter

import "testing"

// TestEmpty: a firewall is empty until a rule or a non-ACCEPT policy is
// loaded, and empty again once they are gone.
func TestEmpty(t *testing.T) {
	fw, err := New(nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args  []string
		empty bool
	}{
		{nil, true},
		{[]string{"-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"}, false},
		{[]string{"-F", "OUTPUT"}, true},
		{[]string{"-P", "INPUT", "DROP"}, false},
		{[]string{"-P", "INPUT", "ACCEPT"}, true},
		{[]string{"-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-j", "ACCEPT"}, false},
		{[]string{"-t", "nat", "-F"}, true},
	}
	for _, s := range steps {
		if s.args != nil {
			if _, err := fw.Exec(IPv4, s.args); err != nil {
				t.Fatalf("iptables %v: %v", s.args, err)
			}
		}
		if got := fw.Empty(); got != s.empty {
			t.Errorf("after iptables %v: Empty() = %v, want %v", s.args, got, s.empty)
		}
	}
}
