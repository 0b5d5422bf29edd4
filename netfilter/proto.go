package netfilter

import (
	"fmt"
	"strconv"
	"strings"
)

// protoNames are the protocol names iptables-save prints (from
// /etc/protocols on a typical system); tunstack does not read the host's
// file so that its output does not depend on the host.
var protoNames = []struct {
	num  uint8
	name string
}{
	{1, "icmp"}, {2, "igmp"}, {4, "ipencap"}, {6, "tcp"}, {17, "udp"}, {33, "dccp"},
	{41, "ipv6"}, {47, "gre"}, {50, "esp"}, {51, "ah"}, {58, "ipv6-icmp"},
	{89, "ospf"}, {103, "pim"}, {112, "vrrp"}, {132, "sctp"}, {135, "mobility-header"},
	{136, "udplite"},
}

func protoName(n uint8) string {
	if n == 0 {
		return "all"
	}
	for _, p := range protoNames {
		if p.num == n {
			return p.name
		}
	}
	return strconv.Itoa(int(n))
}

func parseProto(s string) (uint8, error) {
	ls := strings.ToLower(s)
	switch ls {
	case "all":
		return 0, nil
	case "icmpv6", "icmp6":
		return 58, nil
	case "mh", "ipv6-mh":
		return 135, nil
	}
	for _, p := range protoNames {
		if p.name == ls {
			return p.num, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown protocol %q specified", s)
	}
	return uint8(n), nil
}
