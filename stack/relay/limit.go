package relay

import "sync/atomic"

// Limit caps how many of one kind of flow (TCP connections, UDP flows,
// DNS queries, host file descriptors, ...) may be open at once, and counts
// the ones it turned away. A nil *Limit admits everything and counts
// nothing. It is safe for concurrent use.
type Limit struct {
	name string
	max  int64
	// inUse counts admitted flows not yet released.
	inUse atomic.Int64
	// dropped counts refused Acquires.
	dropped atomic.Uint64
}

// NewLimit returns a limit of max concurrent flows named name (as the
// stats show it); max <= 0 means no limit.
func NewLimit(name string, max int) *Limit {
	return &Limit{name: name, max: int64(max)}
}

// Acquire admits one flow, or counts a drop and reports false when max
// flows are already in use.
func (l *Limit) Acquire() bool {
	if l == nil {
		return true
	}
	if n := l.inUse.Add(1); l.max > 0 && n > l.max {
		l.inUse.Add(-1)
		l.dropped.Add(1)
		return false
	}
	return true
}

// Release ends a flow Acquire admitted.
func (l *Limit) Release() {
	if l != nil {
		l.inUse.Add(-1)
	}
}

// Drop counts a flow turned away for this limit's resource by other means
// (a host dial that failed with EMFILE, say).
func (l *Limit) Drop() {
	if l != nil {
		l.dropped.Add(1)
	}
}

// LimitStat is a limit's state at one moment.
type LimitStat struct {
	// Name says what is limited ("tcp-flows", ...).
	Name string
	// Max is the cap (0: none).
	Max int64
	// InUse is how many are open now.
	InUse int64
	// Dropped counts what was turned away at the cap since the start.
	Dropped uint64
}

// Stat returns the limit's state.
func (l *Limit) Stat() LimitStat {
	if l == nil {
		return LimitStat{}
	}
	return LimitStat{Name: l.name, Max: l.max, InUse: l.inUse.Load(), Dropped: l.dropped.Load()}
}
