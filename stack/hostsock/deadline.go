package hostsock

import (
	"sync"
	"time"
)

// deadline is one direction's deadline: a channel closed when it passes.
// The zero value has none.
type deadline struct {
	mu sync.Mutex // guards timer, passed
	// timer closes passed when the deadline comes; nil without one.
	timer *time.Timer
	// passed is closed once the deadline has passed. It stays nil until
	// a deadline is first set (a nil channel never fires), and is
	// replaced only once closed, so a waiter holding it sees a later
	// deadline too.
	passed chan struct{}
}

// set moves the deadline to t; the zero time removes it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.passed // the timer fired: wait for it to close passed
	}
	d.timer = nil
	if d.passed == nil || isClosed(d.passed) {
		d.passed = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	if wait := time.Until(t); wait > 0 {
		ch := d.passed
		d.timer = time.AfterFunc(wait, func() { close(ch) })
		return
	}
	close(d.passed)
}

// channel returns the channel closed when the deadline passes (nil
// without one).
func (d *deadline) channel() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passed
}

// expired reports whether the deadline has passed.
func (d *deadline) expired() bool {
	ch := d.channel()
	return ch != nil && isClosed(ch)
}

// stop releases the timer.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
