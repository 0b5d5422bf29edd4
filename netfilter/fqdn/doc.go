// Package fqdn is a DNS-aware egress allowlist ("this may reach
// github.com and the package index, and nothing else") built from plain
// netfilter rules and ipsets.
//
// A Policy holds patterns: DNS names (exact), wildcards (*.example.test,
// any name below the domain, not the domain itself), and IP addresses or
// CIDR prefixes, each optionally limited to a port or port range. It
// installs one filter chain, TS-ALLOW, in each family, jumped to from the
// top of INPUT (traffic to the gateway's own addresses) and of FORWARD for
// egress (-o host):
//
//	-A TS-ALLOW -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
//	-A TS-ALLOW -d 10.0.2.3/32 -p udp -m udp --dport 53 -j RETURN     (the DNS relay)
//	-A TS-ALLOW -d 198.18.0.0/15 -j RETURN                            (an address pattern)
//	-A TS-ALLOW -m set --match-set ts-allow4 dst -j RETURN            (addresses learned from DNS)
//	-A TS-ALLOW -p tcp -m set --match-set ts-allow4-443 dst -m tcp --dport 443 -j RETURN
//	-A TS-ALLOW -j REJECT --reject-with icmp-admin-prohibited
//
// A packet that returns goes on through the rest of INPUT or FORWARD, so
// the user's own rules after the jump still apply; a rule the user inserts
// before the jump (iptables -I FORWARD 1 ...) is decided before the policy.
//
// Names are learned from the answers of the stack's DNS relay
// (FilterResponse): an answer is allowed when the name asked for, or any
// name along its CNAME chain, matches a name pattern; its A and AAAA
// addresses then enter the learned sets (ipset with timeout support) for
// their TTL, raised to Config.MinTTL. Established flows outlive the
// entries. An answer that matches no pattern reaches the client as
// NXDOMAIN with an Extended DNS Error (RFC 8914, code 15 "Blocked"), and
// nothing is learned from it.
//
// Denials fail fast: REJECT with ICMP administratively prohibited (ICMPv6
// address unreachable), which a Linux program sees as EHOSTUNREACH ("No
// route to host"). The policy
// logs each denied destination once per interval and can write every
// decision to an audit stream as JSON lines.
//
// The DNS relay forwards every query upstream, allowed name or not, so
// that CNAME chains from unlisted names can be followed; a sandbox can
// therefore still leak data through the names it asks for. Only answers
// are filtered.
package fqdn
