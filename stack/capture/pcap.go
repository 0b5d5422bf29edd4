package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// LinkTypeRaw is pcap's LINKTYPE_RAW: each record is a bare IPv4 or IPv6
// packet.
const LinkTypeRaw = 101

const (
	pcapMagic     = 0xa1b2c3d4 // microsecond timestamps
	pcapMagicNano = 0xa1b23c4d
)

// PcapWriter writes a pcap stream (microsecond timestamps) of
// LINKTYPE_RAW or LINKTYPE_LINUX_SLL2 records.
type PcapWriter struct {
	w   io.Writer
	buf [16 + SLL2HeaderLen]byte
	// sll2 puts an SLL2 header (from the packet's IfIndex and Dir) before
	// each packet; snapLen then bounds header and packet together, as
	// Linux's does.
	sll2    bool
	snapLen int
}

// NewPcapWriter writes the header of a LINKTYPE_RAW file to w.
func NewPcapWriter(w io.Writer, snapLen int) (*PcapWriter, error) {
	return NewPcapWriterLinkType(w, snapLen, LinkTypeRaw)
}

// NewPcapWriterLinkType writes the file header to w for linkType, which
// is LinkTypeRaw or LinkTypeLinuxSLL2.
func NewPcapWriterLinkType(w io.Writer, snapLen, linkType int) (*PcapWriter, error) {
	if linkType != LinkTypeRaw && linkType != LinkTypeLinuxSLL2 {
		return nil, fmt.Errorf("capture: cannot write pcap link type %d (only RAW %d and LINUX_SLL2 %d)", linkType, LinkTypeRaw, LinkTypeLinuxSLL2)
	}
	if snapLen <= 0 {
		snapLen = DefaultSnapLen
	}
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], pcapMagic)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], uint32(snapLen))
	binary.LittleEndian.PutUint32(h[20:], uint32(linkType))
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("capture: write pcap header: %w", err)
	}
	return &PcapWriter{w: w, sll2: linkType == LinkTypeLinuxSLL2, snapLen: snapLen}, nil
}

// WritePacket appends one record.
func (pw *PcapWriter) WritePacket(p Packet) error {
	data, wire := p.Data, max(p.Len, len(p.Data))
	hdr := pw.buf[:16]
	if pw.sll2 {
		hdr = AppendSLL2Header(hdr, data, p.IfIndex, p.Dir)
		wire += SLL2HeaderLen
		if room := max(pw.snapLen-SLL2HeaderLen, 0); len(data) > room {
			data = data[:room]
		}
	}
	us := p.Time.UnixMicro()
	binary.LittleEndian.PutUint32(hdr[0:], uint32(us/1e6))
	binary.LittleEndian.PutUint32(hdr[4:], uint32(us%1e6))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(hdr)-16+len(data)))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(wire))
	if _, err := pw.w.Write(hdr); err != nil {
		return err
	}
	_, err := pw.w.Write(data)
	return err
}

// PcapReader reads a pcap stream of LINKTYPE_RAW or LINKTYPE_LINUX_SLL2
// records, such as the control socket's capture stream. Of an SLL2
// record it returns the packet behind the header, with the header's
// interface index and direction in the Packet.
type PcapReader struct {
	r     *bufio.Reader
	order binary.ByteOrder
	nano  bool
	// SnapLen and LinkType are from the file header.
	SnapLen  int
	LinkType int
}

// NewPcapReader reads the file header.
func NewPcapReader(r io.Reader) (*PcapReader, error) {
	pr := &PcapReader{r: bufio.NewReaderSize(r, 1<<16)}
	var h [24]byte
	if _, err := io.ReadFull(pr.r, h[:]); err != nil {
		return nil, fmt.Errorf("capture: read pcap header: %w", err)
	}
	switch {
	case binary.LittleEndian.Uint32(h[:]) == pcapMagic:
		pr.order = binary.LittleEndian
	case binary.BigEndian.Uint32(h[:]) == pcapMagic:
		pr.order = binary.BigEndian
	case binary.LittleEndian.Uint32(h[:]) == pcapMagicNano:
		pr.order, pr.nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[:]) == pcapMagicNano:
		pr.order, pr.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("capture: not a pcap stream (magic %x)", h[:4])
	}
	pr.SnapLen = int(pr.order.Uint32(h[16:]))
	pr.LinkType = int(pr.order.Uint32(h[20:]))
	return pr, nil
}

// Next returns the next packet, or io.EOF at a clean end of stream. A
// stream cut short (a capture whose instance ended) gives an error that
// wraps io.ErrUnexpectedEOF.
func (pr *PcapReader) Next() (Packet, error) {
	var h [16]byte
	if _, err := io.ReadFull(pr.r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Packet{}, fmt.Errorf("capture: truncated pcap record header: %w", err)
		}
		return Packet{}, err
	}
	sec, frac := int64(pr.order.Uint32(h[0:])), int64(pr.order.Uint32(h[4:]))
	incl, orig := int(pr.order.Uint32(h[8:])), int(pr.order.Uint32(h[12:]))
	if incl > 1<<20 {
		return Packet{}, fmt.Errorf("capture: pcap record of %d bytes is implausible", incl)
	}
	data := make([]byte, incl)
	if _, err := io.ReadFull(pr.r, data); err != nil {
		return Packet{}, fmt.Errorf("capture: truncated pcap record: %w", err)
	}
	ns := frac * 1000
	if pr.nano {
		ns = frac
	}
	p := Packet{Time: time.Unix(sec, ns), Data: data, Len: orig}
	if pr.LinkType == LinkTypeLinuxSLL2 {
		var err error
		if p.IfIndex, p.Dir, p.Data, err = ParseSLL2Header(data); err != nil {
			return Packet{}, err
		}
		p.Len = max(orig-SLL2HeaderLen, len(p.Data))
	}
	return p, nil
}

// WriteHeader writes to w the header of a pcap stream of the
// subscription's packets (see WriteNext): with WriteNext, Queued, Dropped
// and Close a Subscription is what the control socket streams.
func (s *Subscription) WriteHeader(w io.Writer) error {
	_, err := NewPcapWriterLinkType(w, s.snapLen, s.linkType())
	return err
}

// Cooked makes the subscription's stream LINKTYPE_LINUX_SLL2, as tcpdump
// -i any writes, each packet behind a header with interface index ifIndex
// and its direction. Call it before WriteHeader; it returns s.
func (s *Subscription) Cooked(ifIndex uint32) *Subscription {
	s.cooked, s.ifIndex = true, ifIndex
	return s
}

func (s *Subscription) linkType() int {
	if s.cooked {
		return LinkTypeLinuxSLL2
	}
	return LinkTypeRaw
}

// WriteNext waits for the next packet and writes it to w as one pcap
// record. It returns false when the subscription is closed or ctx is done.
func (s *Subscription) WriteNext(ctx context.Context, w io.Writer) (bool, error) {
	select {
	case <-ctx.Done():
		return false, nil
	case p, ok := <-s.c:
		if !ok {
			return false, nil
		}
		pw := PcapWriter{w: w, sll2: s.cooked, snapLen: s.snapLen}
		p.IfIndex = s.ifIndex
		return true, pw.WritePacket(p)
	}
}

// Queued counts the packets waiting in C.
func (s *Subscription) Queued() int { return len(s.c) }
