package fqdn_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/netfilter/fqdn"
)

// A policy in a gateway-mode firewall: the chain it installs, and what
// it makes of two DNS answers. In a program, pass the stack's firewall
// and give FilterResponse to the DNS relay (dnsrelay.Relay.SetFilter).
func Example() {
	fw, _ := netfilter.New(nil, netfilter.Config{Gateway: true, HostInterface: "host"})
	pats, _ := fqdn.ParsePatterns("*.pkg.test,api.test:443")
	p, err := fqdn.New(fw, fqdn.Config{Patterns: pats, DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")}, HostInterface: "host"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for _, line := range strings.Split(fw.Save(netfilter.IPv4, false), "\n") {
		if strings.HasPrefix(line, "-A TS-ALLOW") {
			fmt.Println(line)
		}
	}

	ask := func(name, record string) {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		query, _ := q.Pack()
		r := new(dns.Msg)
		r.SetReply(q)
		rr, _ := dns.NewRR(record)
		r.Answer = append(r.Answer, rr)
		resp, _ := r.Pack()
		out := new(dns.Msg)
		out.Unpack(p.FilterResponse(query, resp))
		fmt.Println(name, dns.RcodeToString[out.Rcode], len(out.Answer), "answers")
	}
	ask("files.pkg.test.", "files.pkg.test. 300 IN A 198.18.0.10")
	ask("tracker.test.", "tracker.test. 300 IN A 198.18.0.11")
	list, _ := fw.IPSet([]string{"list", "ts-allow4"})
	fmt.Println(strings.Contains(list, "198.18.0.10 timeout 300"))
	// Output:
	// -A TS-ALLOW -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
	// -A TS-ALLOW -d 10.0.2.3/32 -p udp -m udp --dport 53 -j RETURN
	// -A TS-ALLOW -d 10.0.2.3/32 -p tcp -m tcp --dport 53 -j RETURN
	// -A TS-ALLOW -m set --match-set ts-allow4 dst -j RETURN
	// -A TS-ALLOW -p tcp -m set --match-set ts-allow4-443 dst -m tcp --dport 443 -j RETURN
	// -A TS-ALLOW -p udp -m set --match-set ts-allow4-443 dst -m udp --dport 443 -j RETURN
	// -A TS-ALLOW -j REJECT --reject-with icmp-admin-prohibited
	// files.pkg.test. NOERROR 1 answers
	// tracker.test. NXDOMAIN 0 answers
	// true
}
