package netfilter

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// payload is a transport datagram of n bytes with a recognisable pattern.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

type fragSpec struct {
	off, end int // byte range of the transport payload
	more     bool
}

// frag4 builds one IPv4 fragment of data (protocol UDP, id).
func frag4(data []byte, id uint16, f fragSpec) []byte {
	b := make([]byte, header.IPv4MinimumSize+f.end-f.off)
	h := header.IPv4(b)
	var flags uint8
	if f.more {
		flags = header.IPv4FlagMoreFragments
	}
	h.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)), ID: id, Flags: flags, FragmentOffset: uint16(f.off),
		TTL: 64, Protocol: 17, SrcAddr: tcpipAddr4(198, 18, 0, 2), DstAddr: tcpipAddr4(198, 18, 0, 1),
	})
	h.SetChecksum(^h.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], data[f.off:f.end])
	return b
}

// whole4 is the unfragmented IPv4 datagram reassembly must produce.
func whole4(data []byte, id uint16) []byte {
	return frag4(data, id, fragSpec{0, len(data), false})
}

// frag6 builds one IPv6 fragment with a destination options header
// before the fragment header (to check the chain is rewritten).
func frag6(data []byte, id uint32, f fragSpec) []byte {
	n := header.IPv6MinimumSize + 8 + header.IPv6FragmentExtHdrLength + f.end - f.off
	b := make([]byte, n)
	h := header.IPv6(b)
	h.Encode(&header.IPv6Fields{PayloadLength: uint16(n - header.IPv6MinimumSize), TransportProtocol: tcpip.TransportProtocolNumber(header.IPv6DestinationOptionsExtHdrIdentifier),
		HopLimit: 64, SrcAddr: tcpipAddr16(2), DstAddr: tcpipAddr16(1)})
	o := header.IPv6MinimumSize
	b[o] = uint8(header.IPv6FragmentExtHdrIdentifier) // dest opts: next header
	b[o+1] = 0
	b[o+2], b[o+3] = 1, 4 // PadN of 4 bytes
	o += 8
	b[o] = 17
	v := uint16(f.off)
	if f.more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[o+2:], v)
	binary.BigEndian.PutUint32(b[o+4:], id)
	copy(b[o+8:], data[f.off:f.end])
	return b
}

func whole6(data []byte) []byte {
	n := header.IPv6MinimumSize + 8 + len(data)
	b := make([]byte, n)
	h := header.IPv6(b)
	h.Encode(&header.IPv6Fields{PayloadLength: uint16(n - header.IPv6MinimumSize), TransportProtocol: tcpip.TransportProtocolNumber(header.IPv6DestinationOptionsExtHdrIdentifier),
		HopLimit: 64, SrcAddr: tcpipAddr16(2), DstAddr: tcpipAddr16(1)})
	o := header.IPv6MinimumSize
	b[o] = 17
	b[o+2], b[o+3] = 1, 4
	copy(b[o+8:], data)
	return b
}

// split cuts [0,n) into fragments of size sz (a multiple of 8).
func split(n, sz int) []fragSpec {
	var fs []fragSpec
	for off := 0; off < n; off += sz {
		end := min(off+sz, n)
		fs = append(fs, fragSpec{off, end, end < n})
	}
	return fs
}

func reorder(fs []fragSpec, idx ...int) []fragSpec {
	out := make([]fragSpec, len(idx))
	for i, j := range idx {
		out[i] = fs[j]
	}
	return out
}

func TestReassembler(t *testing.T) {
	d3000 := payload(3000)
	d16 := payload(40)
	big := payload(65535 - header.IPv4MinimumSize)
	type step struct {
		f     fragSpec
		after time.Duration // advance the clock before this fragment
		want  DefragResult
	}
	steps := func(want DefragResult, fs ...fragSpec) []step {
		var s []step
		for i, f := range fs {
			w := DefragHeld
			if i == len(fs)-1 {
				w = want
			}
			s = append(s, step{f: f, want: w})
		}
		return s
	}
	s3000 := split(3000, 1256)
	s40 := split(40, 8)
	tests := []struct {
		name  string
		v6    bool
		data  []byte
		steps []step
		whole bool // the last step yields the whole datagram
		stat  func(DefragStats) bool
	}{
		{name: "v4 in order", data: d3000, steps: steps(DefragDone, s3000...), whole: true},
		{name: "v4 out of order", data: d3000, steps: steps(DefragDone, reorder(s3000, 2, 0, 1)...), whole: true},
		{name: "v4 8-byte fragments reversed", data: d16, steps: steps(DefragDone, reorder(s40, 4, 3, 2, 1, 0)...), whole: true},
		{name: "v4 duplicate dropped alone", data: d3000, steps: []step{
			{f: s3000[0], want: DefragHeld}, {f: s3000[0], want: DefragDropped},
			{f: s3000[1], want: DefragHeld}, {f: fragSpec{8, 16, true}, want: DefragDropped},
			{f: s3000[2], want: DefragDone}}, whole: true},
		{name: "v4 overlap kills the datagram", data: d3000, steps: []step{
			{f: s3000[0], want: DefragHeld}, {f: fragSpec{1248, 2512, true}, want: DefragDropped},
			{f: s3000[1], want: DefragHeld}, {f: s3000[2], want: DefragHeld}},
			stat: func(s DefragStats) bool { return s.Overlaps == 1 && s.Held == 1 }},
		{name: "v4 oversize", data: append(big, payload(16)...), steps: []step{
			{f: fragSpec{0, 8, true}, want: DefragHeld}, {f: fragSpec{65528, 65535 - 20 + 16, false}, want: DefragDropped}},
			stat: func(s DefragStats) bool { return s.Oversize == 1 && s.Held == 0 }},
		{name: "v4 largest datagram", data: big, steps: steps(DefragDone, split(len(big), 1480)...), whole: true},
		{name: "v4 timeout", data: d3000, steps: []step{
			{f: s3000[0], want: DefragHeld}, {f: s3000[1], want: DefragHeld},
			{f: s3000[2], after: 31 * time.Second, want: DefragHeld}},
			stat: func(s DefragStats) bool { return s.Timeouts == 1 && s.Held == 1 }},
		{name: "v4 within timeout", data: d3000, steps: []step{
			{f: s3000[0], want: DefragHeld}, {f: s3000[1], after: 29 * time.Second, want: DefragHeld},
			{f: s3000[2], want: DefragDone}}, whole: true},
		{name: "v4 conflicting last fragments", data: d3000, steps: []step{
			{f: s3000[2], want: DefragHeld}, {f: fragSpec{2512, 2600, false}, want: DefragDropped}},
			stat: func(s DefragStats) bool { return s.Held == 0 }},
		{name: "v6 in order", v6: true, data: d3000, steps: steps(DefragDone, s3000...), whole: true},
		{name: "v6 out of order", v6: true, data: d3000, steps: steps(DefragDone, reorder(s3000, 1, 2, 0)...), whole: true},
		{name: "v6 duplicate", v6: true, data: d3000, steps: []step{
			{f: s3000[1], want: DefragHeld}, {f: s3000[1], want: DefragDropped},
			{f: s3000[0], want: DefragHeld}, {f: s3000[2], want: DefragDone}}, whole: true},
		{name: "v6 overlap", v6: true, data: d3000, steps: []step{
			{f: s3000[0], want: DefragHeld}, {f: fragSpec{1000, 1264, true}, want: DefragDropped}},
			stat: func(s DefragStats) bool { return s.Overlaps == 1 && s.Held == 0 }},
		{name: "v6 non-last not 8-byte aligned", v6: true, data: d3000, steps: []step{
			{f: fragSpec{0, 1001, true}, want: DefragDropped}}},
		{name: "v6 oversize", v6: true, data: payload(65600), steps: []step{
			{f: fragSpec{0, 8, true}, want: DefragHeld}, {f: fragSpec{65512, 65600, false}, want: DefragDropped}},
			stat: func(s DefragStats) bool { return s.Oversize == 1 }},
		{name: "v6 timeout is 60s", v6: true, data: d3000, steps: []step{
			{f: s3000[0], want: DefragHeld}, {f: s3000[1], after: 45 * time.Second, want: DefragHeld},
			{f: s3000[2], after: 16 * time.Second, want: DefragHeld}},
			stat: func(s DefragStats) bool { return s.Timeouts == 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			r := NewReassembler(ReassemblerConfig{Now: func() time.Time { return now }})
			var got []byte
			for i, s := range tc.steps {
				now = now.Add(s.after)
				var pkt []byte
				if tc.v6 {
					pkt = frag6(tc.data, 7, s.f)
				} else {
					pkt = frag4(tc.data, 7, s.f)
				}
				if !IsFragment(pkt) {
					t.Fatalf("step %d: IsFragment false", i)
				}
				out, res := r.Add(pkt)
				if res != s.want {
					t.Fatalf("step %d (%+v): result %d, want %d (stats %+v)", i, s.f, res, s.want, r.Stats())
				}
				got = out
			}
			if tc.whole {
				want := whole4(tc.data, 7)
				if tc.v6 {
					want = whole6(tc.data)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("reassembled %d bytes differ from the %d-byte original", len(got), len(want))
				}
				if !tc.v6 && !header.IPv4(got).IsChecksumValid() {
					t.Fatal("bad IPv4 header checksum")
				}
				if st := r.Stats(); st.Held != 0 || st.Mem != 0 {
					t.Fatalf("queue left behind: %+v", st)
				}
			}
			if tc.stat != nil && !tc.stat(r.Stats()) {
				t.Fatalf("stats %+v", r.Stats())
			}
		})
	}
}

func TestReassemblerNotFragments(t *testing.T) {
	r := NewReassembler(ReassemblerConfig{})
	for _, b := range [][]byte{whole4(payload(100), 1), whole6(payload(100)), nil, {0x45}, {0x60, 0}} {
		if IsFragment(b) {
			t.Errorf("IsFragment(%x...) true", b[:min(len(b), 8)])
		}
		if _, res := r.Add(b); res != DefragPass {
			t.Errorf("Add(%d bytes) = %d, want pass", len(b), res)
		}
	}
}

// TestReassemblerMemoryBound: tiny fragments of many datagrams stop at
// the high threshold instead of growing without end.
func TestReassemblerMemoryBound(t *testing.T) {
	r := NewReassembler(ReassemblerConfig{HighThresh: 64 << 10})
	data := payload(64)
	for id := 0; id < 10000; id++ {
		r.Add(frag4(data, uint16(id), fragSpec{0, 8, true}))
	}
	st := r.Stats()
	if st.Mem > 64<<10+1024 || st.MemDrops == 0 {
		t.Fatalf("memory not bounded: %+v", st)
	}
	// An in-flight datagram whose queue exists is refused too while over
	// the bound; after the timeout, memory is free again.
	now := time.Now().Add(time.Minute)
	r.now = func() time.Time { return now }
	r.Expire()
	if st := r.Stats(); st.Held != 0 || st.Mem != 0 {
		t.Fatalf("not freed after timeout: %+v", st)
	}
	if _, res := r.Add(frag4(data, 1, fragSpec{0, 8, true})); res != DefragHeld {
		t.Fatalf("after expiry a fragment is %d, want held", res)
	}
}

func tcpipAddr4(a, b, c, d byte) tcpip.Address {
	return tcpip.AddrFrom4([4]byte{a, b, c, d})
}

// tcpipAddr16 is 2001:db8::last (documentation prefix; never sent).
func tcpipAddr16(last byte) tcpip.Address {
	return tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: last})
}

// TestReassemblerExpireIdle: Expire alone (no further fragment) frees a
// timed-out datagram, as the link stage does once rules are flushed.
func TestReassemblerExpireIdle(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewReassembler(ReassemblerConfig{Now: func() time.Time { return now }})
	r.Add(frag4(payload(3000), 1, fragSpec{0, 1256, true}))
	r.Expire()
	if st := r.Stats(); st.Held != 1 {
		t.Fatalf("expired too early: %+v", st)
	}
	now = now.Add(31 * time.Second)
	r.Expire()
	if st := r.Stats(); st.Held != 0 || st.Mem != 0 || st.Timeouts != 1 {
		t.Fatalf("not expired: %+v", st)
	}
}
