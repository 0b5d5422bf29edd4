package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestForwardPaths: a TCP forward from the host's loopback (and from a
// unix socket) takes the splice path by default (the sandbox's server sees
// the connection come from its own 127.0.0.1) and the stack path with
// --forward-path stack (it sees the gateway, 10.0.2.2); both carry 64 MiB
// down and 16 MiB up intact, as root and as nobody, with and without a
// PID namespace.
func TestForwardPaths(t *testing.T) {
	cases := []struct {
		name  string
		flags []string
		peer  string // the address the sandbox's server sees
		peer6 string // the same for the forward from [::1]
		splic bool   // forward list counts spliced connections
	}{
		{"auto", nil, "127.0.0.1", "[::1]", true},
		{"auto-nopidns", []string{"--no-pidns"}, "127.0.0.1", "[::1]", true},
		{"stack", []string{"--forward-path", "stack"}, "10.0.2.2", "[fd00::2]", false},
	}
	for _, u := range users {
		for _, tc := range cases {
			t.Run(u.name+"/"+tc.name, func(t *testing.T) {
				needTun(t, u.uid)
				f := startForwarded(t, u.uid, "path-"+u.name+"-"+tc.name, tc.flags...)
				for _, via := range []struct {
					name string
					c    *http.Client
					peer string
				}{{"tcp", f.tcp, tc.peer}, {"tcp6", f.tcp6, tc.peer6}, {"unix", f.unix, tc.peer}} {
					body, err := getBody(via.c, "http://sandbox/")
					if err != nil || !strings.Contains(body, " to "+via.peer+":") {
						t.Errorf("%s forward: server saw %q (%v), want a client at %s", via.name, body, err, via.peer)
					}
				}
				checkTransfer(t, f.tcp)
				if n := splicedCount(t, f); (n > 0) != tc.splic {
					t.Errorf("forward list counts %d spliced connections; want some: %v", n, tc.splic)
				}
			})
		}
	}
}

// TestSpliceForward drives the splice path: 500 short connections all
// succeed and leave no descriptor behind in tunstack, a forward to a port
// nothing listens on closes the client at once, and a firewall rule sends
// connections down the stack path (its counter moves, a DROP blocks them)
// until the rules are flushed.
func TestSpliceForward(t *testing.T) {
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			f := startForwarded(t, u.uid, "splice-"+u.name)
			t.Run("many", func(t *testing.T) { checkManyConns(t, f, 500) })
			t.Run("refused", func(t *testing.T) { checkRefused(t, f.refusedAddr) })
			t.Run("firewall", func(t *testing.T) { checkFirewallPath(t, f) })
		})
	}
}

// splicedCount sums the spliced connections "forward list --json"
// counts over the instance's forwards.
func splicedCount(t *testing.T, f *forwarded) int64 {
	t.Helper()
	out := mustRun(t, f.o, "forward", "--name", f.name, "list", "--json").stdout
	var fwds []struct {
		ID      string `json:"id"`
		Total   int64  `json:"total"`
		Spliced int64  `json:"spliced"`
	}
	if err := json.Unmarshal([]byte(out), &fwds); err != nil || len(fwds) == 0 {
		t.Fatalf("forward list --json: %v\n%s", err, out)
	}
	var n int64
	for _, fw := range fwds {
		n += fw.Spliced
	}
	return n
}

// forwarded is a running instance whose sandbox serves HTTP (fileHandler)
// on port 8080, forwarded from a host port and a unix socket, and whose
// port 8081 (nothing listens) is forwarded from refusedAddr.
type forwarded struct {
	p           *bgProc
	o           runOpts
	name        string
	addr        string // host address of the TCP forward to 8080
	refusedAddr string
	// tcp, tcp6 and unix reach port 8080 through the forwards from
	// 127.0.0.1, [::1] and a unix socket.
	tcp, tcp6, unix *http.Client
}

func startForwarded(t *testing.T, uid int, name string, flags ...string) *forwarded {
	t.Helper()
	dir := sharedDir(t, "tunstack-splice-", 0o777)
	uds := filepath.Join(dir, "fwd.sock")
	env := []string{"TUNSTACK_CONTROL_DIR=" + controlDir(t, uid), helperEnv + "=server"}
	f := &forwarded{o: runOpts{uid: uid, env: env}, name: name,
		addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), refusedAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	addr6 := fmt.Sprintf("[::1]:%d", freePort(t))
	args := append([]string{binPath, "run", "--name", name, "-p", f.addr + ":8080", "-p", addr6 + ":8080",
		"-p", f.refusedAddr + ":8081", "-p", uds + ":8080"}, flags...)
	// ":8080" listens on IPv4 and IPv6.
	f.p = startBG(t, uid, env, append(args, "--", "sh", "-c", "sleep 120 | exec "+helperPath+" :8080")...)
	f.tcp = clientVia("tcp", f.addr)
	f.tcp6 = clientVia("tcp", addr6)
	f.unix = clientVia("unix", uds)
	var body string
	var err error
	for i := 0; i < 100; i++ { // the instance and its server may still be starting
		if body, err = getBody(f.tcp, "http://sandbox/"); err == nil {
			return f
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET through the forward %s: %q, %v", f.addr, body, err)
	return nil
}

// clientVia is an HTTP client whose every request dials addr afresh.
func clientVia(network, addr string) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
}

func getBody(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// checkTransfer downloads the 64 MiB payload and uploads 16 MiB of it,
// comparing checksums.
func checkTransfer(t *testing.T, c *http.Client) {
	t.Helper()
	p, sum := testPayload()
	resp, err := c.Get("http://sandbox/file")
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if got := hex.EncodeToString(h.Sum(nil)); err != nil || got != sum || n != int64(len(p)) {
		t.Errorf("download: %d bytes, sha256 %s, %v; want %d bytes, %s", n, got, err, len(p), sum)
	}
	up := p[:16<<20]
	s := sha256.Sum256(up)
	want := fmt.Sprintf("%x %d\n", s, len(up))
	resp, err = c.Post("http://sandbox/upload", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != want {
		t.Errorf("upload: server got %q (%v), want %q", b, err, want)
	}
}

// checkManyConns makes n connections one after another, each a whole
// HTTP/1.0 request and answer, and checks that tunstack holds as many
// descriptors afterwards as before (but for its pool of ready sockets).
func checkManyConns(t *testing.T, f *forwarded, n int) {
	// One round first: the pool of sockets from the sandbox's init fills.
	oneShortConn(f.addr)
	time.Sleep(200 * time.Millisecond)
	before := countFDs(t, f.p.cmd.Process.Pid)
	failed := 0
	var firstErr error
	for i := 0; i < n; i++ {
		if err := oneShortConn(f.addr); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d connections failed; first: %v", failed, n, firstErr)
	}
	var after int
	for i := 0; i < 50; i++ { // the last relays may still be closing
		if after = countFDs(t, f.p.cmd.Process.Pid); after <= before+innerPoolSlack {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after > before+innerPoolSlack {
		t.Errorf("tunstack holds %d descriptors after %d connections, %d before", after, n, before)
	}
}

// innerPoolSlack is how many more ready sockets tunstack's pool may hold
// at one count than at another (sandbox.innerPoolSize).
const innerPoolSlack = 8

func oneShortConn(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("hello from")) {
		return fmt.Errorf("answer %q", b)
	}
	return nil
}

func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatalf("count tunstack's descriptors: %v", err)
	}
	return len(ents)
}

// checkRefused: the client of a forward to a port nothing listens on sees
// its connection end (a reset or EOF) at once, not a hang.
func checkRefused(t *testing.T, addr string) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return // reset before the handshake was seen through
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read from a forward to a closed port: %v; want a reset or EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %v", d)
	}
}

// checkFirewallPath: while a rule is loaded, forwarded connections take
// the stack path and cross the firewall.
func checkFirewallPath(t *testing.T, f *forwarded) {
	ipt := func(args ...string) string {
		return mustRun(t, f.o, append([]string{"iptables", "--name", f.name}, args...)...).stdout
	}
	// The stack dials the sandbox from the gateway, its own address:
	// OUTPUT sees those connections.
	ipt("-A", "OUTPUT", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT")
	body, err := getBody(f.tcp, "http://sandbox/")
	if err != nil || !strings.Contains(body, " to 10.0.2.2:") {
		t.Errorf("with a rule loaded the server saw %q (%v); want the gateway (the stack path)", body, err)
	}
	if pk := firstRulePackets(t, ipt("-L", "OUTPUT", "-v", "-n", "-x")); pk == 0 {
		t.Errorf("the ACCEPT rule counted no packet of the forwarded connection")
	}
	ipt("-I", "OUTPUT", "1", "-p", "tcp", "--dport", "8080", "-j", "DROP")
	c := *f.tcp
	c.Timeout = 2 * time.Second
	if body, err := getBody(&c, "http://sandbox/"); err == nil {
		t.Errorf("a DROP rule did not block the forward: %q", body)
	}
	ipt("-F", "OUTPUT")
	if body, err := getBody(f.tcp, "http://sandbox/"); err != nil || !strings.Contains(body, " to 127.0.0.1:") {
		t.Errorf("with the rules flushed the server saw %q (%v); want 127.0.0.1 (spliced again)", body, err)
	}
}

// firstRulePackets reads the packet counter of the first rule in an
// "iptables -L CHAIN -v -n -x" listing.
func firstRulePackets(t *testing.T, listing string) int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(listing), "\n")
	if len(lines) < 3 {
		t.Fatalf("no rule in the listing:\n%s", listing)
	}
	n, err := strconv.Atoi(strings.Fields(lines[2])[0])
	if err != nil {
		t.Fatalf("counter of %q: %v", lines[2], err)
	}
	return n
}

// TestCommandHoldsNoInitChannel: the sandbox's init keeps its channels to
// tunstack (socket holders, inner sockets) to itself: the command holds
// no socket at start.
func TestCommandHoldsNoInitChannel(t *testing.T) {
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			r := mustRun(t, runOpts{uid: u.uid}, "run", "--", "sh", "-c", "for f in /proc/self/fd/*; do readlink $f; done; true")
			if strings.Contains(r.stdout, "socket:") {
				t.Errorf("the command holds a socket at start:\n%s", r.stdout)
			}
		})
	}
}
