package netdev_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/netdev"
	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/vnet"
)

// benchEnv is one way of joining a client and a server: dial reaches ln.
// run executes f where dial works (for the kernel in a namespace, on that
// namespace's thread).
type benchEnv struct {
	ln    net.Listener
	dial  func(ctx context.Context, addr string) (net.Conn, error)
	run   func(f func())
	close func()
	// connect, if set, makes and closes one connection for the
	// connections-per-second run instead of dial and Close.
	connect func(addr netip.AddrPort) error
}

func direct(f func()) { f() }

// BenchmarkLibrary compares, in one run, two in-process stacks joined by
// the packet device interface (netdev.Pipe + netdev.NewEndpoint, with and
// without checksums), by stack/vnet (stacktest's link), and kernel TCP
// over loopback at the same MTU: lo in a network namespace the benchmark
// creates with that MTU when it may (root), else the host's loopback at its
// own MTU, labelled "kernel-hostlo". Sub-benchmarks: TCP throughput
// (128 KiB writes on one connection) and connections per second (dial and
// close, the server accepting and closing; for the kernel, blocking
// socket/connect/close calls, see kernelConnect).
//
//	go test -run '^$' -bench BenchmarkLibrary -benchtime 2s ./netdev/
func BenchmarkLibrary(b *testing.B) {
	kernelLabel := "kernel-netns"
	if err := probeNetns(); err != nil {
		if os.Getenv("TUNSTACK_REQUIRE_TUN") == "1" {
			b.Fatalf("TUNSTACK_REQUIRE_TUN=1 but no namespace for the kernel baseline: %v", err)
		}
		kernelLabel = "kernel-hostlo"
	}
	for _, mtu := range []int{1500, 65520} {
		envs := []struct {
			name string
			make func(b *testing.B, mtu int) *benchEnv
		}{
			{"netdev", func(b *testing.B, mtu int) *benchEnv { return pipeEnv(b, mtu, false) }},
			{"netdev-nocsum", func(b *testing.B, mtu int) *benchEnv { return pipeEnv(b, mtu, true) }},
			{"netdev-offload", offloadPipeEnv},
			{"vnet", vnetEnv},
			{kernelLabel, kernelEnv},
		}
		for _, e := range envs {
			for _, kind := range []string{"throughput", "connps"} {
				b.Run(fmt.Sprintf("mtu=%d/%s/%s", mtu, e.name, kind), func(b *testing.B) {
					env := e.make(b, mtu)
					defer env.close()
					if kind == "throughput" {
						benchThroughput(b, env)
					} else {
						benchConnect(b, env)
					}
				})
			}
		}
	}
}

// probeNetns reports whether this process may create network namespaces.
func probeNetns() error {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		errc <- nsWithLo(65536)
	}()
	return <-errc
}

func benchThroughput(b *testing.B, env *benchEnv) {
	done := make(chan int64, 1)
	go func() {
		c, err := env.ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
		c.Close()
		done <- n
	}()
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(len(buf)))
	// Only the dial runs where env.run says (a namespace's locked
	// thread); the writes run on an ordinary goroutine, as they would
	// in a program.
	var c net.Conn
	var err error
	env.run(func() { c, err = env.dial(context.Background(), env.ln.Addr().String()) })
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err = c.Write(buf); err != nil {
			break
		}
	}
	c.Close()
	// The server's draining of what is still in flight counts: the bytes
	// have not arrived until it has read them.
	if err != nil {
		b.Fatal(err)
	}
	if n := <-done; n != int64(b.N)*int64(len(buf)) {
		b.Fatalf("server read %d bytes, want %d", n, b.N*len(buf))
	}
}

func benchConnect(b *testing.B, env *benchEnv) {
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		for {
			c, err := env.ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var err error
	start := time.Now()
	env.run(func() {
		b.ResetTimer()
		start = time.Now()
		for range b.N {
			if env.connect != nil {
				if err = env.connect(netip.MustParseAddrPort(env.ln.Addr().String())); err != nil {
					return
				}
				continue
			}
			var c net.Conn
			if c, err = env.dial(context.Background(), env.ln.Addr().String()); err != nil {
				return
			}
			c.Close()
		}
		b.StopTimer()
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conns/s")
	env.ln.Close()
	<-stop
	if err != nil {
		b.Fatal(err)
	}
}

// twoStacks joins two stacks, a client at 198.18.0.1 and a server at
// 198.18.0.2 listening on port 5001.
func twoStacks(b *testing.B, epA, epB *netdev.Endpoint) *benchEnv {
	mk := func(ep *netdev.Endpoint, addr string) *stack.Stack {
		s, err := stack.New(stack.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.AddNIC(stack.NICConfig{Name: "eth0", Endpoint: ep, Addresses: []netip.Prefix{netip.MustParsePrefix(addr)}}); err != nil {
			b.Fatal(err)
		}
		return s
	}
	client, server := mk(epA, "198.18.0.1/24"), mk(epB, "198.18.0.2/24")
	ln, err := server.Listen("tcp", "198.18.0.2:5001")
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{ln: ln, dial: func(ctx context.Context, a string) (net.Conn, error) { return client.DialContext(ctx, "tcp", a) },
		run: direct, close: func() { ln.Close(); client.Close(); server.Close() }}
}

func pipeEnv(b *testing.B, mtu int, noCsum bool) *benchEnv {
	da, db := netdev.Pipe(mtu)
	o := netdev.EndpointOptions{NoChecksums: noCsum}
	return twoStacks(b, netdev.NewEndpoint(da, o), netdev.NewEndpoint(db, o))
}

// offloadPipeEnv joins the stacks with an OffloadPipe: TCP super-packets
// cross whole, as on the kernel's loopback with TSO.
func offloadPipeEnv(b *testing.B, mtu int) *benchEnv {
	da, db := netdev.OffloadPipe(mtu)
	return twoStacks(b, netdev.NewEndpoint(da, netdev.EndpointOptions{}), netdev.NewEndpoint(db, netdev.EndpointOptions{}))
}

func vnetEnv(b *testing.B, mtu int) *benchEnv {
	n := vnet.NewNetwork(vnet.Options{MTU: mtu})
	client, _ := n.AddHost("client")
	server, _ := n.AddHost("server")
	if _, err := n.Link(client, netip.MustParsePrefix("198.18.0.1/24"), server, netip.MustParsePrefix("198.18.0.2/24")); err != nil {
		b.Fatal(err)
	}
	ln, err := server.Stack.Listen("tcp", "198.18.0.2:5001")
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{ln: ln, dial: func(ctx context.Context, a string) (net.Conn, error) { return client.Stack.DialContext(ctx, "tcp", a) },
		run: direct, close: func() { ln.Close(); n.Close() }}
}

// kernelEnv is kernel TCP on loopback: in a fresh network namespace with
// lo at mtu when unshare works, else on the host's loopback (at its own
// MTU).
func kernelEnv(b *testing.B, mtu int) *benchEnv {
	jobs := make(chan func())
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := nsWithLo(mtu); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range jobs {
			f()
			jobs <- nil
		}
	}()
	var d net.Dialer
	run := func(f func()) { jobs <- f; <-jobs }
	closeJobs := func() { close(jobs) }
	if err := <-ready; err != nil {
		run, closeJobs = direct, func() {}
	}
	var ln net.Listener
	var err error
	run(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{ln: ln, dial: func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) },
		run: run, close: func() { ln.Close(); closeJobs() }, connect: kernelConnect}
}

// kernelConnect opens and closes one connection with blocking system
// calls on the calling thread. A goroutine locked to a namespace's thread
// pays a thread hand-off each time Go's poller parks it, which would
// charge the kernel for Go's scheduler; blocking calls do not, so the
// kernel's connections per second are if anything flattered.
func kernelConnect(ap netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("connect %s: %w", ap, err)
	}
	return nil
}

// nsWithLo moves the calling (locked) thread into a new network namespace
// and brings lo up at mtu.
func nsWithLo(mtu int) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMTU(lo, mtu); err != nil {
		return fmt.Errorf("lo mtu %d: %w", mtu, err)
	}
	return netlink.LinkSetUp(lo)
}
