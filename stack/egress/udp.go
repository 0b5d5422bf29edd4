package egress

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpRelay gives each sandbox UDP flow (source, destination) its own
// connected host socket, closed after UDPIdleTimeout without traffic.
type udpRelay struct {
	e *Egress
}

// handle runs synchronously on the packet path for datagrams no endpoint
// claims; it must not block.
func (u *udpRelay) handle(r *udp.ForwarderRequest) bool {
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
	f := &udpFlow{e: u.e, ep: ep, guest: gonet.NewUDPConn(&wq, ep)}
	if !u.e.flows.Track(f) || !u.e.flows.Go(func() {
		defer release()
		f.run(networkOf("udp", to.Addr()), to.String())
	}) {
		f.Close()
		u.e.flows.Untrack(f)
		release()
	}
	return true
}

type udpFlow struct {
	e     *Egress
	ep    tcpip.Endpoint
	guest *gonet.UDPConn
	host  atomic.Pointer[net.Conn]
	last  atomic.Int64 // unix nanoseconds of the last datagram either way
	once  sync.Once
}

// Close ends the flow: both sockets are closed, once.
func (f *udpFlow) Close() error {
	f.once.Do(func() {
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
		f.pump(h, f.guest)
	}()
	f.pump(f.guest, h)
	f.Close()
	done.Wait()
}

// pump copies datagrams until the flow is closed. A host socket's
// ECONNREFUSED (an ICMP error for an earlier datagram) does not end the
// flow, as it would not for an unconnected socket in the sandbox.
func (f *udpFlow) pump(dst, src net.Conn) {
	buf := make([]byte, 65535)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		f.touch()
		if _, err := dst.Write(buf[:n]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
	}
}
