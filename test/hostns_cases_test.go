package test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// hostPort is where the host namespace's helper server listens.
const hostPort = 18081

func TestDownloadFromHostAddress(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	_, sum := testPayload()
	r := mustRun(t, runOpts{netns: ns}, "run", "--", "sh", "-c",
		fmt.Sprintf("curl -sS --fail http://%s:%d/file | sha256sum", hostAddr, hostPort))
	if got := strings.Fields(r.stdout); len(got) == 0 || got[0] != sum {
		t.Fatalf("sha256 of the download = %q, want %s\nstderr: %s", r.stdout, sum, r.stderr)
	}
}

func TestDisableHostLoopback(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	env := []string{helperEnv + "=dial"}
	gw := fmt.Sprintf("10.0.2.2:%d", hostPort)
	host := fmt.Sprintf("%s:%d", hostAddr, hostPort)

	r := tunstack(t, runOpts{netns: ns, env: env}, "run", "--", helperPath, gw)
	if r.code != 0 {
		t.Fatalf("without the flag, %s should reach the host's loopback: %q %s", gw, r.stdout, r.stderr)
	}
	r = tunstack(t, runOpts{netns: ns, env: env}, "run", "--disable-host-loopback", "--", helperPath, gw)
	if r.code != 1 || !strings.Contains(r.stdout, "connection refused") {
		t.Fatalf("--disable-host-loopback: dial %s: exit %d %q, want connection refused", gw, r.code, r.stdout)
	}
	r = tunstack(t, runOpts{netns: ns, env: env}, "run", "--disable-host-loopback", "--", helperPath, host)
	if r.code != 0 {
		t.Fatalf("--disable-host-loopback: the host's own address %s must stay reachable: %q %s", host, r.stdout, r.stderr)
	}
}

func TestHostErrorsReachTheSandbox(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	// An "unreachable" route on the host makes its connect() fail with
	// EHOSTUNREACH; the dummy uplink swallows SYNs (a silent host).
	if out, err := exec.Command("ip", "-n", ns, "route", "add", "unreachable", "198.19.255.0/24").CombinedOutput(); err != nil {
		t.Fatalf("add unreachable route: %v: %s", err, out)
	}
	tests := []struct {
		name, addr, want string
	}{
		{"host unreachable", "198.19.255.1:80", "no route to host"},
		{"nothing on the sandbox network", "10.0.2.77:80", "no route to host"},
		{"silent host times out", "198.18.0.77:80", "i/o timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tunstack(t, runOpts{netns: ns, env: []string{helperEnv + "=dial", "DIAL_TIMEOUT=3s"}}, "run", "--", helperPath, tt.addr)
			if r.code != 1 || !strings.Contains(r.stdout, tt.want) {
				t.Fatalf("dial %s: exit %d %q, want %q\nstderr: %s", tt.addr, r.code, r.stdout, tt.want, r.stderr)
			}
		})
	}
}
