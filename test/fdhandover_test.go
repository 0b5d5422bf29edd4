package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fdSandboxScript runs in the sandbox: an HTTP server on 10.0.2.100:8000
// serving DATA, a UDP server on 10.0.2.100:5300 answering in upper case,
// and, per port in LISTEN_PORTS, a client that keeps connecting to
// 10.0.2.2:PORT until it reaches a listener made through the control
// socket, sends "ping PORT\n", and writes what it gets back to
// OUT/listen-PORT.
const fdSandboxScript = `
import os, socket, sys, threading, time, http.server, functools
data, out = sys.argv[1], sys.argv[2]
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=data)
h.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("10.0.2.100", 8000), h)
threading.Thread(target=srv.serve_forever, daemon=True).start()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.2.100", 5300))
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d.upper(), a)
threading.Thread(target=udp, daemon=True).start()
def dial(port):
    while True:
        try:
            c = socket.create_connection(("10.0.2.2", port), timeout=5)
            c.sendall(b"ping %d\n" % port)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got += b
            if not got:
                continue  # reached the host's loopback, or a listener that said nothing
            with open(os.path.join(out, "listen-%d.tmp" % port), "wb") as f:
                f.write(got)
            os.rename(os.path.join(out, "listen-%d.tmp" % port), os.path.join(out, "listen-%d" % port))
            return
        except OSError:
            time.sleep(0.2)
for p in sys.argv[3:]:
    threading.Thread(target=dial, args=(int(p),), daemon=True).start()
print("ready", flush=True)
time.sleep(300)  # the instance ends by itself should the test die
`

// TestFDHandover asks a running instance for sockets over its control
// socket: tunstack connect/listen and the C and Python clients in
// examples/controlfd fetch bytes from a server in the sandbox and serve
// connections the sandbox makes to the gateway.
func TestFDHandover(t *testing.T) {
	needTun(t, 0)
	needProg(t, "cc", "python3")
	tmp := t.TempDir()
	ctlDir, dataDir, outDir := filepath.Join(tmp, "ctl"), filepath.Join(tmp, "data"), filepath.Join(tmp, "out")
	for _, d := range []string{dataDir, outDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	blob := make([]byte, 4<<20)
	rand.Read(blob)
	if err := os.WriteFile(filepath.Join(dataDir, "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(tmp, "server.py")
	os.WriteFile(script, []byte(fdSandboxScript), 0o644)
	cclient := filepath.Join(tmp, "controlfd")
	if out, err := exec.Command("cc", "-O2", "-Wall", "-Werror", "-o", cclient, "../examples/controlfd/controlfd.c").CombinedOutput(); err != nil {
		t.Fatalf("cc controlfd.c: %v\n%s", err, out)
	}
	pyclient, _ := filepath.Abs("../examples/controlfd/controlfd.py")
	env := []string{"TUNSTACK_CONTROL_DIR=" + ctlDir}

	// The instance, in the background; ended by PID.
	run := exec.Command(binPath, "run", "--name", "fdtest", "--", "python3", script, dataDir, outDir, "7000", "7001", "7002", "7003")
	run.Env = append(os.Environ(), env...)
	var runOut, runErr bytes.Buffer
	run.Stdout, run.Stderr = &runOut, &runErr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan struct{})
	go func() { run.Wait(); close(runDone) }()
	t.Cleanup(func() {
		run.Process.Signal(syscall.SIGTERM)
		select {
		case <-runDone:
		case <-time.After(10 * time.Second):
			run.Process.Kill()
			<-runDone
		}
		if t.Failed() {
			t.Logf("tunstack run: stdout %q\nstderr %s", runOut.String(), runErr.String())
		}
	})
	sock := filepath.Join(ctlDir, "fdtest.sock")
	get := "printf 'GET /blob HTTP/1.0\\r\\n\\r\\n'; cat >\"$OUT\""
	deadline := time.Now().Add(20 * time.Second)
	for {
		outFile := filepath.Join(tmp, "probe")
		r := tunstack(t, runOpts{env: append(env, "OUT="+outFile), timeout: 20 * time.Second}, "connect", "--name", "fdtest", "10.0.2.100:8000", "--", "sh", "-c", get)
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox's server did not answer: exit %d: %s", r.code, r.stderr)
		}
		select {
		case <-runDone:
			t.Fatalf("tunstack run exited: %s", runErr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}

	checkBody := func(t *testing.T, who string, resp []byte) {
		t.Helper()
		head, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
		if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.0 200")) {
			t.Fatalf("%s: response %.200q", who, resp)
		}
		if !bytes.Equal(body, blob) {
			t.Fatalf("%s: body of %d bytes differs from the %d served", who, len(body), len(blob))
		}
	}

	t.Run("connect", func(t *testing.T) {
		outFile := filepath.Join(tmp, "connect.out")
		mustRun(t, runOpts{env: append(env, "OUT="+outFile)}, "connect", "--name", "fdtest", "10.0.2.100:8000", "--", "sh", "-c", get)
		b, _ := os.ReadFile(outFile)
		checkBody(t, "tunstack connect", b)
	})
	t.Run("connect-refused", func(t *testing.T) {
		r := tunstack(t, runOpts{env: env}, "connect", "--name", "fdtest", ":8001", "--", "true")
		if r.code != 125 || !strings.Contains(r.stderr, "refused") {
			t.Fatalf("exit %d, stderr %q; want 125 and connection refused", r.code, r.stderr)
		}
	})
	t.Run("connect-udp", func(t *testing.T) {
		r := mustRun(t, runOpts{env: env}, "connect", "--name", "fdtest", "--udp", ":5300", "--", "sh", "-c", "echo hello; head -c 6 >&2")
		if !strings.Contains(r.stderr, "HELLO") {
			t.Fatalf("stderr %q, want the echoed HELLO", r.stderr)
		}
	})
	clients := []struct{ name, prog, script string }{{"c", cclient, ""}, {"python", "python3", pyclient}}
	// command runs a client: controlfd SOCKET OP ADDR.
	command := func(ctx context.Context, c struct{ name, prog, script string }, args ...string) *exec.Cmd {
		if c.script != "" {
			args = append([]string{c.script}, args...)
		}
		return exec.CommandContext(ctx, c.prog, args...)
	}
	for _, c := range clients {
		t.Run(c.name+"-client", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := command(ctx, c, sock, "connect", "10.0.2.100:8000")
			cmd.Stdin = strings.NewReader("GET /blob HTTP/1.0\r\n\r\n")
			var errb bytes.Buffer
			cmd.Stderr = &errb
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", c.prog, err, errb.String())
			}
			checkBody(t, c.name+" client", out)
			// A refused request is an error, not a hang.
			cmd = command(ctx, c, sock, "connect", "10.0.2.100:8001")
			cmd.Stdin = strings.NewReader("")
			msg, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(msg), "refused") {
				t.Fatalf("refused connect: %v, %q", err, msg)
			}
		})
	}

	// Listeners: the sandbox's clients dial 10.0.2.2:7000..7003.
	waitFile := func(t *testing.T, port string) string {
		t.Helper()
		p := filepath.Join(outDir, "listen-"+port)
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if b, err := os.ReadFile(p); err == nil {
				return string(b)
			}
		}
		t.Fatalf("the sandbox's client of 10.0.2.2:%s got nothing", port)
		return ""
	}
	t.Run("listen", func(t *testing.T) {
		r := mustRun(t, runOpts{env: env}, "listen", "--name", "fdtest", "--once", "7000", "--",
			"sh", "-c", `echo "pong $TUNSTACK_PEER"; head -c 100 >&2`)
		if !strings.Contains(r.stderr, "ping 7000") {
			t.Errorf("listen's command read %q, want ping 7000", r.stderr)
		}
		if got := waitFile(t, "7000"); !strings.HasPrefix(got, "pong 10.0.2.100:") {
			t.Errorf("the sandbox got %q, want pong from the listener", got)
		}
	})
	for i, c := range clients {
		port := []string{"7001", "7002"}[i]
		t.Run(c.name+"-listen", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := command(ctx, c, sock, "listen", ":"+port)
			cmd.Stdin = strings.NewReader("pong " + c.name + "\n")
			var errb bytes.Buffer
			cmd.Stderr = &errb
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", c.prog, err, errb.String())
			}
			if string(out) != "ping "+port+"\n" {
				t.Errorf("%s read %q", c.name, out)
			}
			if got := waitFile(t, port); got != "pong "+c.name+"\n" {
				t.Errorf("the sandbox got %q", got)
			}
		})
	}
	// The instance is still serving after all that.
	select {
	case <-runDone:
		t.Fatalf("tunstack run exited: %s", runErr.String())
	default:
	}
	if r := mustRun(t, runOpts{env: env}, "ps"); !strings.Contains(r.stdout, "fdtest") {
		t.Errorf("tunstack ps does not list the instance:\n%s", r.stdout)
	}
}
