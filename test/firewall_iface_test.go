package test

import (
	"fmt"
	"strings"
	"testing"
)

// TestFirewallPreroutingInInterface checks -i at PREROUTING (issue 11):
// the REDIRECT written the usual way, with -i tun0, must redirect, and a
// ! -i tun0 DROP in mangle and raw PREROUTING must not drop the
// sandbox's own packets (both failed while gVisor had not yet named the
// input NIC at that hook).
func TestFirewallPreroutingInInterface(t *testing.T) {
	needTun(t, 0)
	needProg(t, "curl")
	port := startHTTP(t, "127.0.0.1:0")
	cases := []struct {
		name, rules string
	}{
		{"nat -i tun0 REDIRECT", fmt.Sprintf("*nat\n"+
			"-A PREROUTING -i tun0 -p tcp --dport 80 -j REDIRECT --to-ports %d\nCOMMIT\n", port)},
		{"mangle and raw ! -i tun0 DROP", fmt.Sprintf("*raw\n-A PREROUTING ! -i tun0 -j DROP\nCOMMIT\n"+
			"*mangle\n-A PREROUTING ! -i tun0 -j DROP\nCOMMIT\n"+
			"*nat\n-A PREROUTING -i tun0 -p tcp --dport 80 -j REDIRECT --to-ports %d\nCOMMIT\n", port)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tunstack(t, runOpts{}, "run", "--rules", writeRules(t, tc.rules), "--",
				"curl", "-sS", "--fail", "--max-time", "10", "http://10.0.2.2/")
			if r.code != 0 || !strings.HasPrefix(r.stdout, "hello from 10.0.2.2 to ") {
				t.Fatalf("curl http://10.0.2.2/ with rules\n%s: exit %d, %q\nstderr: %s", tc.rules, r.code, r.stdout, r.stderr)
			}
		})
	}
	// The negated form must still drop what does not come in on tun0:
	// nothing here, so a -i tun0 DROP in mangle PREROUTING drops all.
	rules := "*mangle\n-A PREROUTING -i tun0 -p tcp --dport 80 -j DROP\nCOMMIT\n"
	got, _ := dialSeq(t, runOpts{}, nil, rules, gw(80))
	wantDials(t, "mangle PREROUTING -i tun0 DROP", got, "timeout")
}
