package netfilter

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// blockingHandler is a logger whose output is stuck until release closes.
type blockingHandler struct {
	release chan struct{}
	lines   chan struct{}
}

func (h *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingHandler) Handle(context.Context, slog.Record) error {
	<-h.release
	h.lines <- struct{}{}
	return nil
}
func (h *blockingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *blockingHandler) WithGroup(string) slog.Handler      { return h }

// TestLogQueueNeverBlocks: with the logger stuck, 5000 LOG lines are
// pushed at once without waiting; those past the queue or the rate are
// counted, the queued ones are written once the logger moves again, and
// the writer goroutine then exits.
func TestLogQueueNeverBlocks(t *testing.T) {
	h := &blockingHandler{release: make(chan struct{}), lines: make(chan struct{}, 5000)}
	q := newLogQueue(slog.New(h))
	start := time.Now()
	for i := 0; i < 5000; i++ {
		q.push(logLine{lvl: slog.LevelWarn})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("5000 pushes to a stuck logger took %v", d)
	}
	st := q.stats()
	if st.Written != 0 || st.Dropped+st.RateLimited < 5000-logQueueLen-1 {
		t.Fatalf("stuck logger: %+v", st)
	}
	// The bucket refills at logRate while the loop runs.
	if lim := st.RateLimited; lim > 5000-logBurst || lim < 5000-logBurst-uint64(time.Since(start)/logRefillUnit)-1 {
		t.Fatalf("rate limit: %d limited, want about %d", lim, 5000-logBurst)
	}
	close(h.release)
	want := 5000 - st.Dropped - st.RateLimited
	for i := uint64(0); i < want; i++ {
		select {
		case <-h.lines:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d queued lines written", i, want)
		}
	}
	deadline := time.Now().Add(logIdleExit + 3*time.Second)
	for q.running.Load() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if q.running.Load() {
		t.Fatal("writer goroutine still running after idle")
	}
	if got := q.stats().Written; got != want {
		t.Fatalf("written %d, want %d", got, want)
	}
}
