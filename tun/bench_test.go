package tun_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/tun"
)

// linkedStacks joins two stacks with tun.Endpoints over a SOCK_SEQPACKET
// pair, a stand-in for a TUN that keeps frame boundaries, so the
// endpoint's read and write paths carry real TCP in both directions.
func linkedStacks(b *testing.B, offload bool, mtu uint32) (a, z *stack.Stack) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	for _, fd := range fds {
		unix.SetNonblock(fd, true)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	mk := func(fd int, addr string) *stack.Stack {
		dev := &tun.Device{File: os.NewFile(uintptr(fd), "seqpacket"), Name: "tun0", Offload: offload}
		ep, err := tun.NewEndpoint(dev, mtu, nil)
		if err != nil {
			b.Fatal(err)
		}
		s, err := stack.New(stack.Options{})
		if err != nil {
			b.Fatal(err)
		}
		nic, err := s.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: ep, Addresses: []netip.Prefix{netip.MustParsePrefix(addr)}})
		if err != nil {
			b.Fatal(err)
		}
		s.AddDefaultRoutes(nic)
		b.Cleanup(func() { s.Close() })
		return s
	}
	return mk(fds[0], "198.18.0.1/24"), mk(fds[1], "198.18.0.2/24")
}

// BenchmarkTCPThroughEndpoint streams TCP from one stack to another through
// two endpoints; bytes/s is the payload rate, allocs/op per 1 MiB written.
func BenchmarkTCPThroughEndpoint(b *testing.B) {
	for _, c := range []struct {
		offload bool
		mtu     uint32
	}{{false, 1500}, {false, 65520}, {true, 1500}, {true, 65520}} {
		name := fmt.Sprintf("offload=%v/mtu=%d", c.offload, c.mtu)
		b.Run(name, func(b *testing.B) {
			a, z := linkedStacks(b, c.offload, c.mtu)
			ln, err := z.ListenTCP(netip.MustParseAddrPort("198.18.0.2:9000"))
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			done := make(chan int64, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					done <- -1
					return
				}
				n, _ := io.Copy(io.Discard, conn)
				conn.Close()
				done <- n
			}()
			conn, err := a.DialContext(context.Background(), "tcp", "198.18.0.2:9000")
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := conn.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			conn.Close()
			if n := <-done; n != int64(b.N)*int64(len(buf)) {
				b.Fatalf("received %d bytes, sent %d", n, int64(b.N)*int64(len(buf)))
			}
		})
	}
}
