package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
)

// tcpdumpProc is a "tunstack tcpdump -w -" running in the background.
type tcpdumpProc struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // set before done closes
}

func startTcpdump(t *testing.T, env []string, args ...string) *tcpdumpProc {
	t.Helper()
	p := &tcpdumpProc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, append([]string{"tcpdump"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Dir = "/"
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitListening waits until the capture is subscribed: tunstack tcpdump
// says "listening on" once the instance sent the pcap header.
func (p *tcpdumpProc) waitListening(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.stderr.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not listening: stderr %q", what, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for the capture to end (-c reached) and returns what real
// tcpdump makes of its pcap.
func (p *tcpdumpProc) wait(t *testing.T, what string) string {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("%s: %v\nstderr: %s", what, p.err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no end after -c packets; stderr: %s", what, p.stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rd := exec.CommandContext(ctx, "tcpdump", "-r", "-", "-n")
	rd.Stdin = strings.NewReader(p.stdout.String())
	var out, errb bytes.Buffer
	rd.Stdout, rd.Stderr = &out, &errb
	if err := rd.Run(); err != nil {
		t.Fatalf("%s: tcpdump -r - -n: %v\n%s", what, err, errb.String())
	}
	return out.String()
}

// TestCaptureHostSeesDNAT: -i host shows packets after the firewall's
// decisions (INPUT/FORWARD after PREROUTING DNAT), so a connection to
// 10.0.2.2:80 DNATed to the test's server port shows that port on host
// and port 80 on tun0. The pcap is read by real tcpdump.
func TestCaptureHostSeesDNAT(t *testing.T) {
	needTun(t, 0)
	needProg(t, "curl", "tcpdump")
	port := startHTTP(t, "127.0.0.1:0")
	rules := fmt.Sprintf("*nat\n:PREROUTING ACCEPT [0:0]\n"+
		"-A PREROUTING -d 10.0.2.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.2.2:%d\nCOMMIT\n", port)
	ctl := controlDir(t, 0)
	env := []string{control.DirEnv + "=" + ctl}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	gofile := filepath.Join(dir, "go")
	name := fmt.Sprintf("caphost%d", os.Getpid())
	script := fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; curl -sS --fail --max-time 10 http://10.0.2.2/", gofile)
	run := startBG(t, 0, env, binPath, "run", "--name", name, "--rules", writeRules(t, rules), "--", "sh", "-c", script)

	waitControlSocket(t, run, control.SocketPath(ctl, name))

	// The handshake and the request: 4 packets are there on both sides
	// whatever the timing of the rest.
	host := startTcpdump(t, env, "--name", name, "-i", "host", "-w", "-", "-c", "4", "-n", "tcp")
	tun := startTcpdump(t, env, "--name", name, "-i", "tun0", "-w", "-", "-c", "4", "-n", "tcp")
	host.waitListening(t, "-i host")
	tun.waitListening(t, "-i tun0")
	if err := os.WriteFile(gofile, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	hostOut := host.wait(t, "-i host")
	tunOut := tun.wait(t, "-i tun0")
	select {
	case <-run.done:
	case <-time.After(20 * time.Second):
		t.Fatal("tunstack run did not end after curl")
	}
	if !strings.HasPrefix(run.stdout.String(), "hello from 10.0.2.2 to ") {
		t.Errorf("curl through DNAT: %q\nstderr: %s", run.stdout.String(), run.stderr.String())
	}

	port80 := regexp.MustCompile(`10\.0\.2\.2\.80[: ]`)
	dnat := regexp.MustCompile(fmt.Sprintf(`10\.0\.2\.2\.%d[: ]`, port))
	syn := regexp.MustCompile(`> 10\.0\.2\.2\.\d+: Flags \[S\]`)
	if !dnat.MatchString(hostOut) || port80.MatchString(hostOut) || !syn.MatchString(hostOut) {
		t.Errorf("-i host should show the SYN to the DNATed port %d, never port 80:\n%s", port, hostOut)
	}
	if !port80.MatchString(tunOut) || dnat.MatchString(tunOut) || !syn.MatchString(tunOut) {
		t.Errorf("-i tun0 should show the SYN to port 80, never %d:\n%s", port, tunOut)
	}
	if t.Failed() {
		t.Logf("-i host:\n%s-i tun0:\n%s", hostOut, tunOut)
		t.Logf("host stderr: %s\ntun0 stderr: %s", host.stderr.String(), tun.stderr.String())
	}
}
