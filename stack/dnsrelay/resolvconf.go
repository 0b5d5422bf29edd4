package dnsrelay

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
)

// HostUpstreams returns the nameservers in the resolv.conf at path, each on
// port 53. A missing or unreadable file yields none and the error.
func HostUpstreams(path string) ([]netip.AddrPort, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseResolvConf(data), nil
}

// ParseResolvConf returns the nameserver addresses in a resolv.conf, each
// on port 53, in file order.
func ParseResolvConf(data []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out
}
