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
	a, b := newPipe(mtu, false)
	return a, b
}

// OffloadPipe is Pipe with offload: its ends are OffloadDevices whose
// packets carry virtio-net headers, so two stacks joined by it exchange TCP
// super-packets of up to 64 KiB whole, however small the MTU, as the
// kernel's loopback does with TSO.
func OffloadPipe(mtu int) (OffloadDevice, OffloadDevice) {
	return newPipe(mtu, true)
}

func newPipe(mtu int, offload bool) (*pipeDev, *pipeDev) {
	if mtu <= 0 {
		mtu = 1500
	}
	capacity := mtu
	if offload {
		capacity = VirtioNetHdrLen + gsoMaxSize
	}
	ab := make(chan *[]byte, pipeQueue)
	ba := make(chan *[]byte, pipeQueue)
	shared := &pipeShared{done: make(chan struct{})}
	shared.bufs.New = func() any { b := make([]byte, 0, capacity); return &b }
	return &pipeDev{mtu: mtu, offload: offload, in: ba, out: ab, sh: shared},
		&pipeDev{mtu: mtu, offload: offload, in: ab, out: ba, sh: shared}
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
	// offload: each packet travels with the virtio-net header just
	// before offset, and may be a super-packet larger than mtu.
	offload bool
	in      <-chan *[]byte
	out     chan<- *[]byte
	sh      *pipeShared
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
	hdr := 0
	if p.offload {
		hdr = VirtioNetHdrLen
	}
	for {
		size := len(*pkt) - hdr
		if size > len(bufs[n])-offset {
			p.sh.bufs.Put(pkt)
			return n, fmt.Errorf("netdev: pipe read of %d bytes into %d: %w", size, len(bufs[n])-offset, ErrTooLarge)
		}
		copy(bufs[n][offset-hdr:], *pkt)
		sizes[n] = size
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
		limit := p.mtu
		if p.offload {
			// The header travels with the packet; a super-packet may
			// exceed the MTU.
			b, limit = b[offset-VirtioNetHdrLen:], VirtioNetHdrLen+gsoMaxSize
		} else {
			b = b[offset:]
		}
		if len(b) > limit {
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
func (p *pipeDev) Offload() bool  { return p.offload }
func (p *pipeDev) BatchSize() int { return pipeBatch }

func (p *pipeDev) Close() error {
	p.sh.once.Do(func() { close(p.sh.done) })
	return nil
}
