package test

import (
	"fmt"
	"strings"
	"testing"
)

// TestFirewallForwardChain checks the FORWARD mapping with real traffic to
// the host's non-loopback address (a test-made host namespace): egress to
// other addresses traverses FORWARD, so a default-DROP FORWARD policy with
// "-o host -j ACCEPT" and ESTABLISHED,RELATED lets a download through,
// while a REJECT in FORWARD refuses at once and never touches INPUT.
func TestFirewallForwardChain(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	_, sum := testPayload()
	allow := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n" +
		"-A FORWARD -i tun0 -o host -p tcp -j ACCEPT\nCOMMIT\n"
	r := mustRun(t, runOpts{netns: ns}, "run", "--rules", writeRules(t, allow), "--", "sh", "-c",
		fmt.Sprintf("curl -sS --fail -m 20 http://%s:%d/file | sha256sum", hostAddr, hostPort))
	if got := strings.Fields(r.stdout); len(got) == 0 || got[0] != sum {
		t.Fatalf("download through a default-DROP FORWARD with ESTABLISHED,RELATED: %q\nstderr: %s", r.stdout, r.stderr)
	}

	// Without the ESTABLISHED,RELATED rule the replies (FORWARD from host
	// to tun0) are dropped: the connection cannot complete.
	noReplies := "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i tun0 -o host -p tcp -j ACCEPT\nCOMMIT\n"
	r = tunstack(t, runOpts{netns: ns, env: []string{helperEnv + "=dial", "DIAL_TIMEOUT=2s"}},
		"run", "--rules", writeRules(t, noReplies), "--", helperPath, fmt.Sprintf("%s:%d", hostAddr, hostPort))
	if r.code != 1 || !strings.Contains(r.stdout, "i/o timeout") {
		t.Fatalf("FORWARD without a reply rule: exit %d %q, want i/o timeout\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	reject := fmt.Sprintf("*filter\n:INPUT DROP [0:0]\n-A FORWARD -d %s/32 -p tcp --dport %d -j REJECT --reject-with tcp-reset\nCOMMIT\n", hostAddr, hostPort)
	r = tunstack(t, runOpts{netns: ns, env: []string{helperEnv + "=dial", "DIAL_TIMEOUT=5s"}},
		"run", "--rules", writeRules(t, reject), "--", helperPath, fmt.Sprintf("%s:%d", hostAddr, hostPort))
	if r.code != 1 || !strings.Contains(r.stdout, "connection refused") {
		t.Fatalf("FORWARD REJECT tcp-reset: exit %d %q, want connection refused\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
