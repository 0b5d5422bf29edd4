package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSplices: which connections take the splice path.
func TestSplices(t *testing.T) {
	inner := func(context.Context, netip.AddrPort) (*net.TCPConn, error) { return nil, nil }
	lo := netip.MustParseAddrPort("127.0.0.1:5000")
	lo6 := netip.MustParseAddrPort("[::1]:5000")
	mapped := netip.MustParseAddrPort("[::ffff:127.0.0.1]:5000")
	unixClient := netip.AddrPort{}
	remote := netip.MustParseAddrPort("198.18.0.7:5000")
	cases := []struct {
		name   string
		path   Path
		inner  bool
		fwRule bool
		client netip.AddrPort
		want   bool
	}{
		{"auto loopback", PathAuto, true, false, lo, true},
		{"auto ::1", PathAuto, true, false, lo6, true},
		{"auto v4-mapped loopback", PathAuto, true, false, mapped, true},
		{"auto unix socket", PathAuto, true, false, unixClient, true},
		{"auto remote client keeps its address", PathAuto, true, false, remote, false},
		{"auto with a firewall rule", PathAuto, true, true, lo, false},
		{"auto without init", PathAuto, false, false, lo, false},
		{"stack", PathStack, true, false, lo, false},
		{"splice remote", PathSplice, true, true, remote, true},
		{"splice without init", PathSplice, false, false, lo, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &Manager{cfg: Config{Path: tc.path, FirewallEmpty: func() bool { return !tc.fwRule }}}
			if tc.inner {
				m.cfg.Inner = inner
			}
			if got := m.splices(tc.client); got != tc.want {
				t.Errorf("splices(%v) = %v, want %v", tc.client, got, tc.want)
			}
		})
	}
}

// TestSplicePath: with Inner set, a loopback client reaches what Inner
// connects to (a kernel socket here), counted as spliced, while the
// firewall is empty; with a rule, or when Inner fails for another reason
// than a refusal, the stack path; a refusal resets the client.
func TestSplicePath(t *testing.T) {
	m, sb := pair(t)
	echoServer(t, sb, 8080)
	innerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer innerLn.Close()
	go func() {
		for {
			c, err := innerLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "inner %s", line)
			}()
		}
	}()
	var mode atomic.Value // "ok", "refused", "broken"
	mode.Store("ok")
	var asked atomic.Value
	m.cfg.Inner = func(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
		asked.Store(dst)
		switch mode.Load() {
		case "refused":
			return nil, fmt.Errorf("connect: %w", syscall.ECONNREFUSED)
		case "broken":
			return nil, errors.New("no socket from init")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", innerLn.Addr().String())
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	var rule atomic.Bool
	m.cfg.FirewallEmpty = func() bool { return !rule.Load() }
	hp := freePort(t, "tcp")
	specs, _ := ParseSpec(fmt.Sprintf("127.0.0.1:%d:8080", hp))
	if _, err := m.Add(specs); err != nil {
		t.Fatal(err)
	}
	ask := func() (string, error) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hp))
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintln(c, "hello")
		return bufio.NewReader(c).ReadString('\n')
	}
	if got, err := ask(); err != nil || got != "inner hello\n" {
		t.Errorf("spliced: got %q, %v; want the inner server's answer", got, err)
	}
	if dst, _ := asked.Load().(netip.AddrPort); dst != netip.AddrPortFrom(sandboxAddr, 8080) {
		t.Errorf("Inner asked for %v, want the sandbox address and port", dst)
	}
	rule.Store(true)
	if got, err := ask(); err != nil || !strings.HasPrefix(got, "10.0.2.2:") {
		t.Errorf("with a firewall rule: got %q, %v; want the stack path (the gateway)", got, err)
	}
	rule.Store(false)
	mode.Store("broken")
	if got, err := ask(); err != nil || !strings.HasPrefix(got, "10.0.2.2:") {
		t.Errorf("with Inner broken: got %q, %v; want the stack path", got, err)
	}
	mode.Store("refused")
	if got, err := ask(); err == nil {
		t.Errorf("refused inside: got %q, want the connection ended", got)
	}
	if l := m.List(); len(l) != 1 || l[0].Spliced != 1 || l[0].Total != 4 {
		t.Errorf("List: %+v; want 4 connections, 1 spliced", l)
	}
}
