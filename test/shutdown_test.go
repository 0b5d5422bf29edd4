package test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExitWhileSandboxSends: tunstack exits once its command has, even
// while packets keep arriving on tun0 and the firewall's hooks evaluate
// them. The command leaves a UDP sender running (--no-pidns, so it outlives
// the command and tun0 stays busy while tunstack shuts down). The stack
// used to wait for the TUN reader while holding the lock the reader's
// hooks needed, and tunstack never exited (a CI flake in the firewall
// tests, made likely here by the stream of packets and the long chain:
// before the fix, 4 runs in 5 of this shape hung).
func TestExitWhileSandboxSends(t *testing.T) {
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			// Not t.TempDir: its parent is root's alone, and nobody's
			// tunstack reads the rules and the sender writes its flag.
			dir := sharedDir(t, "tunstack-spray-", 0o777)
			sending := filepath.Join(dir, "sending")
			rules := filepath.Join(dir, "rules")
			if err := os.WriteFile(rules, []byte(sprayRules()), 0o644); err != nil {
				t.Fatal(err)
			}
			// Two senders keep the TUN reader busy on two cores.
			spray := fmt.Sprintf("%s 10.0.2.2:9 %s </dev/null >/dev/null 2>&1 & echo $!; ", helperPath, sending)
			script := spray + spray + fmt.Sprintf("i=0; while [ ! -e %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done", sending)
			r := tunstack(t, runOpts{uid: u.uid, env: []string{helperEnv + "=udpspray"}, timeout: 30 * time.Second},
				"run", "--no-pidns", "--rules", rules, "--", "sh", "-c", script)
			// The sender is ours to stop, whatever happened.
			for _, f := range strings.Fields(r.stdout) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if r.code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if _, err := os.Stat(sending); err != nil {
				t.Fatalf("the sender never got going (%v): the test proved nothing\nstderr: %s", err, r.stderr)
			}
			if r.elapsed > 20*time.Second {
				t.Errorf("tunstack took %v to exit", r.elapsed)
			}
		})
	}
}

// sprayRules make every datagram of the senders slow to evaluate (2000
// raw PREROUTING rules that do not match, before the later hooks ask for
// the input interface's name again), so that the TUN reader is busy inside
// the hooks when the stack closes, and then drop it in INPUT: nothing
// reaches the host.
func sprayRules() string {
	var b strings.Builder
	b.WriteString("*raw\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "-A PREROUTING -s 198.18.%d.%d/32 -j DROP\n", i/250, i%250+1)
	}
	b.WriteString("COMMIT\n*filter\n-A INPUT -p udp -m udp --dport 9 -j DROP\nCOMMIT\n")
	return b.String()
}

// udpSpray sends small datagrams to addr as fast as it can, creating the
// file flag after the first thousand, until a send fails for good (tun0 is
// gone) or 30 s have passed; the test kills it sooner.
func udpSpray(addr, flag string) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpspray:", err)
		return 1
	}
	defer c.Close()
	end := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		if _, err := c.Write([]byte("spray")); err != nil &&
			!errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, syscall.ECONNREFUSED) {
			return 0
		}
		if i == 1000 {
			os.WriteFile(flag, nil, 0o644)
		}
	}
	return 0
}
