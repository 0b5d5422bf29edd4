package sandbox

import (
	"sync"

	"golang.org/x/sys/unix"
)

// innerPoolSize is how many ready sockets the pool keeps per family: a
// burst of that many connections waits for no round trip to init.
const innerPoolSize = 8

// innerPool keeps ready sockets of each family, refilled in the background
// from fetch (init, through fetchInner), so that a forwarded connection
// does not wait for a round trip to init. get takes one at once when one
// is ready and fetches directly otherwise. Descriptors are raw ints: the
// pool owns those it holds, get's caller those it returns.
type innerPool struct {
	fetch func(family, n int) ([]int, error)
	size  int

	mu sync.Mutex // guards ready, closed, refilling
	// ready are the sockets held, per family.
	// +checklocks:mu
	ready map[int][]int
	// closed is set by close: nothing more is held or fetched.
	// +checklocks:mu
	closed bool
	// refilling marks the families a background refill runs for.
	// +checklocks:mu
	refilling map[int]bool

	// fetchMu serialises fetches: they share one channel to init.
	fetchMu sync.Mutex
	wg      sync.WaitGroup
}

// newInnerPool returns a pool of size sockets per family (innerPoolSize
// when size <= 0) filled from fetch, which returns up to n sockets.
func newInnerPool(fetch func(family, n int) ([]int, error), size int) *innerPool {
	if size <= 0 {
		size = innerPoolSize
	}
	return &innerPool{fetch: fetch, size: size, ready: map[int][]int{}, refilling: map[int]bool{}}
}

// get returns a socket of family, from the pool when one is ready, and
// starts a refill when the pool runs low.
func (p *innerPool) get(family int) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return -1, ErrNoInner
	}
	fds := p.ready[family]
	fd := -1
	if n := len(fds); n > 0 {
		fd = fds[n-1]
		p.ready[family] = fds[:n-1]
	}
	p.refillLocked(family)
	p.mu.Unlock()
	if fd >= 0 {
		return fd, nil
	}
	got, err := p.fetchSerial(family, 1)
	if err != nil {
		return -1, err
	}
	for _, extra := range got[1:] {
		unix.Close(extra)
	}
	return got[0], nil
}

// refillLocked starts a background refill of family when it holds less
// than half the pool and none runs yet.
func (p *innerPool) refillLocked(family int) {
	if p.closed || p.refilling[family] || len(p.ready[family]) >= p.size/2 {
		return
	}
	p.refilling[family] = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.refill(family)
	}()
}

// refill fetches family's pool up to size, then marks the refill done.
// A failed fetch ends it: the next get fetches directly and reports.
func (p *innerPool) refill(family int) {
	defer func() {
		p.mu.Lock()
		p.refilling[family] = false
		p.mu.Unlock()
	}()
	for {
		p.mu.Lock()
		want := p.size - len(p.ready[family])
		closed := p.closed
		p.mu.Unlock()
		if closed || want <= 0 {
			return
		}
		got, err := p.fetchSerial(family, min(want, maxInnerBatch))
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			for _, fd := range got {
				unix.Close(fd)
			}
			return
		}
		p.ready[family] = append(p.ready[family], got...)
		p.mu.Unlock()
	}
}

func (p *innerPool) fetchSerial(family, n int) ([]int, error) {
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	return p.fetch(family, n)
}

// held returns how many sockets of family the pool holds.
func (p *innerPool) held(family int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready[family])
}

// close closes every held socket, waits for running refills (the caller
// closes the channel to init first, so a fetch in flight fails at once)
// and makes later gets fail with ErrNoInner.
func (p *innerPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []int
	for fam, fds := range p.ready {
		all = append(all, fds...)
		delete(p.ready, fam)
	}
	p.mu.Unlock()
	for _, fd := range all {
		unix.Close(fd)
	}
	p.wg.Wait()
}
