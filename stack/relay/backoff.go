package relay

import (
	"context"
	"errors"
	"net"
	"time"
)

// Accept back-off bounds: the first retry comes quickly (a burst of closes
// frees descriptors at once), later ones at most once a second.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// AcceptBackoff paces an accept loop through failures that pass, such as
// running out of file descriptors (EMFILE, ENFILE): the loop waits, doubling
// the wait from 5 ms up to 1 s, and accepts again, as net/http's server
// does. The zero value is ready to use.
type AcceptBackoff struct {
	delay time.Duration
}

// Wait decides what an accept loop does after err. It reports false when
// the listener is closed or ctx has ended (the loop should return);
// otherwise it sleeps for the next delay (or until ctx ends) and reports
// true, so the loop never stops by itself while it is wanted.
func (b *AcceptBackoff) Wait(ctx context.Context, err error) bool {
	if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
		return false
	}
	if b.delay == 0 {
		b.delay = minAcceptDelay
	} else {
		b.delay = min(2*b.delay, maxAcceptDelay)
	}
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Failing reports whether the loop is backing off (an error since the last
// Reset).
func (b *AcceptBackoff) Failing() bool { return b.delay != 0 }

// Delay returns the last wait.
func (b *AcceptBackoff) Delay() time.Duration { return b.delay }

// Reset starts over after a successful accept.
func (b *AcceptBackoff) Reset() { b.delay = 0 }
