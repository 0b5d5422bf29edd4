package egress_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tunstack/tunstack/stack/gateway"
)

// BenchmarkConnectRequestCloseLatency is BenchmarkConnectRequestClose with
// the latency distribution of single flows: it reports p50, p99 and max ns
// per flow, for GOMAXPROCS 1 and 2 set after the stacks exist (as the
// procs governor does, so gVisor's processor pool is sized for all CPUs).
// A p99 regression on one P (issue 12) shows here without root.
//
// link=pipe is gVisor's in-memory pipe; link=syscall makes every write of
// the gateway's side end in a 50 µs blocking syscall, as a TUN writev
// does (the kernel runs the sandbox's receive path inside it): a writer
// holding an endpoint's lock loses its P to sysmon there, which the pipe
// never shows.
func BenchmarkConnectRequestCloseLatency(b *testing.B) {
	for _, link := range []string{"pipe", "syscall"} {
		for _, p := range []int{1, 2} {
			b.Run("link="+link+"/procs="+strconv.Itoa(p), func(b *testing.B) { crrLatency(b, link, p) })
		}
	}
}

// syscallWriter is a link endpoint whose writes end in a blocking syscall.
type syscallWriter struct{ gstack.LinkEndpoint }

func (w syscallWriter) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	n, err := w.LinkEndpoint.WritePackets(pkts)
	unix.Nanosleep(&unix.Timespec{Nsec: 50_000}, nil)
	return n, err
}

func crrLatency(b *testing.B, link string, procs int) {
	a, g := pipe.New("", "", 65520)
	var gw gstack.LinkEndpoint = g
	if link == "syscall" {
		gw = syscallWriter{g}
	}
	sb, _ := sandboxOn(b, gateway.Config{Dialer: loopbackDialer(b)}, a, gw)
	port := hostListener(b, "tcp", func(c net.Conn) {
		go func() {
			defer c.Close()
			var buf [1]byte
			if _, err := io.ReadFull(c, buf[:]); err == nil {
				c.Write(buf[:])
			}
		}()
	})
	prev := runtime.GOMAXPROCS(procs)
	b.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	addr := netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(port)).String()
	ctx := context.Background()
	var buf [1]byte
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		crrOnce(ctx, b, sb, addr, buf[:])
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) }
	b.ReportMetric(q(0.5), "p50-ns")
	b.ReportMetric(q(0.99), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1]), "max-ns")
}
