package tun_test

import (
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/netdev"
	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/tun"
)

// inNetns runs f on a goroutine locked to a thread in a new network
// namespace, so the TUN devices and kernel sockets f makes live there and
// vanish with it. It skips (fails under TUNSTACK_REQUIRE_TUN=1) when the
// namespace cannot be made.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	skip := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread is never unlocked: it dies with the goroutine, and
		// its namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip <- "unshare(CLONE_NEWNET): " + err.Error() + " (needs root)"
			return
		}
		f()
	}()
	<-done
	select {
	case why := <-skip:
		if os.Getenv("TUNSTACK_REQUIRE_TUN") == "1" {
			t.Fatalf("TUNSTACK_REQUIRE_TUN=1 but %s", why)
		}
		t.Skip(why)
	default:
	}
}

// serveStack makes a stack with ep as its NIC at 198.18.0.2/24 and an
// echo server on port 7.
func serveStack(t *testing.T, ep stack.NICConfig) *stack.Stack {
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ep.Name = "tun0"
	ep.Addresses = []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}
	if _, err := s.AddNIC(ep); err != nil {
		s.Close()
		t.Fatal(err)
	}
	ln, err := s.Listen("tcp", ":7")
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return s
}

// echo dials the stack from the kernel (this thread's namespace) and
// checks 256 KiB come back intact.
func echo(t *testing.T) {
	c, err := net.Dial("tcp", "198.18.0.2:7")
	if err != nil {
		t.Errorf("kernel dial to the stack: %v", err)
		return
	}
	defer c.Close()
	want := strings.Repeat("tunstack", 32<<10)
	go io.WriteString(c, want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Errorf("echo: %v, %d bytes intact: %v", err, len(got), string(got) == want)
	}
}

// TestOpenEndpoint opens, configures and wraps a TUN in one call, then
// checks the MTU was set and read back and that the kernel reaches the stack.
func TestOpenEndpoint(t *testing.T) {
	inNetns(t, func() {
		ep, err := tun.OpenEndpoint(tun.Config{},
			tun.LinkConfig{Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}, MTU: 9000}, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if mtu, err := tun.MTU(ep.Device().Name); mtu != 9000 || err != nil || ep.MTU() != 9000 {
			t.Errorf("MTU(%s) = %d, %v; endpoint %d; want 9000", ep.Device().Name, mtu, err, ep.MTU())
		}
		s := serveStack(t, stack.NICConfig{Endpoint: ep})
		defer s.Close()
		echo(t)
	})
}

// TestPacketDevice puts a stack behind a TUN through the netdev adapters
// (tun.NewPacketDevice, then netdev.NewEndpoint), with and without
// offload; with offload, super-packets must cross both ways.
func TestPacketDevice(t *testing.T) {
	for _, mode := range []tun.OffloadMode{tun.OffloadOff, tun.OffloadOn} {
		t.Run(mode.String(), func(t *testing.T) {
			inNetns(t, func() {
				dev, err := tun.Open(tun.Config{Offload: mode})
				if err != nil {
					t.Error(err)
					return
				}
				if err := tun.Configure(dev.Name, tun.LinkConfig{Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}, MTU: 1500}); err != nil {
					dev.Close()
					t.Error(err)
					return
				}
				mtu, _ := tun.MTU(dev.Name)
				pd, err := tun.NewPacketDevice(dev.File, mtu)
				if err != nil {
					dev.Close()
					t.Error(err)
					return
				}
				if pd.Offload() != dev.Offload {
					t.Errorf("PacketDevice.Offload() = %v, device opened with offload %v", pd.Offload(), dev.Offload)
				}
				ep := netdev.NewEndpoint(pd, netdev.EndpointOptions{})
				s := serveStack(t, stack.NICConfig{Endpoint: ep})
				defer s.Close()
				echo(t)
				rx, tx := ep.Stats.RxGSO.Load(), ep.Stats.TxGSO.Load()
				if dev.Offload && (rx == 0 || tx == 0) {
					t.Errorf("offload device: %d super-packets in, %d out; want some both ways", rx, tx)
				}
				if !dev.Offload && rx+tx != 0 {
					t.Errorf("plain device: %d super-packets in, %d out; want none", rx, tx)
				}
			})
		})
	}
}
