package netdev

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// EndpointOptions tune NewEndpoint. The zero value suits most devices.
type EndpointOptions struct {
	// Offset is the headroom, in bytes, before each packet in the buffers
	// handed to Device.Read and Device.Write, for devices that prepend a
	// header of their own (a tunnel header, a virtio-net header).
	Offset int
	// NoChecksums stops the stack from computing checksums on packets it
	// sends and verifying them on packets it receives. Set it only when
	// the device cannot corrupt packets and its peer is another tunstack
	// stack with NoChecksums set (an in-memory Pipe): any other peer
	// drops the packets.
	NoChecksums bool
}

// EndpointStats counts what an Endpoint moved and dropped.
type EndpointStats struct {
	RxPackets, TxPackets atomic.Uint64
	RxErrors, TxErrors   atomic.Uint64
	// RxDropped counts packets that were neither IPv4 nor IPv6.
	RxDropped atomic.Uint64
	// RxGSO and TxGSO count super-packets (offload devices only).
	RxGSO, TxGSO atomic.Uint64
}

// Endpoint is a NIC for a stack (a gVisor stack.LinkEndpoint) backed by a
// Device. Pass it as stack.NICConfig.Endpoint. It owns the device: removing
// the NIC or closing the stack closes it.
type Endpoint struct {
	// Stats counts packets; read it at any time.
	Stats EndpointStats

	dev     Device
	opts    EndpointOptions
	offload bool // dev carries virtio-net headers
	mtu     atomic.Uint32

	mu      sync.Mutex // guards disp, started
	disp    gstack.NetworkDispatcher
	started bool

	closeOnce sync.Once
	closed    atomic.Bool
	wg        sync.WaitGroup // the reader
	scratch   sync.Pool      // *[][]byte, write batches
}

var (
	_ gstack.LinkEndpoint = (*Endpoint)(nil)
	_ gstack.GSOEndpoint  = (*Endpoint)(nil)
)

// GSOMaxSize implements stack.GSOEndpoint: super-packets up to 64 KiB with
// an offload device, none otherwise.
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.offload {
		return gsoMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.
func (e *Endpoint) SupportedGSO() gstack.SupportedGSO {
	if e.offload {
		return gstack.HostGSOSupported
	}
	return gstack.GSONotSupported
}

// NewEndpoint wraps dev as a NIC. Its MTU is dev.MTU(). If dev is an
// OffloadDevice with Offload on, the endpoint exchanges TCP super-packets
// with it (segmentation and checksum offload, as tun.Endpoint does with a
// TUN), and Offset grows to at least VirtioNetHdrLen to hold the header.
func NewEndpoint(dev Device, opts EndpointOptions) *Endpoint {
	e := &Endpoint{dev: dev, opts: opts}
	if od, ok := dev.(OffloadDevice); ok && od.Offload() {
		e.offload = true
		e.opts.Offset = max(e.opts.Offset, VirtioNetHdrLen)
	}
	e.mtu.Store(uint32(dev.MTU()))
	e.scratch.New = func() any { b := make([][]byte, 0, max(dev.BatchSize(), 1)); return &b }
	return e
}

// Device returns the wrapped device.
func (e *Endpoint) Device() Device { return e.dev }

// Attach implements stack.LinkEndpoint. The first dispatcher starts the
// reader; nil (the NIC is being removed) closes the device, which is the
// only way to wake a reader blocked in Device.Read.
func (e *Endpoint) Attach(d gstack.NetworkDispatcher) {
	e.mu.Lock()
	e.disp = d
	start := d != nil && !e.started
	if start {
		e.started = true
		e.wg.Add(1)
	}
	e.mu.Unlock()
	if start {
		go e.readLoop()
	}
	if d == nil {
		e.closeDevice()
	}
}

func (e *Endpoint) dispatcher() gstack.NetworkDispatcher {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.disp
}

// readLoop reads batches until the device is closed.
func (e *Endpoint) readLoop() {
	defer e.wg.Done()
	batch := max(e.dev.BatchSize(), 1)
	bufs := make([][]byte, batch)
	size := int(e.mtu.Load())
	if e.offload {
		size = gsoMaxSize
	}
	for i := range bufs {
		bufs[i] = make([]byte, e.opts.Offset+size)
	}
	sizes := make([]int, batch)
	failures := 0
	for {
		n, err := e.dev.Read(bufs, sizes, e.opts.Offset)
		for i := range n {
			if e.offload {
				var h VirtioNetHdr
				h.Decode(bufs[i][e.opts.Offset-VirtioNetHdrLen:])
				if h.GSOType != VirtioGSONone {
					e.Stats.RxGSO.Add(1)
				}
			}
			e.deliver(bufs[i][e.opts.Offset : e.opts.Offset+sizes[i]])
		}
		if err == nil {
			failures = 0
			continue
		}
		if e.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
			return
		}
		// A transport error (an ICMP error on a UDP socket, say) is not
		// fatal; back off so a device that fails at once does not spin.
		e.Stats.RxErrors.Add(1)
		failures++
		time.Sleep(time.Duration(min(failures, 100)) * time.Millisecond)
	}
}

// deliver hands a copy of one packet to the stack.
func (e *Endpoint) deliver(b []byte) {
	if len(b) == 0 {
		e.Stats.RxDropped.Add(1)
		return
	}
	var proto tcpip.NetworkProtocolNumber
	switch header.IPVersion(b) {
	case header.IPv4Version:
		proto = header.IPv4ProtocolNumber
	case header.IPv6Version:
		proto = header.IPv6ProtocolNumber
	default:
		e.Stats.RxDropped.Add(1)
		return
	}
	d := e.dispatcher()
	if d == nil {
		return
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	e.Stats.RxPackets.Add(1)
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// WritePackets implements stack.LinkEndpoint: it copies the packets into
// flat buffers (with Offset headroom) and writes them in batches.
func (e *Endpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if e.closed.Load() {
		return 0, &tcpip.ErrClosedForSend{}
	}
	sp := e.scratch.Get().(*[][]byte)
	defer e.scratch.Put(sp)
	bufs := (*sp)[:0]
	batch := cap(*sp)
	sent := 0
	flush := func() tcpip.Error {
		n, err := e.dev.Write(bufs, e.opts.Offset)
		sent += n
		e.Stats.TxPackets.Add(uint64(n))
		bufs = bufs[:0]
		if err != nil {
			e.Stats.TxErrors.Add(1)
			if e.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return &tcpip.ErrClosedForSend{}
			}
			return &tcpip.ErrInvalidEndpointState{}
		}
		return nil
	}
	for _, pkt := range pkts.AsSlice() {
		bufs = append(bufs, e.flatten(pkt, bufs[len(bufs):cap(bufs)]))
		if len(bufs) == batch {
			if err := flush(); err != nil {
				return e.result(sent, err)
			}
		}
	}
	if len(bufs) > 0 {
		if err := flush(); err != nil {
			return e.result(sent, err)
		}
	}
	*sp = bufs[:0]
	return sent, nil
}

// result reports a partial write as success (gVisor drops the rest, as a
// full queue would) and a write of nothing as the error.
func (e *Endpoint) result(sent int, err tcpip.Error) (int, tcpip.Error) {
	if sent > 0 {
		return sent, nil
	}
	return 0, err
}

// flatten copies pkt after Offset bytes of headroom, reusing the buffer
// left in spare[0] by an earlier batch when it is big enough.
func (e *Endpoint) flatten(pkt *gstack.PacketBuffer, spare [][]byte) []byte {
	size := e.opts.Offset + pkt.Size()
	var b []byte
	if len(spare) > 0 && cap(spare[:1][0]) >= size {
		b = spare[:1][0][:size]
	} else {
		b = make([]byte, size, max(size, e.opts.Offset+int(e.mtu.Load())))
	}
	if e.offload {
		var h VirtioNetHdr
		h.ForPacket(pkt)
		if h.GSOType != VirtioGSONone {
			e.Stats.TxGSO.Add(1)
		}
		h.Encode(b[e.opts.Offset-VirtioNetHdrLen:])
	}
	at := e.opts.Offset
	for _, v := range pkt.AsSlices() {
		at += copy(b[at:], v)
	}
	return b
}

// MTU implements stack.LinkEndpoint.
func (e *Endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.
func (e *Endpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// Capabilities implements stack.LinkEndpoint. With offload, inbound TCP
// checksums may hold only the pseudo-header sum, so gVisor must not verify
// them.
func (e *Endpoint) Capabilities() gstack.LinkEndpointCapabilities {
	if e.offload && !e.opts.NoChecksums {
		return gstack.CapabilityRXChecksumOffload
	}
	if e.opts.NoChecksums {
		return gstack.CapabilityRXChecksumOffload | gstack.CapabilityTXChecksumOffload
	}
	return 0
}

// MaxHeaderLength implements stack.LinkEndpoint: there is no link header.
func (*Endpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: there is none.
func (*Endpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint; it is ignored.
func (*Endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// IsAttached implements stack.LinkEndpoint.
func (e *Endpoint) IsAttached() bool { return e.dispatcher() != nil }

// Wait implements stack.LinkEndpoint. It does not wait for the reader:
// gVisor calls it holding the stack's lock, which a reader delivering a
// packet may be waiting for. Close, called after that lock is released,
// waits instead.
func (*Endpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint; there is no link header.
func (*Endpoint) AddHeader(*gstack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint; there is no link header.
func (*Endpoint) ParseHeader(*gstack.PacketBuffer) bool { return true }

// SetOnCloseAction implements stack.LinkEndpoint.
func (*Endpoint) SetOnCloseAction(func()) {}

// Close implements stack.LinkEndpoint: it closes the device and waits for
// the reader to stop. It is safe to call more than once.
func (e *Endpoint) Close() {
	e.closeDevice()
	e.wg.Wait()
}

// closeDevice closes the device once, which wakes the reader.
func (e *Endpoint) closeDevice() {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.dev.Close()
	})
}
