package netdev

import (
	"fmt"
	"net"
	"sync"
)

// pipeQueue is how many packets a Pipe direction holds before Write blocks.
const pipeQueue = 1024

// pipeBatch is a Pipe device's BatchSize.
const pipeBatch = 64

// Pipe returns two Devices joined in memory: what one writes the other
// reads, in order and without loss. A Write blocks while the peer has
// pipeQueue packets unread. Closing either end closes both.
func Pipe(mtu int) (Device, Device) {
	if mtu <= 0 {
		mtu = 1500
	}
	ab := make(chan *[]byte, pipeQueue)
	ba := make(chan *[]byte, pipeQueue)
	shared := &pipeShared{done: make(chan struct{})}
	shared.bufs.New = func() any { b := make([]byte, 0, mtu); return &b }
	return &pipeDev{mtu: mtu, in: ba, out: ab, sh: shared},
		&pipeDev{mtu: mtu, in: ab, out: ba, sh: shared}
}

// pipeShared is the state both ends of a Pipe see.
type pipeShared struct {
	once sync.Once
	done chan struct{} // closed by Close of either end
	// bufs recycles packet copies (*[]byte of capacity mtu): a Write
	// takes one, the Read that copies it out puts it back, so a busy
	// pipe does not allocate (and clear) a buffer per packet.
	bufs sync.Pool
}

type pipeDev struct {
	mtu int
	in  <-chan *[]byte
	out chan<- *[]byte
	sh  *pipeShared
}

func (p *pipeDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	var pkt *[]byte
	select {
	case pkt = <-p.in:
	case <-p.sh.done:
		return 0, fmt.Errorf("netdev: pipe read: %w", net.ErrClosed)
	}
	n := 0
	for {
		size := len(*pkt)
		if size > len(bufs[n])-offset {
			p.sh.bufs.Put(pkt)
			return n, fmt.Errorf("netdev: pipe read of %d bytes into %d: %w", size, len(bufs[n])-offset, ErrTooLarge)
		}
		sizes[n] = copy(bufs[n][offset:], *pkt)
		p.sh.bufs.Put(pkt)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case pkt = <-p.in:
		default:
			return n, nil
		}
	}
}

func (p *pipeDev) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		b = b[offset:]
		if len(b) > p.mtu {
			return i, fmt.Errorf("netdev: pipe write of %d bytes, MTU %d: %w", len(b), p.mtu, ErrTooLarge)
		}
		pkt := p.sh.bufs.Get().(*[]byte)
		*pkt = append((*pkt)[:0], b...)
		select {
		case p.out <- pkt:
		case <-p.sh.done:
			return i, fmt.Errorf("netdev: pipe write: %w", net.ErrClosed)
		}
	}
	return len(bufs), nil
}

func (p *pipeDev) MTU() int       { return p.mtu }
func (p *pipeDev) BatchSize() int { return pipeBatch }

func (p *pipeDev) Close() error {
	p.sh.once.Do(func() { close(p.sh.done) })
	return nil
}
