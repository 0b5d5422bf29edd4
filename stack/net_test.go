package stack_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.VerifyTestMain(m) }

func TestDialListenEcho(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, b, _ := stacktest.NewPair(t, stacktest.Options{})
	ln, err := b.Stack.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := a.Stack.Dial("tcp", "198.18.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if c.RemoteAddr().String() != "198.18.0.2:80" {
		t.Errorf("RemoteAddr = %v", c.RemoteAddr())
	}
}

func TestDialRefused(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, _, _ := stacktest.NewPair(t, stacktest.Options{})
	_, err := a.Stack.Dial("tcp", "198.18.0.2:81")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want ECONNREFUSED", err)
	}
	t.Log(err)
}

func TestReadDeadline(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, b, _ := stacktest.NewPair(t, stacktest.Options{})
	pc, err := b.Stack.ListenPacket("udp", ":53")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := a.Stack.Dial("udp", "198.18.0.2:53")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want timeout", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_ = ctx
}

var netipZero netip.AddrPort

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// Listen and ListenPacket refuse what they cannot serve with a
// *net.OpError and a nil interface (not a nil pointer inside one).
func TestListenErrors(t *testing.T) {
	_, a, _, _ := stacktest.NewPair(t, stacktest.Options{})
	for _, tc := range []struct {
		name, network, address string
		packet                 bool
	}{
		{"stream network to ListenPacket", "tcp", ":80", true},
		{"packet network to Listen", "udp", ":53", false},
		{"unknown network", "sctp", ":80", false},
		{"address not on the stack, TCP", "tcp4", "192.0.2.1:80", false},
		{"address not on the stack, UDP", "udp4", "192.0.2.1:53", true},
		{"bad port", "tcp", ":x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			var isNil bool
			if tc.packet {
				var pc net.PacketConn
				pc, err = a.Stack.ListenPacket(tc.network, tc.address)
				isNil = pc == nil
			} else {
				var l net.Listener
				l, err = a.Stack.Listen(tc.network, tc.address)
				isNil = l == nil
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "listen" || !isNil {
				t.Fatalf("%s %q: err = %v (nil result: %v), want a listen *net.OpError and a nil result", tc.network, tc.address, err, isNil)
			}
		})
	}
}
