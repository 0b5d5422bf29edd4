package ipset

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// advance moves the set's expiry clock forward by d.
func advance(s *Set, d time.Duration) { s.epoch = s.epoch.Add(-d) }

func TestContains(t *testing.T) {
	tests := []struct {
		name    string
		typ     Type
		fam     Family
		entries []string
		probe   string
		want    bool
	}{
		{"ip hit", HashIP, Inet, []string{"198.18.0.1"}, "198.18.0.1", true},
		{"ip miss", HashIP, Inet, []string{"198.18.0.1"}, "198.18.0.2", false},
		{"net hit", HashNet, Inet, []string{"198.18.0.0/15"}, "198.19.255.255", true},
		{"net miss", HashNet, Inet, []string{"198.18.0.0/15"}, "198.20.0.0", false},
		{"most specific of several lengths", HashNet, Inet, []string{"198.18.0.0/24", "198.19.0.0/16"}, "198.19.4.4", true},
		{"v6 net", HashNet, Inet6, []string{"fd00:1::/48"}, "fd00:1::5", true},
		{"v6 ip miss", HashIP, Inet6, []string{"fd00::1"}, "fd00::2", false},
		{"family mismatch", HashIP, Inet, []string{"198.18.0.1"}, "::ffff:198.18.0.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New("s", tt.typ, Options{Family: tt.fam})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range tt.entries {
				p, err := s.ParseEntry(e)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Add(p, false); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.Contains(netip.MustParseAddr(tt.probe)); got != tt.want {
				t.Errorf("Contains(%s) = %v, want %v", tt.probe, got, tt.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	s, err := New("learned", HashIP, Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParsePrefix("198.18.0.7/32")
	b := netip.MustParsePrefix("198.18.0.8/32")
	if err := s.Add(a, false); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTimeout(b, 2*time.Second, false); err != nil {
		t.Fatal(err)
	}
	advance(s, 3*time.Second)
	if !s.Contains(a.Addr()) || s.Contains(b.Addr()) {
		t.Fatalf("after 3 s: contains a=%v b=%v, want true false", s.Contains(a.Addr()), s.Contains(b.Addr()))
	}
	es := s.EntriesWithTimeout()
	if len(es) != 1 || es[0].Prefix != a || es[0].Remaining > 7*time.Second || es[0].Remaining < 6*time.Second {
		t.Fatalf("entries after 3 s = %+v, want only a with ~7 s left", es)
	}
	// An expired entry can be added again without -exist.
	if err := s.AddTimeout(b, 2*time.Second, false); err != nil {
		t.Fatalf("re-adding an expired entry: %v", err)
	}
	// -exist refreshes the timeout.
	advance(s, time.Second)
	if err := s.AddTimeout(b, 5*time.Second, true); err != nil {
		t.Fatal(err)
	}
	advance(s, 3*time.Second)
	if !s.Contains(b.Addr()) {
		t.Fatal("entry refreshed by add -exist expired early")
	}
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
}

func TestTimeoutRefusedWithoutSupport(t *testing.T) {
	s, _ := New("plain", HashIP, Options{})
	err := s.AddTimeout(netip.MustParsePrefix("198.18.0.1/32"), time.Second, false)
	if err == nil || !strings.Contains(err.Error(), "without timeout support") {
		t.Fatalf("AddTimeout on a plain set: %v", err)
	}
}

func TestMaxElemCountsLiveEntries(t *testing.T) {
	s, _ := New("small", HashIP, Options{MaxElem: 1, Timeout: time.Second})
	if err := s.Add(netip.MustParsePrefix("198.18.0.1/32"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(netip.MustParsePrefix("198.18.0.2/32"), false); err == nil {
		t.Fatal("second entry accepted beyond maxelem 1")
	}
	advance(s, 2*time.Second)
	if err := s.Add(netip.MustParsePrefix("198.18.0.2/32"), false); err != nil {
		t.Fatalf("an expired entry still counts against maxelem: %v", err)
	}
}

func TestRegistryExec(t *testing.T) {
	r := NewRegistry(nil)
	steps := []struct {
		args    string
		want    string // substring of the output
		wantErr string // substring of the error
	}{
		{args: "create al hash:ip timeout 30"},
		{args: "add al 198.18.0.9 timeout 5"},
		{args: "add al 198.18.0.10"},
		{args: "list al", want: "Header: family inet hashsize 1024 maxelem 65536 timeout 30\n"},
		{args: "list al", want: "198.18.0.9 timeout 5\n"},
		{args: "list al", want: "198.18.0.10 timeout 30\n"},
		{args: "save al", want: "add al 198.18.0.9 timeout 5\n"},
		{args: "add al 198.18.0.11 timeout x", wantErr: `bad timeout "x"`},
		{args: "add al 198.18.0.11 timeout 2147484", wantErr: "bad timeout"},
		{args: "add al 198.18.0.11 bogus 1", wantErr: "unknown options"},
		{args: "create plain hash:net"},
		{args: "add plain 198.18.0.0/16 timeout 5", wantErr: "without timeout support"},
		{args: "create z hash:ip timeout 0"},
		{args: "add z 198.18.0.1"},
		{args: "list z", want: "198.18.0.1 timeout 0\n"},
		{args: "create bad hash:ip timeout -1", wantErr: "bad timeout"},
		{args: "create six hash:net family inet6 hashsize 64 maxelem 2"},
		{args: "list six", want: "Header: family inet6 hashsize 64 maxelem 2\n"},
		{args: "create six hash:net family inet6", wantErr: `set "six" already exists`},
		{args: "-exist create six hash:net family inet6"},
		{args: "create f hash:ip family ipx", wantErr: `unknown family "ipx"`},
		{args: "create f hash:ip maxelem 0", wantErr: `bad maxelem "0"`},
		{args: "create f hash:ip hashsize", wantErr: `option "hashsize" needs a value`},
		{args: "create f hash:ip size 1", wantErr: `unknown option "size"`},
		{args: "create f", wantErr: "ipset create: missing arguments"},
		{args: "add six fd00::/64"},
		{args: "test six fd00::1", want: "fd00::1 is in set six.\n"},
		{args: "test six fd00:9::1", wantErr: "fd00:9::1 is NOT in set six"},
		{args: "test six fd00::/64", want: "fd00::/64 is in set six.\n"},
		{args: "-A six fd00:1::/64"},
		{args: "add six fd00:2::/64", wantErr: "full"},
		{args: "del six fd00::/64"},
		{args: "del six fd00::/64", wantErr: "element fd00::/64 is not in set six"},
		{args: "-! del six fd00::/64"},
		{args: "test nosuch 198.18.0.1", wantErr: `ipset test: the set with the given name "nosuch" does not exist`},
		{args: "add six", wantErr: "ipset add: missing arguments"},
		{args: "list -terse", want: "Name: six\nType: hash:net\nRevision: 0\nHeader: family inet6 hashsize 64 maxelem 2\nNumber of entries: 1\n"},
		{args: "list nosuch", wantErr: `ipset list: the set with the given name "nosuch" does not exist`},
		{args: "flush al"},
		{args: "test al 198.18.0.10", wantErr: "NOT in set al"},
		{args: "flush nosuch", wantErr: `ipset flush: the set with the given name "nosuch" does not exist`},
		{args: "flush"},
		{args: "test six fd00:1::/64", wantErr: "NOT in set six"},
		{args: "destroy six"},
		{args: "list six", wantErr: "does not exist"},
		{args: "destroy"},
		{args: "list -n", want: ""},
		{args: "swap a b", wantErr: `unknown command "swap"`},
		{args: "-exist", wantErr: "no command specified"},
	}
	for _, st := range steps {
		out, err := r.Exec(strings.Fields(st.args))
		switch {
		case st.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Errorf("ipset %s: err = %v, want %q", st.args, err, st.wantErr)
			}
		case err != nil:
			t.Errorf("ipset %s: %v", st.args, err)
		case !strings.Contains(out, st.want):
			t.Errorf("ipset %s: output %q lacks %q", st.args, out, st.want)
		}
	}
}

func BenchmarkContainsTimeout(b *testing.B) {
	for _, n := range []int{10, 10000} {
		s, _ := New("learned", HashIP, Options{Timeout: time.Hour})
		for i := 0; i < n; i++ {
			s.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32), false)
		}
		probe := netip.AddrFrom4([4]byte{198, 18, 0, 5})
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !s.Contains(probe) {
					b.Fatal("miss")
				}
			}
		})
	}
}
