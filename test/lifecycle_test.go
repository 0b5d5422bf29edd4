package test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMStopsCommandAndLeavesNothing sends SIGTERM to tunstack: the
// command must get it, tunstack must exit with 128+15, and no process or
// temporary file may remain.
func TestSIGTERMStopsCommandAndLeavesNothing(t *testing.T) {
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			before := leftovers(t)
			marker := fmt.Sprintf("%d.%d", 300+os.Getpid()%100, time.Now().UnixNano()%1000)
			cmd := exec.Command(binPath, "run", "--", "sh", "-c", "echo ready; exec sleep "+marker)
			if u.uid != 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.uid)}}
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(out).ReadString('\n')
			if line != "ready\n" {
				cmd.Process.Kill()
				t.Fatalf("sandbox did not start: %q %s", line, stderr.String())
			}
			// "ready" comes just before the exec: give it a moment.
			var running []string
			for i := 0; i < 100 && len(running) != 1; i++ {
				time.Sleep(20 * time.Millisecond)
				running = processesWith(marker)
			}
			if len(running) != 1 {
				t.Fatalf("the command is not running as expected: %v", running)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatal("tunstack did not exit within 10 s of SIGTERM")
			}
			if code := cmd.ProcessState.ExitCode(); code != 128+15 {
				t.Errorf("exit status %d, want %d (command killed by SIGTERM)", code, 128+15)
			}
			if p := processesWith(marker); len(p) != 0 {
				t.Errorf("processes left behind: %v", p)
			}
			if after := leftovers(t); len(after) > len(before) {
				t.Errorf("files left behind: %v", after)
			}
		})
	}
}

// processesWith returns the PIDs of "sleep MARKER" processes.
func processesWith(marker string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && strings.HasPrefix(string(b), "sleep\x00"+marker) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

// leftovers lists temporary files tunstack creates and must remove.
func leftovers(t *testing.T) []string {
	m, _ := filepath.Glob(filepath.Join(os.TempDir(), "tunstack-resolv-*"))
	return m
}
