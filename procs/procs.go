// Package procs adapts GOMAXPROCS to what a stack process carries: one OS
// thread running Go code while it moves little data (small flows,
// request/response), all of them while it moves bulk data.
//
// Why: a small flow through the stack (connect, a request and its answer,
// close) is a chain of goroutine hand-offs (TUN reader, gVisor's TCP
// processor, the forwarder, the relay, the netpoller). With several Ps
// every hand-off may wake another, parked OS thread (a futex wake and a
// context switch); with one P they all run on the thread that is already
// awake, which measured 1.5x the connection rate on a 2-CPU host. Bulk
// transfers, though, want the second CPU (10-20 % more throughput). The
// Governor samples a byte counter (the TUN device's) and switches between
// the two. CPU use is no guide: request/response traffic keeps one P as
// busy as a bulk transfer does, and is still faster on it.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// Governor switches GOMAXPROCS between 1 and Max by the rate of a byte
// counter. The zero value of each field but Bytes takes the default noted
// on it.
type Governor struct {
	// Bytes returns the bytes moved so far (a monotonic counter: the
	// TUN device's received plus sent bytes).
	Bytes func() uint64
	// Max is GOMAXPROCS under load (default: its value when Run starts).
	Max int
	// Interval is how often the counter is sampled (default 100 ms).
	Interval time.Duration
	// Up is the rate, in bytes per second over one interval, at which one
	// P becomes Max (default 32 MiB/s: bulk, not request/response).
	Up float64
	// Down is the rate under which Max Ps go back to one (default
	// 8 MiB/s), once it has stayed under for Hold intervals in a row
	// (default 1: small flows right after bulk run on one P after a
	// tenth of a second, and a bulk transfer that resumes after a pause
	// costs at most one interval at one P; a switch is one brief
	// stop-the-world, so flapping is cheap. With the earlier default of
	// half a second, bench/run.sh's rr, which starts right after iperf3,
	// ran mostly on two Ps: rr p50 217 against 164 µs).
	Down float64
	// Hold is the number of quiet intervals before going back to one P.
	Hold int
	// Logger receives a debug line per switch; nil discards.
	Logger *slog.Logger

	// set sets GOMAXPROCS; tests replace it.
	set func(int)
}

func (g *Governor) defaults() {
	if g.Max <= 0 {
		g.Max = runtime.GOMAXPROCS(0)
	}
	if g.Interval <= 0 {
		g.Interval = 100 * time.Millisecond
	}
	if g.Up <= 0 {
		g.Up = 32 << 20
	}
	if g.Down <= 0 {
		g.Down = 8 << 20
	}
	if g.Hold <= 0 {
		g.Hold = 1
	}
	if g.Logger == nil {
		g.Logger = slog.New(slog.DiscardHandler)
	}
	if g.set == nil {
		g.set = func(n int) { runtime.GOMAXPROCS(n) }
	}
}

// Run governs GOMAXPROCS until ctx ends, starting at one P, and leaves it
// at Max when it returns. With Max 1, or no Bytes, there is nothing to
// govern and it returns at once.
func (g Governor) Run(ctx context.Context) {
	g.defaults()
	if g.Max <= 1 || g.Bytes == nil {
		return
	}
	defer g.set(g.Max)
	g.set(1)
	cur, quiet := 1, 0
	last, lastBytes := time.Now(), g.Bytes()
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b := g.Bytes()
			rate := float64(b-lastBytes) / now.Sub(last).Seconds()
			last, lastBytes = now, b
			next := g.next(cur, rate, &quiet)
			if next != cur {
				g.Logger.Debug("procs: GOMAXPROCS", "from", cur, "to", next, "bytes_per_s", rate)
				g.set(next)
				cur = next
			}
		}
	}
}

// next decides the P count after an interval that moved rate bytes per
// second at cur.
func (g *Governor) next(cur int, rate float64, quiet *int) int {
	switch {
	case cur == 1 && rate >= g.Up:
		*quiet = 0
		return g.Max
	case cur > 1 && rate < g.Down:
		*quiet++
		if *quiet >= g.Hold {
			*quiet = 0
			return 1
		}
	default:
		*quiet = 0
	}
	return cur
}
