package procs

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestNext: one P goes to Max at Up; Max goes back to one only after Hold
// quiet intervals in a row, and a busy interval restarts the count.
func TestNext(t *testing.T) {
	g := Governor{Max: 4, Up: 0.7, Down: 0.4, Hold: 3} // rates in any unit
	g.defaults()
	steps := []struct {
		use  float64
		want int
	}{
		{0.1, 1}, {0.69, 1}, {0.7, 4}, // saturating one P: all of them
		{0.5, 4}, {0.3, 4}, {0.3, 4}, // two quiet intervals: not yet
		{0.9, 4},                     // busy again: the count restarts
		{0.3, 4}, {0.3, 4}, {0.3, 1}, // three in a row: one P
		{0.5, 1}, // between Down and Up at one P: stays
	}
	cur, quiet := 1, 0
	for i, s := range steps {
		cur = g.next(cur, s.use, &quiet)
		if cur != s.want {
			t.Fatalf("step %d (use %.2f): %d Ps, want %d", i, s.use, cur, s.want)
		}
	}
}

// TestRun drives Run with a fake byte counter: it starts at one P, goes to
// Max under bulk traffic, and leaves Max set when ctx ends.
func TestRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	var mu sync.Mutex
	var moved uint64
	var sets []int
	g := Governor{
		Max: 2, Interval: 5 * time.Millisecond,
		Bytes: func() uint64 {
			mu.Lock()
			defer mu.Unlock()
			moved += 1 << 20 // 1 MiB per call: far above 32 MiB/s
			return moved
		},
		set: func(n int) { mu.Lock(); sets = append(sets, n); mu.Unlock() },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(sets)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(sets) < 3 || sets[0] != 1 || sets[1] != 2 || sets[len(sets)-1] != 2 {
		t.Fatalf("GOMAXPROCS set to %v, want 1, then 2 under load, and 2 at the end", sets)
	}
}

// TestRunNothingToGovern: with one CPU or no counter Run returns at once
// without touching GOMAXPROCS.
func TestRunNothingToGovern(t *testing.T) {
	for _, g := range []Governor{
		{Max: 1, Bytes: func() uint64 { return 0 }},
		{Max: 2},
	} {
		called := false
		g.set = func(int) { called = true }
		g.Run(context.Background())
		if called {
			t.Fatalf("Run (Max %d, Bytes set %v) set GOMAXPROCS", g.Max, g.Bytes != nil)
		}
	}
}
