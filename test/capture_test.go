package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
)

// TestCaptureChecksumsAndInstanceEnd captures a download with checksum
// offload on (the default): real tcpdump -vv finds every TCP checksum
// correct, and when the instance ends the capture exits 0 with its count
// and a pcap tcpdump reads whole.
func TestCaptureChecksumsAndInstanceEnd(t *testing.T) {
	needTun(t, 0)
	needProg(t, "curl", "tcpdump")
	port := startHTTP(t, "127.0.0.1:0")
	ctl := controlDir(t, 0)
	env := []string{control.DirEnv + "=" + ctl}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	gofile := filepath.Join(dir, "go")
	name := fmt.Sprintf("capend%d", os.Getpid())
	script := fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; curl -sS -o /dev/null --fail --max-time 10 -r 0-200000 http://10.0.2.2:%d/file", gofile, port)
	run := startBG(t, 0, env, binPath, "run", "--name", name, "--offload", "auto", "--", "sh", "-c", script)
	waitControlSocket(t, run, control.SocketPath(ctl, name))
	cap := startTcpdump(t, env, "--name", name, "-w", "-", "tcp")
	cap.waitListening(t, "tcpdump")
	if err := os.WriteFile(gofile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cap.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the capture did not end with the instance; stderr: %s", cap.stderr.String())
	}
	if cap.err != nil || !strings.Contains(cap.stderr.String(), "packets captured") {
		t.Fatalf("capture at the instance's end: %v, stderr %q; want exit 0 and the count", cap.err, cap.stderr.String())
	}
	rd := exec.Command("tcpdump", "-vv", "-n", "-r", "-")
	rd.Stdin = strings.NewReader(cap.stdout.String())
	var out, errb bytes.Buffer
	rd.Stdout, rd.Stderr = &out, &errb
	if err := rd.Run(); err != nil {
		t.Fatalf("tcpdump -r of the capture: %v: %s", err, errb.String())
	}
	if n := strings.Count(out.String(), "(correct)"); n < 4 || strings.Contains(out.String(), "incorrect") {
		t.Errorf("tcpdump -vv: %d correct checksums, incorrect ones: %v\n%s", n, strings.Contains(out.String(), "incorrect"), firstLines(out.String(), 20))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
