package netfilter

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// LOG output limits: lines queue for a writer goroutine so a slow
// stderr never stalls the packet path; past the rate or a full queue
// they are dropped and counted.
const (
	logQueueLen   = 1024
	logRate       = 1000 // lines per second, sustained
	logBurst      = 1000
	logIdleExit   = 500 * time.Millisecond // the writer exits when idle this long
	logRefillUnit = time.Second / logRate
)

type logLine struct {
	lvl   slog.Level
	attrs []slog.Attr
}

// logQueue hands LOG lines to a writer goroutine started on demand.
type logQueue struct {
	log *slog.Logger
	ch  chan logLine

	mu     sync.Mutex // guards tokens, refill
	tokens int
	refill time.Time

	running   atomic.Bool
	written   atomic.Uint64
	dropped   atomic.Uint64 // queue full
	ratelimit atomic.Uint64 // over the rate
}

func newLogQueue(l *slog.Logger) *logQueue {
	return &logQueue{log: l, ch: make(chan logLine, logQueueLen), tokens: logBurst}
}

// allow takes a token of the rate limiter.
func (q *logQueue) allow(now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.refill.IsZero() {
		q.refill = now
	}
	if n := int(now.Sub(q.refill) / logRefillUnit); n > 0 {
		q.tokens = min(logBurst, q.tokens+n)
		q.refill = q.refill.Add(time.Duration(n) * logRefillUnit)
	}
	if q.tokens == 0 {
		return false
	}
	q.tokens--
	return true
}

// push queues a line without blocking.
func (q *logQueue) push(l logLine) {
	if !q.allow(time.Now()) {
		q.ratelimit.Add(1)
		return
	}
	select {
	case q.ch <- l:
	default:
		q.dropped.Add(1)
		return
	}
	if q.running.CompareAndSwap(false, true) {
		go q.run()
	}
}

// run writes queued lines; it exits after logIdleExit without lines, so
// a firewall that stops logging holds no goroutine.
func (q *logQueue) run() {
	t := time.NewTimer(logIdleExit)
	defer t.Stop()
	ctx := context.Background()
	for {
		select {
		case l := <-q.ch:
			q.log.LogAttrs(ctx, l.lvl, "netfilter LOG", l.attrs...)
			q.written.Add(1)
			if !t.Stop() {
				<-t.C
			}
			t.Reset(logIdleExit)
		case <-t.C:
			q.running.Store(false)
			// A line pushed after the timer fired but before the store
			// saw running still set: take over again.
			if len(q.ch) == 0 || !q.running.CompareAndSwap(false, true) {
				return
			}
			t.Reset(logIdleExit)
		}
	}
}

// LogStats counts LOG lines.
type LogStats struct {
	// Written lines reached the logger; Dropped found the queue full
	// (the logger was slow); RateLimited came over the rate.
	Written     uint64 `json:"written"`
	Dropped     uint64 `json:"dropped"`
	RateLimited uint64 `json:"rate_limited"`
}

func (q *logQueue) stats() LogStats {
	return LogStats{Written: q.written.Load(), Dropped: q.dropped.Load(), RateLimited: q.ratelimit.Load()}
}
