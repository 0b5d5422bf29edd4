package stack_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/netip"
	"runtime"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

// TestWriteQueue: a NIC whose writes go through the write queue (what
// instance sets for TUN) carries a TCP echo intact, including with a queue
// so short that it drops (TCP retransmits), and its writer goroutine ends
// with the stack (CheckLeaks).
func TestWriteQueue(t *testing.T) {
	for _, tt := range []struct {
		name  string
		queue int
	}{{"off", 0}, {"short", 4}, {"usual", 1000}} {
		t.Run(tt.name, func(t *testing.T) {
			stacktest.CheckLeaks(t)
			la, lb := pipe.New("", "", 65520)
			a := queueHost(t, stack.NICConfig{Name: "a", Endpoint: la, WriteQueue: tt.queue,
				Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}})
			b := queueHost(t, stack.NICConfig{Name: "b", Endpoint: lb, WriteQueue: tt.queue,
				Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}})
			buf := make([]byte, 1<<20)
			queued := bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("qdisc/fifo"))
			if queued != (tt.queue > 0) {
				t.Fatalf("WriteQueue %d: writer goroutine running = %v", tt.queue, queued)
			}
			ln, err := b.Listen("tcp", ":80")
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
			c, err := a.Dial("tcp", "198.18.0.2:80")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			data := make([]byte, 1<<20)
			rand.Read(data)
			go func() {
				c.Write(data)
				c.(interface{ CloseWrite() error }).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echo: %d of %d bytes intact, %v", len(got), len(data), err)
			}
		})
	}
}

func queueHost(t *testing.T, cfg stack.NICConfig) *stack.Stack {
	t.Helper()
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.AddNIC(cfg); err != nil {
		t.Fatal(err)
	}
	return s
}
