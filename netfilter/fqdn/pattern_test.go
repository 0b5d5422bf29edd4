package fqdn

import (
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the result
		wantErr string
	}{
		{in: "github.test", want: "github.test"},
		{in: "GitHub.Test.", want: "github.test"},
		{in: "*.pythonhosted.test", want: "*.pythonhosted.test"},
		{in: "example.test:443", want: "example.test:443"},
		{in: "example.test:8000-8100", want: "example.test:8000-8100"},
		{in: "198.18.0.1", want: "198.18.0.1"},
		{in: "198.18.0.0/15:8000-8100", want: "198.18.0.0/15:8000-8100"},
		{in: "198.18.1.1/15", want: "198.18.0.0/15"},
		{in: "fd00::5", want: "fd00::5"},
		{in: "[fd00::5]:80", want: "[fd00::5]:80"},
		{in: "fd00:1::/64", want: "fd00:1::/64"},
		{in: "[fd00:1::/64]:80-90", want: "[fd00:1::/64]:80-90"},
		{in: "_srv.example.test", want: "_srv.example.test"},
		{in: "*.", wantErr: "empty name"},
		{in: "*", wantErr: "not allowed"},
		{in: "a..b", wantErr: "empty label"},
		{in: "300.1.1.1/8", wantErr: "not an IP prefix"},
		{in: "300.1.1.1", wantErr: "neither a valid IP address nor a name"},
		{in: "example.test:99999", wantErr: "not between 1 and 65535"},
		{in: "example.test:0", wantErr: "not between 1 and 65535"},
		{in: "example.test:90-80", wantErr: "reversed"},
		{in: "example.test:", wantErr: "not between"},
		{in: "", wantErr: "empty pattern"},
		{in: "[fd00::5", wantErr: "missing ]"},
		{in: "[fd00::5]80", wantErr: "unexpected"},
		{in: "-bad.test", wantErr: "starts or ends"},
		{in: "exa mple.test", wantErr: "not allowed"},
		{in: strings.Repeat("a", 64) + ".test", wantErr: "longer than 63"},
		{in: "fe80::1%eth0", wantErr: "zoned"},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "pattern") {
				t.Errorf("ParsePattern(%q) = %v, %v; want error containing %q", tt.in, p, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", tt.in, err)
			continue
		}
		if got := p.String(); got != tt.want {
			t.Errorf("ParsePattern(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		// Round trip.
		if q, err := ParsePattern(p.String()); err != nil || q != p {
			t.Errorf("round trip of %q: %v, %v", tt.in, q, err)
		}
	}
}

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"allowed.test", "allowed.test", true},
		{"allowed.test", "ALLOWED.test.", true},
		{"allowed.test", "sub.allowed.test", false},
		{"allowed.test", "notallowed.test", false},
		{"*.cdn.test", "a.cdn.test", true},
		{"*.cdn.test", "a.b.cdn.test", true},
		{"*.cdn.test", "cdn.test", false},
		{"*.cdn.test", "evilcdn.test", false},
		{"198.18.0.1", "198.18.0.1", false},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.MatchName(tt.name); got != tt.want {
			t.Errorf("%s.MatchName(%q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestParsePatterns(t *testing.T) {
	ps, err := ParsePatterns("a.test, *.b.test,198.18.0.0/15:80")
	if err != nil || len(ps) != 3 || ps[1].Kind != Wildcard || ps[2].PortLo != 80 {
		t.Fatalf("ParsePatterns = %v, %v", ps, err)
	}
	if _, err := ParsePatterns("a.test,,b.test"); err == nil {
		t.Fatal("an empty element was accepted")
	}
}
