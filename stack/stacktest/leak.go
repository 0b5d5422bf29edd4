package stacktest

import (
	"bytes"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// NewPair returns a network of two hosts, "a" with 198.18.0.1/24 and "b"
// with 198.18.0.2/24, joined by a link. Cleanup of t closes the network.
func NewPair(t testing.TB, opts Options) (n *Network, a, b *Host, l *Link) {
	t.Helper()
	n = NewNetwork(opts)
	t.Cleanup(func() { n.Close() })
	var err error
	if a, err = n.AddHost("a"); err != nil {
		t.Fatal(err)
	}
	if b, err = n.AddHost("b"); err != nil {
		t.Fatal(err)
	}
	l, err = n.Link(a, netip.MustParsePrefix("198.18.0.1/24"), b, netip.MustParsePrefix("198.18.0.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	return n, a, b, l
}

// CheckLeaks records the goroutines and open file descriptors of the
// process now and, when t's cleanups run (register it before creating
// stacks, so it runs after they are closed), fails t if goroutines started
// since are still running or more descriptors are open, after letting
// them wind down for up to five seconds. It cannot tell a leak from the
// work of a parallel test, so use it in tests that do not call t.Parallel.
func CheckLeaks(t testing.TB) {
	t.Helper()
	before := goroutineIDs()
	fds := openFDs()
	t.Cleanup(func() {
		t.Helper()
		var extra []string
		var nfd int
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			extra = newGoroutines(before)
			nfd = openFDs()
			if (len(extra) == 0 && nfd <= fds) || time.Now().After(deadline) {
				break
			}
		}
		if len(extra) > 0 {
			t.Errorf("stacktest: %d goroutine(s) leaked:\n%s", len(extra), strings.Join(extra, "\n\n"))
		}
		if fds >= 0 && nfd > fds {
			t.Errorf("stacktest: %d file descriptor(s) leaked (%d open before, %d after)", nfd-fds, fds, nfd)
		}
	})
}

// openFDs counts the process's open descriptors (-1 where /proc is
// missing).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func allGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Split(string(bytes.TrimSpace(buf)), "\n\n")
}

func goroutineID(stack string) string {
	// "goroutine 17 [running]:"
	f := strings.Fields(stack)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

func goroutineIDs() map[string]bool {
	ids := make(map[string]bool)
	for _, g := range allGoroutines() {
		ids[goroutineID(g)] = true
	}
	return ids
}

// benign goroutines belong to the runtime or the testing package and come
// and go on their own.
var benign = []string{
	"testing.(*T).Run",
	"testing.(*T).Parallel",
	"testing.tRunner",
	"runtime.goexit",
	"os/signal.signal_recv",
	"runtime.ensureSigM",
	"created by runtime.gc",
	"runtime/trace",
}

func newGoroutines(before map[string]bool) []string {
	var out []string
	for _, g := range allGoroutines() {
		if before[goroutineID(g)] || strings.Contains(g, "stacktest.allGoroutines") {
			continue
		}
		first := strings.SplitN(g, "\n", 3)
		top := ""
		if len(first) > 1 {
			top = first[1]
		}
		skip := false
		for _, b := range benign {
			if strings.HasPrefix(top, b) {
				skip = true
				break
			}
		}
		if !skip {
			out = append(out, g)
		}
	}
	return out
}

// VerifyTestMain runs the tests and then, like goleak.VerifyTestMain,
// fails the run if goroutines started during it are still running five
// seconds after the last test (stacks not closed, bridges not stopped).
// Use it as: func TestMain(m *testing.M) { stacktest.VerifyTestMain(m) }.
func VerifyTestMain(m *testing.M) {
	before := goroutineIDs()
	code := m.Run()
	if code == 0 {
		var extra []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if extra = newGoroutines(before); len(extra) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(extra) > 0 {
			os.Stderr.WriteString("stacktest: goroutines leaked by the tests:\n" + strings.Join(extra, "\n\n") + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
