package dnsrelay

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseResolvConf(t *testing.T) {
	ns := func(s ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, a := range s {
			out = append(out, netip.AddrPortFrom(netip.MustParseAddr(a), 53))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		text string
		want ResolvConf
	}{
		{"empty", "", ResolvConf{}},
		{"nameservers in order", "nameserver 198.18.0.53\nnameserver 2001:db8::53\n", ResolvConf{Nameservers: ns("198.18.0.53", "2001:db8::53")}},
		{"resolver lines kept verbatim", "# host\nsearch a.test b.test\ndomain a.test\noptions ndots:2 edns0\nnameserver 198.18.0.1",
			ResolvConf{Nameservers: ns("198.18.0.1"), ResolverLines: []string{"search a.test b.test", "domain a.test", "options ndots:2 edns0"}}},
		{"bad and partial lines skipped", "nameserver\nnameserver not-an-ip\nnameserver 198.18.0.2 extra\n; nameserver 198.18.0.3\n#nameserver 198.18.0.4\nsortlist 198.18.0.0/15\n",
			ResolvConf{Nameservers: ns("198.18.0.2")}},
		{"whitespace", "  nameserver\t198.18.0.5  \r\n", ResolvConf{Nameservers: ns("198.18.0.5")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseResolvConf([]byte(tc.text)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseResolvConf(%q) =\n%+v\nwant\n%+v", tc.text, got, tc.want)
			}
		})
	}
}

func TestReadResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("nameserver 198.18.0.53\nsearch x.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ups, err := HostUpstreams(p)
	if err != nil || len(ups) != 1 || ups[0] != netip.MustParseAddrPort("198.18.0.53:53") {
		t.Errorf("HostUpstreams: %v, %v", ups, err)
	}
	if _, err := HostUpstreams(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("HostUpstreams of a missing file: no error")
	}
}
