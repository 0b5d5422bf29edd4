package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
)

// TestFirewallLogSlowStderr: a LOG rule on every packet of a 64 MiB
// download while tunstack's stderr is a pipe nobody reads. The LOG
// lines fill the pipe within moments; the download must still finish
// intact (LOG never blocks the packet path), and tunstack ps --json
// counts the lines it had to drop.
func TestFirewallLogSlowStderr(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "127.0.0.1:0")
	_, sum := testPayload()
	ctl := t.TempDir()
	env := []string{control.DirEnv + "=" + ctl}
	name := fmt.Sprintf("logq%d", os.Getpid())
	rules := "*filter\n-A INPUT -j LOG --log-prefix \"in \"\n-A OUTPUT -j LOG --log-prefix \"out \"\nCOMMIT\n"
	script := fmt.Sprintf("curl -sS --fail -m 60 http://10.0.2.2:%d/file | sha256sum; echo done; exec sleep 30", port)
	bg := exec.Command(binPath, "run", "--name", name, "--rules", writeRules(t, rules), "--", "sh", "-c", script)
	// stderr: a pipe whose reader is held open and never read.
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errR.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	bg.Stdout, bg.Stderr = outW, errW
	bg.Env = append(os.Environ(), env...)
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	defer func() {
		bg.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { bg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			bg.Process.Kill()
			<-done
		}
	}()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got string
	select {
	case got = <-lines:
	case <-time.After(90 * time.Second):
		t.Fatal("the download did not finish: the stack stalled on its stderr")
	}
	if f := strings.Fields(got); len(f) == 0 || f[0] != sum {
		t.Fatalf("download through LOG rules: sha256 %q, want %s", got, sum)
	}
	r := mustRun(t, runOpts{env: env}, "ps", "--json")
	var infos []control.Info
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 1 || infos[0].Firewall == nil {
		t.Fatalf("ps --json: %v\n%s", err, r.stdout)
	}
	lg := infos[0].Firewall.Log
	if lg.Dropped+lg.RateLimited == 0 {
		t.Fatalf("LOG counters %+v: no line counted as dropped though stderr was never read", lg)
	}
	t.Logf("LOG lines: %+v", lg)
}
