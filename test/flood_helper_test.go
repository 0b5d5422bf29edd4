package test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// floodLimit bounds every flood in time, whatever its count.
const floodLimit = 20 * time.Second

// floodHelper runs inside a sandbox: args are KIND COUNT TARGET URL SUM.
// It serves fileHandler on port 8080, prints "ready", waits for a line on stdin, starts the flood, checks a
// download of URL (sha256 SUM) while it runs and again after it, prints one
// "flood ..." line, "during ok|..." and "after ok|..." lines and "done",
// then waits for stdin to close so the test can watch tunstack settle.
func floodHelper(args []string) int {
	if len(args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: flood KIND COUNT TARGET URL SUM")
		return 2
	}
	kind, target, url, sum := args[1], args[3], args[4], args[5]
	n, err := strconv.Atoi(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "COUNT:", err)
		return 2
	}
	// A server for port forwards to reach (TestLowFDLimit).
	if ln, err := net.Listen("tcp", ":8080"); err == nil {
		go http.Serve(ln, fileHandler())
		defer ln.Close()
	}
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), floodLimit)
	defer cancel()
	during := make(chan string, 1)
	// A TCP flood fills the flow cap, where new connections are refused
	// by design: there the download is connected before the flood and
	// read slowly while it runs.
	if kind == "tcp" {
		c := http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err != nil {
			during <- err.Error()
		} else {
			go func() { during <- checkBody(resp, sum, 2*time.Millisecond) }()
		}
	} else {
		go func() {
			time.Sleep(300 * time.Millisecond)
			during <- download(url, sum)
		}()
	}
	res, release := flood(ctx, kind, n, target)
	fmt.Println("flood " + res)
	fmt.Println("during " + <-during)
	release()
	fmt.Println("after " + downloadAfter(url, sum))
	fmt.Println("done")
	io.Copy(io.Discard, in)
	return 0
}

// downloadAfter is download once the flood is released. Releasing only
// starts the end of the held flows: tunstack frees a flow's slot when its
// relay has ended on both sides, so a connection right after may still
// find the cap full and be refused. It retries refused dials for 10 s;
// a stack that never recovers still fails.
func downloadAfter(url, sum string) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := download(url, sum)
		if res == "ok" || !strings.Contains(res, "dial tcp") || time.Now().After(deadline) {
			return res
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// download fetches url and reports "ok" or what went wrong.
func download(url, sum string) string {
	c := http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	return checkBody(resp, sum, 0)
}

// checkBody reads resp's body, pausing after each MiB, and compares its
// sha256 with sum.
func checkBody(resp *http.Response, sum string, pause time.Duration) string {
	defer resp.Body.Close()
	h := sha256.New()
	for {
		_, err := io.CopyN(h, resp.Body, 1<<20)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err.Error()
		}
		time.Sleep(pause)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return "sha256 " + got + " != " + sum
	}
	return "ok"
}

// flood runs one kind of flood and returns its summary and a function
// that releases what it holds.
func flood(ctx context.Context, kind string, n int, target string) (string, func()) {
	switch kind {
	case "udp":
		return floodUDP(ctx, n, target), func() {}
	case "ping":
		return floodPing(ctx, n, target), func() {}
	case "dnstcp":
		return floodDNSTCP(ctx, n, target), func() {}
	case "tcp":
		return floodTCP(ctx, n, target)
	}
	return "unknown kind " + kind, func() {}
}

// floodUDP sends one datagram from each of n fresh sockets: n flows.
func floodUDP(ctx context.Context, n int, target string) string {
	sent := 0
	for ; sent < n && ctx.Err() == nil; sent++ {
		c, err := net.Dial("udp", target)
		if err != nil {
			return fmt.Sprintf("sent=%d err=%v", sent, err)
		}
		c.Write([]byte("flood"))
		c.Close()
	}
	return fmt.Sprintf("sent=%d", sent)
}

// floodPing sends n echo requests with n identifiers from a raw socket:
// n ping sessions.
func floodPing(ctx context.Context, n int, target string) string {
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return "err=" + err.Error()
	}
	defer c.Close()
	var replies atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			replies.Add(1)
		}
	}()
	dst := &net.IPAddr{IP: net.ParseIP(target)}
	sent := 0
	for ; sent < n && ctx.Err() == nil; sent++ {
		m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: sent % 65536, Seq: 1, Data: []byte("flood")}}
		b, _ := m.Marshal(nil)
		if _, err := c.WriteTo(b, dst); err != nil {
			return fmt.Sprintf("sent=%d err=%v", sent, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	return fmt.Sprintf("sent=%d replies=%d", sent, replies.Load())
}

// floodDNSTCP opens n TCP connections to the DNS relay at once, each
// asking one question, and counts how each ended.
func floodDNSTCP(ctx context.Context, n int, target string) string {
	var answered, servfail, closed, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(8 * time.Second))
			co := &dns.Conn{Conn: c}
			q := new(dns.Msg)
			q.SetQuestion(fmt.Sprintf("q%d.flood.test.", i), dns.TypeA)
			if err := co.WriteMsg(q); err != nil {
				closed.Add(1)
				return
			}
			m, err := co.ReadMsg()
			switch {
			case err != nil:
				closed.Add(1)
			case m.Rcode == dns.RcodeServerFailure:
				servfail.Add(1)
			default:
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("answered=%d servfail=%d closed=%d failed=%d", answered.Load(), servfail.Load(), closed.Load(), failed.Load())
}

// floodTCP opens up to n connections (256 dials at a time) and holds the
// ones that succeed until the returned release.
func floodTCP(ctx context.Context, n int, target string) (string, func()) {
	var mu sync.Mutex
	var held []net.Conn
	var unreach, other atomic.Int64
	var firstOther atomic.Value
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err := d.DialContext(ctx, "tcp", target)
			switch {
			case err == nil:
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			case errors.Is(err, syscall.EHOSTUNREACH):
				unreach.Add(1)
			default:
				other.Add(1)
				firstOther.CompareAndSwap(nil, err.Error())
			}
		}()
	}
	wg.Wait()
	res := fmt.Sprintf("held=%d unreachable=%d other=%d (first: %v)", len(held), unreach.Load(), other.Load(), firstOther.Load())
	return res, func() {
		for _, c := range held {
			c.Close()
		}
	}
}

// freeTCPPort returns a loopback TCP port nothing listens on.
func freeTCPPort(t interface{ Fatal(...any) }) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func netListenPacket(addr string) (net.PacketConn, error) { return net.ListenPacket("udp", addr) }
