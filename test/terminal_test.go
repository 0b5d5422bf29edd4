package test

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestInteractiveShellOnTerminal runs an interactive shell in a sandbox on
// a pseudo-terminal (script(1)), interrupts a foreground command with ^C
// typed on the terminal, and checks that the shell survives it, that only
// the command got the signal, and that the shell's exit status comes out.
func TestInteractiveShellOnTerminal(t *testing.T) {
	needTun(t, 0)
	needProg(t, "script")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qec", binPath+" run -- sh -i", "/dev/null")
	in, out := io.Pipe()
	cmd.Stdin = in
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, s := range []string{"sleep 20\n", "\x03", "echo survived $?\n", "exit 5\n"} {
			time.Sleep(700 * time.Millisecond)
			out.Write([]byte(s))
		}
		// Wait waits for the stdin copier, which waits for EOF.
		time.Sleep(2 * time.Second)
		out.Close()
	}()
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("script: %v\n%s", err, buf.String())
	}
	if !strings.Contains(buf.String(), "survived 130") {
		t.Fatalf("^C should interrupt sleep (status 130) and leave the shell running; terminal showed:\n%s", buf.String())
	}
	if code != 5 {
		t.Fatalf("exit status %d, want the shell's 5; terminal showed:\n%s", code, buf.String())
	}
}
