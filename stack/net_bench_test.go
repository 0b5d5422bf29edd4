package stack_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

const benchChunk = 1 << 20

// sink accepts one connection and discards everything it reads, then
// reports the count.
func sink(ln net.Listener) <-chan int64 {
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
		c.Close()
		done <- n
	}()
	return done
}

// pump writes total bytes to c in 1 MiB chunks, closes it and waits for
// the sink.
func pump(tb testing.TB, c net.Conn, total int64, done <-chan int64) {
	buf := make([]byte, benchChunk)
	for sent := int64(0); sent < total; sent += benchChunk {
		if _, err := c.Write(buf); err != nil {
			tb.Fatal(err)
		}
	}
	c.Close()
	if n := <-done; n != total {
		tb.Fatalf("sink got %d bytes, want %d", n, total)
	}
}

type transferFunc func(tb testing.TB, total int64)

func kernelTransfer(tb testing.TB, total int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	done := sink(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	pump(tb, c, total, done)
}

func tunstackTransfer(mtu int) transferFunc {
	return func(tb testing.TB, total int64) {
		n := stacktest.NewNetwork(stacktest.Options{MTU: mtu})
		defer n.Close()
		a, _ := n.AddHost("a")
		b, _ := n.AddHost("b")
		if _, err := n.Link(a, netip.MustParsePrefix("198.18.0.1/24"), b, netip.MustParsePrefix("198.18.0.2/24")); err != nil {
			tb.Fatal(err)
		}
		ln, err := b.Stack.Listen("tcp", ":5001")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		done := sink(ln)
		c, err := a.Stack.Dial("tcp", "198.18.0.2:5001")
		if err != nil {
			tb.Fatal(err)
		}
		pump(tb, c, total, done)
	}
}

// BenchmarkTCPThroughput moves b.N MiB over one TCP connection: on the
// kernel's loopback, and between two stacks over an in-memory stacktest
// link at two MTUs.
func BenchmarkTCPThroughput(b *testing.B) {
	for _, bc := range []struct {
		name string
		run  transferFunc
	}{
		{"kernel-loopback", kernelTransfer},
		{"tunstack-mtu1500", tunstackTransfer(1500)},
		{"tunstack-mtu65520", tunstackTransfer(65520)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(benchChunk)
			bc.run(b, int64(b.N)*benchChunk)
		})
	}
}

// BenchmarkTCPThroughputRatio transfers 64 MiB over the kernel loopback and
// then between two stacks, per iteration, and reports the stacks' speed as
// a fraction of the kernel's.
func BenchmarkTCPThroughputRatio(b *testing.B) {
	const total = 64 << 20
	var kern, tun time.Duration
	for range b.N {
		t0 := time.Now()
		kernelTransfer(b, total)
		t1 := time.Now()
		tunstackTransfer(65520)(b, total)
		kern += t1.Sub(t0)
		tun += time.Since(t1)
	}
	b.ReportMetric(float64(total)*float64(b.N)/kern.Seconds()/1e6, "kernel-MB/s")
	b.ReportMetric(float64(total)*float64(b.N)/tun.Seconds()/1e6, "tunstack-MB/s")
	b.ReportMetric(kern.Seconds()/tun.Seconds(), "tunstack/kernel")
}

// BenchmarkFDBridge compares reading a stack connection directly with
// reading it through an exported fd.
func BenchmarkFDBridge(b *testing.B) {
	for _, viaFD := range []bool{false, true} {
		name := "direct"
		if viaFD {
			name = "exported-fd"
		}
		b.Run(name, func(b *testing.B) {
			s, err := stacktest.NewLoopback(stack.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ln, err := s.ListenTCP(netip.MustParseAddrPort("127.0.0.1:0"))
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			done := make(chan int64, 1)
			go func() {
				c, err := ln.AcceptTCP()
				if err != nil {
					done <- -1
					return
				}
				var r io.ReadCloser = c
				if viaFD {
					f, err := c.File()
					if err != nil {
						done <- -1
						return
					}
					r = f
				}
				n, _ := io.CopyBuffer(io.Discard, r, make([]byte, 256<<10))
				r.Close()
				done <- n
			}()
			c, err := s.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(benchChunk)
			pump(b, c, int64(b.N)*benchChunk, done)
		})
	}
}

// BenchmarkConnect measures connection setup and teardown between two
// stacks (dial, accept, close with RST so no TIME-WAIT piles up).
func BenchmarkConnect(b *testing.B) {
	n := stacktest.NewNetwork(stacktest.Options{})
	defer n.Close()
	ha, _ := n.AddHost("a")
	hb, _ := n.AddHost("b")
	n.Link(ha, netip.MustParsePrefix("198.18.0.1/24"), hb, netip.MustParsePrefix("198.18.0.2/24"))
	ln, err := hb.Stack.Listen("tcp", ":80")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx := context.Background()
	raddr := netip.MustParseAddrPort("198.18.0.2:80")
	b.ResetTimer()
	for range b.N {
		c, err := ha.Stack.DialTCP(ctx, netip.AddrPort{}, raddr)
		if err != nil {
			b.Fatal(err)
		}
		c.SetLinger(0)
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}

// BenchmarkIdleConns opens 10,000 connections between two stacks and
// reports heap bytes and goroutines per connection (both ends counted as
// one connection).
func BenchmarkIdleConns(b *testing.B) {
	const conns = 10000
	for range b.N {
		n := stacktest.NewNetwork(stacktest.Options{})
		ha, _ := n.AddHost("a")
		hb, _ := n.AddHost("b")
		n.Link(ha, netip.MustParsePrefix("198.18.0.1/24"), hb, netip.MustParsePrefix("198.18.0.2/24"))
		ln, err := hb.Stack.Listen("tcp", ":80")
		if err != nil {
			b.Fatal(err)
		}
		accepted := make(chan net.Conn, conns)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		clients := make([]net.Conn, 0, conns)
		servers := make([]net.Conn, 0, conns)
		for range conns {
			c, err := ha.Stack.Dial("tcp", "198.18.0.2:80")
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
			servers = append(servers, <-accepted)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/conns, "heapB/conn")
		b.ReportMetric(float64(g1-g0)/conns, "goroutines/conn")
		for i := range clients {
			clients[i].(*stack.TCPConn).SetLinger(0)
			clients[i].Close()
			servers[i].Close()
		}
		ln.Close()
		n.Close()
	}
}
