package relay

import (
	"io"
	"sync"
)

// Group is the set of a service's live connections and goroutines: Close
// closes every tracked connection and waits for every goroutine started
// with Go. The zero value is ready to use. After Close, Track and Go
// refuse, so nothing outlives the service.
type Group struct {
	wg sync.WaitGroup

	mu sync.Mutex // guards closed, conns; held across wg.Add so Close's Wait never races an Add
	// closed is set by Close; no connection or goroutine is admitted after.
	closed bool
	// conns are the tracked connections, closed by Close.
	conns map[io.Closer]struct{}
}

// Track registers c so Close closes it. It reports false once the group is
// closing; the caller then closes c itself.
func (g *Group) Track(c io.Closer) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.conns == nil {
		g.conns = make(map[io.Closer]struct{})
	}
	g.conns[c] = struct{}{}
	return true
}

// Untrack forgets c (it has been closed by its owner).
func (g *Group) Untrack(c io.Closer) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// Len returns the number of tracked connections.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Go runs f in a goroutine Close waits for. It reports false, without
// running f, once the group is closing.
func (g *Group) Go(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// Run runs f in the calling goroutine, counted as Go counts the
// goroutines it starts: Close waits for it. It reports false, without
// running f, once the group is closing. A goroutine that would only start
// one with Go and end (a handshake's, handing over to the relay) saves a
// goroutine, and the growth of a fresh one's stack, per connection.
func (g *Group) Run(f func()) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.wg.Add(1)
	g.mu.Unlock()
	defer g.wg.Done()
	f()
	return true
}

// Closed reports whether Close has been called.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Close refuses new connections and goroutines, closes the tracked
// connections and waits for the goroutines. It is safe to call more than
// once.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	conns := make([]io.Closer, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	// Closed outside the lock: a Close may block on the connection, and
	// the goroutines it wakes call Untrack.
	for _, c := range conns {
		_ = c.Close()
	}
	g.wg.Wait()
}

// pair is a relayed connection pair as Group tracks it: closing it from
// outside resets both sides.
type pair struct{ a, b Conn }

func (p *pair) Close() error {
	Reset(p.a)
	Reset(p.b)
	return nil
}

// Pipe runs Pipe(a, b) in the calling goroutine with the pair tracked, so
// that Close resets both sides. Call it from a goroutine the group waits
// for (one started with Go). If the group is closing, both are reset at
// once.
func (g *Group) Pipe(a, b Conn) {
	p := &pair{a, b}
	if !g.Track(p) {
		_ = p.Close()
		return
	}
	defer g.Untrack(p)
	Pipe(a, b)
}
