package test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv selects a helper mode of the test binary (see helperMain).
const helperEnv = "TUNSTACK_TEST_HELPER"

// helperPath is a world-readable copy of the test binary, runnable inside
// sandboxes and host namespaces as a helper program.
var helperPath string

// payloadSize is the size of the transfer tests' file.
const payloadSize = 64 << 20

var (
	payloadOnce sync.Once
	payload     []byte
	payloadSum  string
)

// testPayload returns deterministic pseudo-random bytes and their sha256.
func testPayload() ([]byte, string) {
	payloadOnce.Do(func() {
		payload = make([]byte, payloadSize)
		r := rand.NewChaCha8([32]byte{'t', 'u', 'n', 's', 't', 'a', 'c', 'k'})
		r.Read(payload)
		s := sha256.Sum256(payload)
		payloadSum = hex.EncodeToString(s[:])
	})
	return payload, payloadSum
}

// fileHandler serves the payload at /file and answers POST /upload with the
// body's sha256 and length.
func fileHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		p, _ := testPayload()
		http.ServeContent(w, r, "file", time.Time{}, bytes.NewReader(p))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%x %d\n", h.Sum(nil), n)
	})
	mux.HandleFunc("/peer", func(w http.ResponseWriter, r *http.Request) {
		// Which server the connection reached (its port), and a body of
		// fixed size whatever the addresses are.
		port := 0
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
			port = a.Port
		}
		fmt.Fprintf(w, "port=%05d peer=%-39s\n%s", port, r.RemoteAddr, strings.Repeat("x", 4000))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s to %s\n", r.Host, r.RemoteAddr)
	})
	return mux
}

// startHTTP serves fileHandler on addr ("127.0.0.1:0", "[::1]:0") until the
// test ends, and returns the bound port.
func startHTTP(t *testing.T, addr string) int {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	srv := &http.Server{Handler: fileHandler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// startUDPEcho echoes datagrams on addr until the test ends.
func startUDPEcho(t *testing.T, addr string) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go udpEcho(pc)
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func udpEcho(pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// runResult is the outcome of one tunstack invocation.
type runResult struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// runOpts select how tunstack is started.
type runOpts struct {
	uid     int      // 0: as is; otherwise run as this uid/gid
	netns   string   // run inside this named network namespace (ip netns)
	env     []string // extra environment
	timeout time.Duration
	stdin   io.Reader
}

// tunstack runs the binary with args and returns what it printed and its
// exit status.
func tunstack(t *testing.T, o runOpts, args ...string) runResult {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 60 * time.Second
	}
	argv := append([]string{binPath}, args...)
	setuid := o.uid != 0
	if o.netns != "" {
		if setuid {
			// Only root enters the namespace; tunstack then runs as uid.
			id := strconv.Itoa(o.uid)
			argv = append([]string{"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", "--"}, argv...)
			setuid = false
		}
		argv = append([]string{"ip", "netns", "exec", o.netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, o.stdin
	// GOTRACEBACK=all: a hang's SIGABRT (hangReport) dumps every goroutine.
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	cmd.Dir = "/"
	// A grandchild that keeps our output pipes open must not hang the test
	// past the timeout.
	cmd.WaitDelay = 5 * time.Second
	if o.uid != 0 {
		if setuid {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.uid)}}
		}
		// Defaults for the user, which o.env may override.
		cmd.Env = append(cmd.Env, "HOME=/tmp", "XDG_RUNTIME_DIR=")
	}
	cmd.Env = append(cmd.Env, o.env...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tunstack %v: %v", args, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	timedOut := false
	select {
	case err = <-waited:
	case <-time.After(o.timeout):
		// Say where it hangs before killing it: the process tree's
		// states and kernel stacks, then every tunstack process's
		// goroutines (SIGABRT with GOTRACEBACK=all).
		timedOut = true
		t.Logf("tunstack %v still running after %v; process tree:\n%s", args, o.timeout, hangReport(cmd.Process.Pid))
		select {
		case err = <-waited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			err = <-waited
		}
	}
	res := runResult{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if timedOut {
		t.Fatalf("tunstack %v did not finish within %v\nstdout: %s\nstderr: %s", args, o.timeout, res.stdout, res.stderr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			res.code = 128 + int(st.Signal())
		}
	default:
		t.Fatalf("run tunstack %v: %v\nstdout: %s\nstderr: %s", args, err, res.stdout, res.stderr)
	}
	return res
}

// mustRun is tunstack that also requires exit status 0.
func mustRun(t *testing.T, o runOpts, args ...string) runResult {
	t.Helper()
	r := tunstack(t, o, args...)
	if r.code != 0 {
		t.Fatalf("tunstack %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// users are the identities the sandbox tests run as.
var users = []struct {
	name string
	uid  int
}{{"root", 0}, {"nobody", 65534}}

// startHelper runs the test binary as helper mode with args, after the
// argv prefix (e.g. ip netns exec NS; none for this namespace), waits for
// it to print "ready", and stops it when the test ends: stdin closes,
// then SIGKILL after 5 s.
func startHelper(t *testing.T, prefix []string, mode string, args ...string) {
	t.Helper()
	argv := append(append(append([]string{}, prefix...), helperPath), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s helper: %v", mode, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("%s helper did not start: %q %v", mode, line, err)
	}
}

// helperMain runs the test binary as a helper program.
func helperMain(mode string, args []string) int {
	switch mode {
	case "udpclient":
		return udpClient(args[1], args[2])
	case "server":
		return serveUntilStdinCloses(args[1:])
	case "dial":
		return dialHelper(args[1])
	case "probe":
		return probeHelper(args[1:])
	case "udpprobe":
		return udpProbe(args[1])
	case "zone":
		return serveZone(args[1])
	case "flood":
		return floodHelper(args)
	case "udpsizes":
		return udpSizes(args[2], args[3])
	case "synfrag":
		return synFrag(args[2], args[3])
	case "udpsink":
		return udpSink(args[1:])
	case "ctserver":
		return ctServer(args[1], args[2])
	case "cttraffic":
		return ctTraffic(args[2], args[3:])
	case "udpspray":
		return udpSpray(args[1], args[2])
	case "unixpost":
		return unixPost(args[1], args[2], args[3])
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// udpClient sends n numbered datagrams to addr one at a time and checks
// each echo. It prints "lost=K" and exits 1 if any was lost.
func udpClient(addr, count string) int {
	n, _ := strconv.Atoi(count)
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.Close()
	lost := 0
	buf := make([]byte, 2048)
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("datagram %06d %s", i, strings.Repeat("x", i%1000))
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := c.Read(buf)
		if err != nil || string(buf[:k]) != msg {
			lost++
		}
	}
	fmt.Printf("lost=%d\n", lost)
	if lost > 0 {
		return 1
	}
	return 0
}

// serveUntilStdinCloses serves fileHandler over TCP and echoes UDP on each
// address given, prints "ready", and exits when stdin closes.
func serveUntilStdinCloses(addrs []string) int {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		go http.Serve(ln, fileHandler())
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		go udpEcho(pc)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// dialHelper dials addr ("tcp" network) and prints "ok" or the error.
func dialHelper(addr string) int {
	timeout := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("DIAL_TIMEOUT")); err == nil {
		timeout = d
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	c.Close()
	fmt.Println("ok")
	return 0
}

// sharedDir makes a directory directly in /tmp with the given mode,
// removed when the test ends. Not t.TempDir: its parent is private to
// root, and a sandbox or instance running as nobody must reach what the
// test puts there.
func sharedDir(t *testing.T, prefix string, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}
