package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDownloadFromHostLoopback(t *testing.T) {
	_, sum := testPayload()
	port := startHTTP(t, "127.0.0.1:0")
	for _, u := range users {
		// --procs 1: the stack on one OS thread (GOMAXPROCS=1) carries
		// the same bytes.
		for _, procs := range []string{"0", "1"} {
			t.Run(u.name+"/procs"+procs, func(t *testing.T) {
				needTun(t, u.uid)
				r := mustRun(t, runOpts{uid: u.uid}, "run", "--procs", procs, "--", "sh", "-c",
					fmt.Sprintf("curl -sS --fail http://10.0.2.2:%d/file | sha256sum", port))
				if got := strings.Fields(r.stdout); len(got) == 0 || got[0] != sum {
					t.Fatalf("sha256 of the download = %q, want %s\nstderr: %s", r.stdout, sum, r.stderr)
				}
			})
		}
	}
}

func TestUploadToHost(t *testing.T) {
	p, sum := testPayload()
	dir := sharedDir(t, "tunstack-upload-", 0o755)
	file := filepath.Join(dir, "payload")
	if err := os.WriteFile(file, p, 0o644); err != nil {
		t.Fatal(err)
	}
	port := startHTTP(t, "127.0.0.1:0")
	want := fmt.Sprintf("%s %d", sum, len(p))
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			r := mustRun(t, runOpts{uid: u.uid}, "run", "--", "curl", "-sS", "--fail", "-T", file, "-X", "POST",
				fmt.Sprintf("http://10.0.2.2:%d/upload", port))
			if strings.TrimSpace(r.stdout) != want {
				t.Fatalf("host received %q, want %q\nstderr: %s", r.stdout, want, r.stderr)
			}
		})
	}
}

func TestRefusedPortIsImmediate(t *testing.T) {
	needTun(t, 0)
	port := closedPort(t)
	// The sandbox's connect must fail with ECONNREFUSED (an RST), not time
	// out: the helper dials with a 10 s timeout.
	r := tunstack(t, runOpts{env: []string{helperEnv + "=dial"}}, "run", "--",
		helperPath, fmt.Sprintf("10.0.2.2:%d", port))
	if r.code != 1 || !strings.Contains(r.stdout, "connection refused") {
		t.Fatalf("dial of a closed host port: exit %d, output %q (want connection refused)\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r.elapsed.Seconds() > 5 {
		t.Fatalf("refusal took %v: the RST is not immediate", r.elapsed)
	}
}

func TestIPv6ToHostLoopback(t *testing.T) {
	needTun(t, 0)
	port := startHTTP(t, "[::1]:0")
	r := mustRun(t, runOpts{}, "run", "--", "curl", "-6", "-sS", "--fail", fmt.Sprintf("http://[fd00::2]:%d/", port))
	if !strings.HasPrefix(r.stdout, "hello from") {
		t.Fatalf("curl -6 [fd00::2] got %q\nstderr: %s", r.stdout, r.stderr)
	}
}

func TestUDPEchoNoLoss(t *testing.T) {
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			port := startUDPEcho(t, "127.0.0.1:0")
			r := mustRun(t, runOpts{uid: u.uid, env: []string{helperEnv + "=udpclient"}}, "run", "--",
				helperPath, fmt.Sprintf("10.0.2.2:%d", port), "1000")
			if strings.TrimSpace(r.stdout) != "lost=0" {
				t.Fatalf("UDP echo: %q\nstderr: %s", r.stdout, r.stderr)
			}
		})
	}
}

func TestPingGateway(t *testing.T) {
	needTun(t, 0)
	needProg(t, "ping")
	for _, target := range []string{"10.0.2.2", "fd00::2"} {
		r := tunstack(t, runOpts{}, "run", "--", "ping", "-n", "-c", "2", "-W", "3", target)
		if r.code != 0 || !strings.Contains(r.stdout, " 0% packet loss") {
			t.Errorf("ping %s: exit %d\n%s\nstderr: %s", target, r.code, r.stdout, r.stderr)
		}
	}
}

func TestExitStatus(t *testing.T) {
	needTun(t, 0)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"success", []string{"run", "--", "true"}, 0},
		{"exit code", []string{"run", "--", "sh", "-c", "exit 7"}, 7},
		{"killed by signal", []string{"run", "--", "sh", "-c", "kill -KILL $$"}, 128 + 9},
		{"command not found", []string{"run", "--", "no-such-command-tunstack"}, 127},
		{"bad mtu is tunstack's failure", []string{"run", "--mtu", "100", "--", "true"}, 125},
		{"bad cidr", []string{"run", "--cidr", "10.0.2.0/30", "--", "true"}, 125},
		{"bad queue count", []string{"run", "--queues", "0", "--", "true"}, 125},
		{"bad procs", []string{"run", "--procs", "-1", "--", "true"}, 125},
		// --procs is the stack's GOMAXPROCS, not the command's environment.
		{"procs not inherited", []string{"run", "--procs", "1", "--", "sh", "-c", `test -z "${GOMAXPROCS:-}"`}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tunstack(t, runOpts{}, tt.args...)
			if r.code != tt.want {
				t.Fatalf("tunstack %v: exit %d, want %d\nstderr: %s", tt.args, r.code, tt.want, r.stderr)
			}
			if (tt.want == 125 || tt.want == 127) && !strings.Contains(r.stderr, "tunstack:") {
				t.Errorf("tunstack's own failure printed no error: %q", r.stderr)
			}
		})
	}
}

// TestExitStatusNotFoundOrNotExecutable: a command that does not exist
// exits 127, one that exists but cannot be executed (no execute
// permission, a directory, a path through a file) 126, as in bash and
// podman; the message says which. As root and as nobody.
func TestExitStatusNotFoundOrNotExecutable(t *testing.T) {
	for _, u := range users {
		for _, tc := range []struct {
			name, cmd string
			want      int
			msg       string
		}{
			{"not in PATH", "no-such-command-tunstack", 127, "no-such-command-tunstack: command not found"},
			{"no such path", "/nonexistent-tunstack/cmd", 127, "/nonexistent-tunstack/cmd: command not found"},
			{"not executable", "/etc/passwd", 126, "/etc/passwd: permission denied"},
			{"a directory", "/", 126, "/: is a directory"},
			{"a path through a file", "/etc/passwd/x", 126, "/etc/passwd/x: not a directory"},
		} {
			t.Run(u.name+" "+tc.name, func(t *testing.T) {
				needTun(t, u.uid)
				needProg(t, "bash")
				r := tunstack(t, runOpts{uid: u.uid}, "run", "--", tc.cmd)
				if r.code != tc.want || !strings.Contains(r.stderr, "tunstack: "+tc.msg) {
					t.Errorf("run -- %s: exit %d, stderr %q; want %d and %q", tc.cmd, r.code, r.stderr, tc.want, tc.msg)
				}
				// The reference: bash's status for the same command.
				bash := exec.Command("bash", "-c", tc.cmd)
				out, _ := bash.CombinedOutput()
				if code := bash.ProcessState.ExitCode(); code != tc.want {
					t.Errorf("bash -c %s exits %d (%s), the test expects %d", tc.cmd, code, out, tc.want)
				}
			})
		}
	}
}

func TestStdinPassesThrough(t *testing.T) {
	needTun(t, 0)
	r := mustRun(t, runOpts{stdin: strings.NewReader("through the sandbox\n")}, "run", "--", "cat")
	if r.stdout != "through the sandbox\n" {
		t.Fatalf("stdin to cat came out as %q", r.stdout)
	}
}

// TestMultiqueue carries parallel downloads over a two-queue TUN, in both
// offload modes: every byte must arrive whichever queue a flow hashes to.
func TestMultiqueue(t *testing.T) {
	_, sum := testPayload()
	port := startHTTP(t, "127.0.0.1:0")
	for _, offload := range []string{"on", "off"} {
		for _, u := range users {
			t.Run("offload="+offload+"/"+u.name, func(t *testing.T) {
				needTun(t, u.uid)
				script := fmt.Sprintf("for i in 1 2 3; do curl -sS --fail http://10.0.2.2:%d/file | sha256sum & done; wait", port)
				r := mustRun(t, runOpts{uid: u.uid}, "run", "--queues", "2", "--offload", offload, "--", "sh", "-c", script)
				lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
				if len(lines) != 3 {
					t.Fatalf("want 3 checksums, got %q\nstderr: %s", r.stdout, r.stderr)
				}
				for _, l := range lines {
					if f := strings.Fields(l); len(f) == 0 || f[0] != sum {
						t.Fatalf("sha256 %q, want %s\nstderr: %s", l, sum, r.stderr)
					}
				}
			})
		}
	}
}
