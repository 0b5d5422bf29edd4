// Package deadline is the read or write deadline of tunstack's own
// connections (stack.Socket, hostsock.Conn): a resettable timer whose
// expiry closes a channel, so that a blocked call can select on it.
package deadline

import (
	"sync"
	"time"
)

// Deadline is one direction's deadline. The zero value has none; it must
// not be copied after first use.
type Deadline struct {
	mu sync.Mutex // guards timer, ch, fired, gen
	// timer closes ch when the deadline comes; nil without one.
	// +checklocks:mu
	timer *time.Timer
	// ch is closed once the deadline has passed. It stays nil until a
	// deadline is first set (a nil channel never fires in a select), and
	// is replaced only once closed, so a call blocked on it also sees a
	// later deadline.
	// +checklocks:mu
	ch chan struct{}
	// +checklocks:mu
	fired bool
	// gen is bumped by Set, so that a timer stopped too late cannot
	// close a channel meant for a newer deadline.
	// +checklocks:mu
	gen uint64
}

// Set moves the deadline to t; the zero time removes it, a time in the
// past makes it pass at once.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
	if d.ch == nil || d.fired {
		d.ch = make(chan struct{})
		d.fired = false
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.ch)
		d.fired = true
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !d.fired {
			close(d.ch)
			d.fired = true
		}
	})
}

// Done returns the channel closed when the deadline passes: nil when
// none was ever set.
func (d *Deadline) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// Expired reports whether the deadline has passed.
func (d *Deadline) Expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fired
}

// Stop releases the timer (the connection is closing).
func (d *Deadline) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
}

// stopLocked stops the timer and retires its generation.
//
// +checklocks:d.mu
func (d *Deadline) stopLocked() {
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
