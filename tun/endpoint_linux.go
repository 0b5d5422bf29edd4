package tun

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tunstack/tunstack/netdev"
)

const (
	// headView is the size of the first read buffer. Headers (up to 100
	// bytes for IPv6+TCP with options) land in it, so parsing never pulls
	// up into the large buffer, and small packets (ACKs, DNS) do not pin a
	// 64 KiB chunk while they wait in a receive queue.
	headView = 128
	// tailView holds the rest: up to a 64 KiB GSO super-packet. It is the
	// largest chunk buffer.View pools.
	tailView = buffer.MaxChunkSize

	// gsoMaxSize is what the endpoint tells gVisor TCP: super-packets up to
	// the IPv4 total-length limit.
	gsoMaxSize = 1<<16 - 1
)

// EndpointStats counts what the endpoint moved and dropped.
type EndpointStats struct {
	RxPackets, RxBytes, RxGSO, RxErrors, RxDropped atomic.Uint64
	TxPackets, TxBytes, TxGSO, TxErrors            atomic.Uint64
}

// Endpoint is a gVisor stack.LinkEndpoint backed by a TUN device. It owns
// the device: Close (called when the NIC is removed) closes it.
type Endpoint struct {
	dev *Device
	// raws has one entry per queue; raws[0] is dev.File.
	raws    []syscall.RawConn
	log     *slog.Logger
	mtu     atomic.Uint32
	onClose func()

	// link answers and builds the Ethernet layer of a TAP device; nil
	// for a TUN. Set once, before Attach.
	link Link

	mu sync.Mutex // guards dispatcher, stopLink
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// stopLink ends the Link's periodic work.
	// +checklocks:mu
	stopLink  chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once

	// Stats are the endpoint's counters.
	Stats EndpointStats
}

var _ stack.LinkEndpoint = (*Endpoint)(nil)
var _ stack.GSOEndpoint = (*Endpoint)(nil)

// NewEndpoint wraps dev. mtu must match the interface's MTU. dev's queue
// files must stay non-blocking (never call their Fd): the endpoint reads
// and writes them with raw system calls (see readv), which a blocking
// descriptor would stall while they hold the runtime's P.
func NewEndpoint(dev *Device, mtu uint32, log *slog.Logger) (*Endpoint, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Never call Fd() on the queue files here: it would switch them to
	// blocking mode and take them off the runtime poller.
	e := &Endpoint{dev: dev, log: log}
	for _, f := range dev.Files() {
		raw, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("tun: %w", err)
		}
		e.raws = append(e.raws, raw)
	}
	e.mtu.Store(mtu)
	return e, nil
}

// Link is the Ethernet side of a TAP device, seen from the stack's end:
// the stack itself sees IP packets only (no link address, no resolution),
// and Link answers the sandbox's address resolution and frames what the
// stack sends. See tun/ethlink.
type Link interface {
	// Input sees every inbound frame (at most its first bytes, in
	// frame; size is its full length). It reports whether the frame was
	// link-layer traffic it consumed; reply writes answer frames to the
	// device.
	Input(frame []byte, size int, reply func(frame []byte)) (consumed bool)
	// Header returns the Ethernet header for an outbound packet of
	// network protocol proto.
	Header(proto tcpip.NetworkProtocolNumber) [header.EthernetMinimumSize]byte
}

// linkRunner is a Link with periodic work (router advertisements), run
// while the endpoint is attached.
type linkRunner interface {
	Run(stop <-chan struct{}, write func(frame []byte))
}

// SetLink sets the Ethernet side of a TAP device; call it before the
// endpoint is attached to a NIC. A TAP endpoint without one drops every
// frame.
func (e *Endpoint) SetLink(l Link) { e.link = l }

// Device returns the wrapped device.
func (e *Endpoint) Device() *Device { return e.dev }

// MTU implements stack.LinkEndpoint.
func (e *Endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.
func (e *Endpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint: a TUN has no link header.
func (e *Endpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: a TUN has none.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint; it is ignored.
func (e *Endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. With offload on, the kernel
// hands over packets whose TCP checksum holds only the pseudo-header sum, so
// gVisor must not verify checksums (it would drop them all).
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	if e.dev.Offload {
		return stack.CapabilityRXChecksumOffload
	}
	return 0
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.dev.Offload {
		return gsoMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if e.dev.Offload {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// ARPHardwareType implements stack.LinkEndpoint.
func (e *Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint; a TUN has no link header.
func (e *Endpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint; a TUN has no link header.
func (e *Endpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *Endpoint) SetOnCloseAction(f func()) { e.onClose = f }

// Attach implements stack.LinkEndpoint. A dispatcher starts the reader;
// nil (the NIC is being removed) stops it. gVisor waits for the reader
// (Wait) before it closes the endpoint, so the reader is woken with a read
// deadline rather than by closing the device.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := e.dispatcher == nil && d != nil
	e.dispatcher = d
	for q, f := range e.dev.Files() {
		if start {
			f.SetReadDeadline(time.Time{})
			e.wg.Add(1)
			go e.readLoop(e.raws[q])
		}
		if d == nil {
			f.SetReadDeadline(time.Unix(1, 0))
		}
	}
	e.runLink(start, d == nil)
}

// runLink starts the Link's periodic work when the reader starts and stops
// it on detach; Wait waits for it too. Called with mu held.
func (e *Endpoint) runLink(start, stop bool) {
	r, ok := e.link.(linkRunner)
	switch {
	case !ok:
	case start && e.stopLink == nil:
		e.stopLink = make(chan struct{})
		e.wg.Add(1)
		go func(stop <-chan struct{}) {
			defer e.wg.Done()
			r.Run(stop, e.writeFrame)
		}(e.stopLink)
	case stop && e.stopLink != nil:
		close(e.stopLink)
		e.stopLink = nil
	}
}

// IsAttached implements stack.LinkEndpoint.
func (e *Endpoint) IsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint: it waits for the reader to stop.
func (e *Endpoint) Wait() { e.wg.Wait() }

// Close implements stack.LinkEndpoint: it closes the device, which stops the
// reader.
func (e *Endpoint) Close() {
	e.closeOnce.Do(func() {
		if e.onClose != nil {
			e.onClose()
		}
		e.dev.Close()
	})
}

func (e *Endpoint) currentDispatcher() stack.NetworkDispatcher {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher
}

// readLoop reads one queue until the endpoint is detached or closed.
func (e *Endpoint) readLoop(raw syscall.RawConn) {
	defer e.wg.Done()
	r := &reader{}
	r.read = r.readv
	// tail is reused until a packet needs it: every fresh view is a
	// cleared pool chunk, and clearing 64 KiB per small packet cost 5-16%
	// of the CPU.
	var tail *buffer.View
	defer func() {
		if tail != nil {
			tail.Release()
		}
	}()
	for {
		if size := e.tailSize(); tail == nil || tail.Size() < size {
			if tail != nil {
				tail.Release()
			}
			tail = buffer.NewViewSize(size)
		}
		head := buffer.NewViewSize(headView)
		n, err := e.readPacket(raw, r, head, tail)
		if err != nil {
			head.Release()
			if e.readFailed(err) {
				return
			}
			continue
		}
		if e.deliver(r.vh[:], head, tail, n) {
			tail = nil
		}
	}
}

// tailSize is how much beyond the head view one read may bring: a whole
// GSO super-packet with offload, otherwise the rest of an MTU-sized packet.
func (e *Endpoint) tailSize() int {
	if e.dev.Offload {
		return tailView
	}
	return max(int(e.mtu.Load())+e.l2Len()-headView, 1)
}

// l2Len is the link header's length: Ethernet on a TAP, none on a TUN.
func (e *Endpoint) l2Len() int {
	if e.dev.TAP {
		return header.EthernetMinimumSize
	}
	return 0
}

// readFailed accounts for a read error and reports whether the reader
// must stop.
func (e *Endpoint) readFailed(err error) bool {
	switch {
	case errors.Is(err, os.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, unix.EBADFD), errors.Is(err, unix.EBADF):
		return true
	case errors.Is(err, os.ErrDeadlineExceeded):
		return e.currentDispatcher() == nil
	case errors.Is(err, errShortFrame):
		e.Stats.RxDropped.Add(1)
		return false
	}
	e.Stats.RxErrors.Add(1)
	e.log.Warn("tun read failed", "dev", e.dev.Name, "err", err)
	return false
}

// reader is the read loop's scratch state. Keeping it in one long-lived
// struct, with readv bound once, keeps RawConn.Read from allocating a
// closure and its captured variables on every packet.
type reader struct {
	vh    [virtioNetHdrLen]byte
	iov   [3]unix.Iovec
	niov  int
	n     int
	errno unix.Errno
	read  func(fd uintptr) bool
}

// readv is a raw system call: an ordinary one would wake the runtime's
// sysmon thread on every packet (stack/relay's rawio_linux.go says why
// that matters). It cannot block: the queue files are non-blocking.
func (r *reader) readv(fd uintptr) bool {
	n, _, errno := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&r.iov[0])), uintptr(r.niov))
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	r.n, r.errno = int(n), errno
	return true
}

// readPacket reads one frame into (the virtio header,) head and tail and
// returns the packet length without the virtio header.
func (e *Endpoint) readPacket(raw syscall.RawConn, r *reader, head, tail *buffer.View) (int, error) {
	i := 0
	if e.dev.Offload {
		r.iov[i].Base, r.iov[i].Len = &r.vh[0], uint64(len(r.vh))
		i++
	}
	hb, tb := head.AsSlice()[:headView], tail.AsSlice()
	r.iov[i].Base, r.iov[i].Len = &hb[0], uint64(len(hb))
	r.iov[i+1].Base, r.iov[i+1].Len = &tb[0], uint64(len(tb))
	r.niov = i + 2
	if err := raw.Read(r.read); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, r.errno
	}
	n := r.n
	if n == 0 {
		return 0, io.EOF
	}
	if e.dev.Offload {
		if n <= len(r.vh) {
			return 0, errShortFrame
		}
		n -= len(r.vh)
	}
	return n, nil
}

// errShortFrame is a frame shorter than its virtio-net header.
var errShortFrame = errors.New("frame with no packet after its virtio-net header")

// deliver hands one packet to the stack. It always consumes head, and
// reports whether it also consumed tail (the packet was longer than head).
func (e *Endpoint) deliver(vh []byte, head, tail *buffer.View, n int) (tailUsed bool) {
	var proto tcpip.NetworkProtocolNumber
	if e.dev.TAP {
		proto = e.frameProto(head, n)
		n -= header.EthernetMinimumSize
	} else {
		switch head.AsSlice()[0] >> 4 {
		case header.IPv4Version:
			proto = header.IPv4ProtocolNumber
		case header.IPv6Version:
			proto = header.IPv6ProtocolNumber
		}
	}
	if proto == 0 {
		e.Stats.RxDropped.Add(1)
		head.Release()
		return false
	}
	if e.dev.Offload {
		var h netdev.VirtioNetHdr
		h.Decode(vh)
		if h.GSOType != unix.VIRTIO_NET_HDR_GSO_NONE {
			e.Stats.RxGSO.Add(1)
		}
	}
	// Cap the views before building the buffer: it records their sizes.
	var payload buffer.Buffer
	if hl := head.Size(); n <= hl {
		head.CapLength(n)
		payload = buffer.MakeWithView(head)
	} else {
		tail.CapLength(n - hl)
		payload = buffer.MakeWithView(head)
		payload.Append(tail)
		tailUsed = true
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	e.Stats.RxPackets.Add(1)
	e.Stats.RxBytes.Add(uint64(n))
	if d := e.currentDispatcher(); d != nil {
		d.DeliverNetworkPacket(proto, pkt)
	}
	pkt.DecRef()
	return tailUsed
}

// frameProto handles a TAP frame's Ethernet header: link-layer traffic goes
// to the Link (0 is returned), an IP packet's header is trimmed from head
// and its protocol returned.
func (e *Endpoint) frameProto(head *buffer.View, n int) tcpip.NetworkProtocolNumber {
	if n < header.EthernetMinimumSize || e.link == nil {
		return 0
	}
	frame := head.AsSlice()[:min(n, headView)]
	if e.link.Input(frame, n, e.writeFrame) {
		return 0
	}
	proto := header.Ethernet(frame).Type()
	if proto != header.IPv4ProtocolNumber && proto != header.IPv6ProtocolNumber {
		return 0
	}
	head.TrimFront(header.EthernetMinimumSize)
	return proto
}

// writeFrame writes one link-layer frame (a Link's reply) to the device.
func (e *Endpoint) writeFrame(frame []byte) {
	if len(frame) == 0 {
		return
	}
	wb := writeBufs.Get().(*writeBuf)
	defer writeBufs.Put(wb)
	wb.iov = wb.iov[:0]
	if e.dev.Offload {
		clear(wb.vh[:])
		wb.iov = append(wb.iov, unix.Iovec{Base: &wb.vh[0], Len: virtioNetHdrLen})
	}
	wb.iov = append(wb.iov, unix.Iovec{Base: &frame[0], Len: uint64(len(frame))})
	if err := e.raws[0].Write(wb.write); err != nil || wb.errno != 0 {
		e.Stats.TxErrors.Add(1)
	}
}

// writeBuf is per-write scratch space, pooled so writes do not allocate.
type writeBuf struct {
	vh    [virtioNetHdrLen]byte
	eth   [header.EthernetMinimumSize]byte
	iov   []unix.Iovec
	errno unix.Errno
	// write is wb.writev bound once, so RawConn.Write gets no fresh closure.
	write func(fd uintptr) bool
}

func (wb *writeBuf) writev(fd uintptr) bool {
	_, _, wb.errno = unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&wb.iov[0])), uintptr(len(wb.iov)))
	// EAGAIN is not waited out: a full device drops the packet, as a full
	// qdisc would, and TCP retransmits. Waiting would stall the stack's
	// goroutines (and Close) behind a reader that may never come.
	return wb.errno != unix.EINTR
}

var writeBufs = sync.Pool{New: func() any {
	wb := &writeBuf{iov: make([]unix.Iovec, 0, 8)}
	wb.write = wb.writev
	return wb
}}

// WritePackets implements stack.LinkEndpoint: one writev per packet (a TUN
// takes one frame per call; with offload a frame is a whole super-packet).
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	wb := writeBufs.Get().(*writeBuf)
	defer writeBufs.Put(wb)
	sent := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.writePacket(wb, pkt); err != nil {
			if sent == 0 {
				return 0, err
			}
			break
		}
		sent++
	}
	return sent, nil
}

func (e *Endpoint) writePacket(wb *writeBuf, pkt *stack.PacketBuffer) tcpip.Error {
	wb.iov = wb.iov[:0]
	if e.dev.Offload {
		var h netdev.VirtioNetHdr
		h.ForPacket(pkt)
		if h.GSOType != unix.VIRTIO_NET_HDR_GSO_NONE {
			e.Stats.TxGSO.Add(1)
		}
		h.Encode(wb.vh[:])
		wb.iov = append(wb.iov, unix.Iovec{Base: &wb.vh[0], Len: virtioNetHdrLen})
	}
	if e.dev.TAP {
		if e.link == nil {
			return &tcpip.ErrClosedForSend{}
		}
		wb.eth = e.link.Header(pkt.NetworkProtocolNumber)
		wb.iov = append(wb.iov, unix.Iovec{Base: &wb.eth[0], Len: header.EthernetMinimumSize})
		if e.dev.Offload {
			shiftVirtioOffsets(wb.vh[:], header.EthernetMinimumSize)
		}
	}
	vl, off := pkt.AsViewList()
	size := 0
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		wb.iov = append(wb.iov, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
		size += len(b)
	}
	// RawConn.Write holds the descriptor against a concurrent Close, so a
	// write never lands on a reused descriptor number.
	// The packet's flow hash picks the queue, so a flow stays on one.
	raw := e.raws[0]
	if len(e.raws) > 1 {
		raw = e.raws[pkt.Hash%uint32(len(e.raws))]
	}
	if err := raw.Write(wb.write); err != nil {
		return &tcpip.ErrClosedForSend{}
	}
	if wb.errno != 0 {
		e.Stats.TxErrors.Add(1)
		e.log.Debug("tun write failed", "dev", e.dev.Name, "err", wb.errno, "len", size)
		return &tcpip.ErrInvalidEndpointState{}
	}
	e.Stats.TxPackets.Add(1)
	e.Stats.TxBytes.Add(uint64(size))
	return nil
}
