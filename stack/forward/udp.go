package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunstack/tunstack/stack"
)

func (f *fwd) listenUDP() error {
	for _, a := range f.spec.hostAddrs() {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return fmt.Errorf("forward %s: host port %d/udp: %w", f.spec, f.spec.HostPort, err)
		}
		f.pcs = append(f.pcs, pc)
	}
	for _, pc := range f.pcs {
		f.conns.Go(func() { f.udpLoop(pc.(*net.UDPConn)) })
	}
	return nil
}

// udpFlow is one client's association: its own stack socket, bound to the
// client's address, connected to the sandbox port.
type udpFlow struct {
	guest *stack.UDPConn
	last  atomic.Int64
	once  sync.Once
}

func (u *udpFlow) Close() error {
	u.once.Do(func() { u.guest.Close() })
	return nil
}

func (f *fwd) udpLoop(pc *net.UDPConn) {
	flows := map[netip.AddrPort]*udpFlow{}
	var mu sync.Mutex // guards flows
	buf := make([]byte, 65535)
	for {
		n, client, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if f.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				f.m.log.Warn("forward: read failed; forward stopped", "forward", f.spec.String(), "err", err)
			}
			return
		}
		mu.Lock()
		fl := flows[client]
		mu.Unlock()
		if fl == nil {
			fl, err = f.newUDPFlow(pc, client, func() {
				mu.Lock()
				delete(flows, client)
				mu.Unlock()
			})
			if err != nil {
				f.m.log.Debug("forward: udp flow", "forward", f.spec.String(), "client", client, "err", err)
				continue
			}
			mu.Lock()
			flows[client] = fl
			mu.Unlock()
		}
		fl.last.Store(time.Now().UnixNano())
		if _, err := fl.guest.Write(buf[:n]); err != nil {
			f.m.log.Debug("forward: udp write to sandbox", "forward", f.spec.String(), "err", err)
		}
	}
}

func (f *fwd) newUDPFlow(pc *net.UDPConn, client netip.AddrPort, done func()) (*udpFlow, error) {
	src, dst, _ := f.m.source(client)
	dst = netip.AddrPortFrom(dst.Addr(), f.spec.SandboxPort)
	guest, err := f.m.dialUDP(src, dst)
	if err != nil && src.Port() != 0 {
		guest, err = f.m.dialUDP(netip.AddrPortFrom(src.Addr(), 0), dst)
	}
	if err != nil {
		return nil, err
	}
	fl := &udpFlow{guest: guest}
	fl.last.Store(time.Now().UnixNano())
	if !f.conns.Track(fl) {
		fl.Close()
		return nil, errors.New("forward stopped")
	}
	f.active.Add(1)
	f.total.Add(1)
	if !f.conns.Go(func() {
		defer f.active.Add(-1)
		defer f.conns.Untrack(fl)
		defer done()
		defer fl.Close()
		f.udpReplies(pc, client, fl)
	}) {
		f.active.Add(-1)
		f.conns.Untrack(fl)
		fl.Close()
		return nil, errors.New("forward stopped")
	}
	return fl, nil
}

// udpReplies sends the sandbox's datagrams back to the client until the
// flow has been idle for UDPIdleTimeout.
func (f *fwd) udpReplies(pc *net.UDPConn, client netip.AddrPort, fl *udpFlow) {
	idle := f.m.cfg.UDPIdleTimeout
	buf := make([]byte, 65535)
	for {
		fl.guest.SetReadDeadline(time.Unix(0, fl.last.Load()).Add(idle))
		n, err := fl.guest.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, fl.last.Load())) < idle {
				continue
			}
			return
		}
		fl.last.Store(time.Now().UnixNano())
		if _, err := pc.WriteToUDPAddrPort(buf[:n], client); err != nil {
			return
		}
	}
}

// dialUDP makes a stack socket bound to src (the client's address) and
// connected to dst.
func (m *Manager) dialUDP(src, dst netip.AddrPort) (*stack.UDPConn, error) {
	return m.cfg.Stack.DialUDP(src, dst)
}
