package dnsrelay

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
)

// ResolvConf is what tunstack takes from a resolv.conf: the one parser of
// that file, for the relay's upstreams and for the sandbox's own copy.
type ResolvConf struct {
	// Nameservers are the nameserver addresses, each on port 53, in file
	// order; lines whose address does not parse are skipped.
	Nameservers []netip.AddrPort
	// ResolverLines are the search, domain and options lines, verbatim, in
	// file order: what a sandbox's resolv.conf keeps of the host's.
	ResolverLines []string
}

// ReadResolvConf parses the resolv.conf at path.
func ReadResolvConf(path string) (ResolvConf, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ResolvConf{}, err
	}
	return ParseResolvConf(data), nil
}

// HostUpstreams returns the nameservers in the resolv.conf at path, each on
// port 53. A missing or unreadable file yields none and the error.
func HostUpstreams(path string) ([]netip.AddrPort, error) {
	rc, err := ReadResolvConf(path)
	return rc.Nameservers, err
}

// ParseResolvConf parses resolv.conf text. Comments (# or ;) and unknown
// keywords are ignored, as the C library does.
func ParseResolvConf(data []byte) ResolvConf {
	var rc ResolvConf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 {
				continue
			}
			if a, err := netip.ParseAddr(f[1]); err == nil {
				rc.Nameservers = append(rc.Nameservers, netip.AddrPortFrom(a, 53))
			}
		case "search", "domain", "options":
			rc.ResolverLines = append(rc.ResolverLines, line)
		}
	}
	return rc
}
