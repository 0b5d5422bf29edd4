package egress

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpRelay gives each sandbox UDP flow (source, destination) its own
// connected host socket, closed after UDPIdleTimeout without traffic.
type udpRelay struct {
	e *Egress
}

// handlePacket is the stack's UDP handler for datagrams no endpoint
// claims: a forwarder per datagram, so that handle has the datagram
// (only a flow's first datagram comes here; the rest reach its
// endpoint).
func (u *udpRelay) handlePacket(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	return udp.NewForwarder(u.e.gs, func(r *udp.ForwarderRequest) bool { return u.handle(r, pkt) }).HandlePacket(id, pkt)
}

// handle runs synchronously on the packet path for datagrams no endpoint
// claims; it must not block. pkt is the datagram.
func (u *udpRelay) handle(r *udp.ForwarderRequest, pkt *gstack.PacketBuffer) bool {
	id := r.ID()
	src, dst := idString(id)
	to, v := u.e.cfg.Translate("udp", dst)
	if v != Dial {
		// Unclaimed, the stack answers ICMP port unreachable.
		return v == Drop
	}
	// Past the flow cap, or without a host descriptor, the datagram is
	// dropped (counted by the limit).
	flows, fds := u.e.cfg.UDPFlows, u.e.cfg.FDs
	if !flows.Acquire() {
		return true
	}
	if !fds.Acquire() {
		flows.Release()
		return true
	}
	release := func() {
		fds.Release()
		flows.Release()
	}
	var wq waiter.Queue
	// CreateEndpoint queues the first datagram in the new endpoint, so
	// nothing is lost while the host socket is dialled.
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		release()
		u.e.log.Debug("egress: udp endpoint", "src", src, "dst", dst, "err", err)
		return true
	}
	// The first datagram, kept to quote in the port unreachable the
	// sandbox gets when the host says the port is closed.
	first := pkt.Clone()
	f := &udpFlow{e: u.e, ep: ep, wq: &wq, guest: gonet.NewUDPConn(&wq, ep), closed: make(chan struct{}), first: first}
	if !u.e.flows.Track(f) || !u.e.flows.Go(func() {
		defer release()
		defer first.DecRef()
		f.run(networkOf("udp", to.Addr()), to.String())
	}) {
		f.Close()
		u.e.flows.Untrack(f)
		release()
		first.DecRef()
	}
	return true
}

type udpFlow struct {
	e     *Egress
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	guest *gonet.UDPConn
	host  atomic.Pointer[net.Conn]
	last  atomic.Int64 // unix nanoseconds of the last datagram either way
	once  sync.Once
	// closed is closed by Close, waking a pump that waits for data.
	closed chan struct{}
	// first is the flow's first datagram from the sandbox, owned by run;
	// refusing serializes the two pumps' use of it.
	first    *gstack.PacketBuffer
	refusing sync.Mutex
}

// Close ends the flow: both sockets are closed, once.
func (f *udpFlow) Close() error {
	f.once.Do(func() {
		close(f.closed)
		f.guest.Close()
		if h := f.host.Load(); h != nil {
			(*h).Close()
		}
	})
	return nil
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

func (f *udpFlow) run(network, addr string) {
	defer f.e.flows.Untrack(f)
	defer f.Close()
	h, err := f.e.cfg.Dialer.DialContext(f.e.ctx, network, addr)
	if err != nil {
		if outOfFDs(err) {
			f.e.cfg.FDs.Drop()
		}
		f.e.log.Debug("egress: udp dial failed", "host", addr, "err", err)
		return
	}
	f.host.Store(&h)
	if f.e.ctx.Err() != nil {
		return
	}
	f.touch()
	idle := f.e.cfg.UDPIdleTimeout
	var watchdog func()
	var timer *time.Timer
	watchdog = func() {
		if since := time.Since(time.Unix(0, f.last.Load())); since < idle {
			timer.Reset(idle - since)
			return
		}
		f.Close()
	}
	timer = time.AfterFunc(idle, watchdog)
	defer timer.Stop()

	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		defer f.Close()
		f.pump(h, f.guest, f.guestReadable)
	}()
	f.pump(f.guest, h, hostReadable(h))
	f.Close()
	done.Wait()
}

// datagramPool holds the buffers pumps read into. A pump takes one only
// once its source has a datagram waiting, so the many idle flows of a busy
// sandbox hold none (two 64 KiB buffers per flow made 1000 flows cost
// 128 MiB).
var datagramPool = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

// guestReadable waits until the sandbox side has a datagram (or an error)
// to read, or the flow is closed.
func (f *udpFlow) guestReadable() error {
	const events = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr
	we, ch := waiter.NewChannelEntry(events)
	f.wq.EventRegister(&we)
	defer f.wq.EventUnregister(&we)
	for f.ep.Readiness(events) == 0 {
		select {
		case <-ch:
		case <-f.closed:
			return net.ErrClosed
		}
	}
	return nil
}

// hostReadable returns a wait for a datagram on the host socket h: a
// one-byte MSG_PEEK from the poller, which takes no buffer. It returns
// ECONNREFUSED when the peek found the host's port unreachable instead.
// A connection without a descriptor is read at once.
func hostReadable(h net.Conn) func() error {
	sc, ok := h.(syscall.Conn)
	if !ok {
		return func() error { return nil }
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() error { return nil }
	}
	var one [1]byte
	return func() error {
		var peeked error
		err := rc.Read(func(fd uintptr) bool {
			_, _, peeked = unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return peeked != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		// The peek took the socket's pending error (the kernel reports
		// it once): pass a refusal on; others the next read sees again.
		if peeked == unix.ECONNREFUSED {
			return syscall.ECONNREFUSED
		}
		return nil
	}
}

// pump copies datagrams until the flow is closed. A host socket's
// ECONNREFUSED (an ICMP port unreachable for an earlier datagram) does
// not end the flow, as it would not for an unconnected socket in the
// sandbox; the sandbox gets a port unreachable of its own (refused).
func (f *udpFlow) pump(dst, src net.Conn, readable func() error) {
	for {
		if err := readable(); errors.Is(err, syscall.ECONNREFUSED) {
			f.refused()
			continue
		} else if err != nil {
			return
		}
		bp := datagramPool.Get().(*[]byte)
		err := f.forward(dst, src, *bp)
		datagramPool.Put(bp)
		if err != nil {
			return
		}
	}
}

// forward copies one datagram from src to dst with buf; an error ends the
// flow.
func (f *udpFlow) forward(dst, src net.Conn, buf []byte) error {
	n, err := src.Read(buf)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			f.refused()
			return nil
		}
		return err
	}
	f.touch()
	if _, err := dst.Write(buf[:n]); err != nil {
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		f.refused()
	}
	return nil
}

// refused answers the host's port unreachable (a host socket's
// ECONNREFUSED) with one to the sandbox, as the closed port would have
// answered it directly. It quotes the flow's first datagram: a socket
// matches an ICMP error by the addresses and ports quoted, which every
// datagram of the flow shares.
func (f *udpFlow) refused() {
	if f.first != nil {
		f.refusing.Lock()
		f.e.reject(f.first, Refuse, false)
		f.refusing.Unlock()
	}
}
