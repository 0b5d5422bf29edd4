package test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// hostAddr is the "host's non-loopback address" inside a test-made host
// namespace (RFC 2544 benchmarking range: nothing leaves the machine).
const hostAddr = "198.18.0.1"

// hostNS creates a network namespace that plays the host: lo, plus a dummy
// uplink with hostAddr and a default route into nowhere. It starts the
// helper server there on 127.0.0.1:port and hostAddr:port, and removes
// everything when the test ends.
func hostNS(t *testing.T, port int) string {
	t.Helper()
	needRoot(t)
	needProg(t, "ip")
	name := fmt.Sprintf("tsh%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	// Kernels differ in which link types exist: dummy, ifb or a veth pair
	// kept inside the namespace all give a dead-end uplink.
	linked := false
	for _, kind := range [][]string{{"dummy"}, {"ifb"}, {"veth", "peer", "name", "hup1"}} {
		args := append([]string{"-n", name, "link", "add", "hup0", "type"}, kind...)
		if exec.Command("ip", args...).Run() == nil {
			linked = true
			break
		}
	}
	if !linked {
		t.Fatalf("cannot create a dummy, ifb or veth link in %s", name)
	}
	steps := [][]string{
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "addr", "add", hostAddr + "/24", "dev", "hup0"},
		{"-n", name, "link", "set", "hup0", "up"},
		{"-n", name, "route", "add", "default", "via", "198.18.0.254"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// ping sockets for the stack's echo relay, in this namespace only.
	exec.Command("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647").Run()

	startHelper(t, []string{"ip", "netns", "exec", name}, "server",
		fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("%s:%d", hostAddr, port))
	return name
}
