package netfilter

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// recorder is a NetworkDispatcher keeping what it was given.
type recorder struct{ got [][]byte }

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	v := pkt.ToView()
	r.got = append(r.got, append([]byte(nil), v.AsSlice()...))
	v.Release()
}
func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

// longOpts6 rewrites an IPv6 fragment from frag6 so its destination
// options header is 520 bytes long: the fragment header sits past the
// link stage's first peek.
func longOpts6(b []byte) []byte {
	const optLen = 520
	out := make([]byte, 0, len(b)+optLen-8)
	out = append(out, b[:header.IPv6MinimumSize]...)
	opts := make([]byte, optLen)
	opts[0], opts[1] = uint8(header.IPv6FragmentExtHdrIdentifier), optLen/8-1
	// PadN options filling the 518 option bytes: 257 + 257 + 4.
	opts[2], opts[3] = 1, 255
	opts[259], opts[260] = 1, 255
	opts[516], opts[517] = 1, 2
	out = append(out, opts...)
	out = append(out, b[header.IPv6MinimumSize+8:]...)
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-header.IPv6MinimumSize))
	return out
}

func TestLinkEndpointReassembles(t *testing.T) {
	data := payload(3000)
	var v4, v6, v6long [][]byte
	for _, fs := range reorder(split(3000, 1256), 2, 0, 1) {
		v4 = append(v4, frag4(data, 3, fs))
		v6 = append(v6, frag6(data, 3, fs))
		v6long = append(v6long, longOpts6(frag6(data, 3, fs)))
	}
	tests := []struct {
		name  string
		rules bool
		in    [][]byte
		want  [][]byte
	}{
		{"v4 with rules", true, v4, [][]byte{whole4(data, 3)}},
		{"v6 with rules", true, v6, [][]byte{whole6(data)}},
		{"v6 behind a 520-byte options header", true, v6long, nil},
		{"no rules: passed as they came", false, v4, v4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fw, _ := New(nil, Config{})
			if tc.rules {
				if _, err := fw.Exec(IPv4, []string{"-A", "INPUT", "-p", "udp", "--dport", "9", "-j", "DROP"}); err != nil {
					t.Fatal(err)
				}
			}
			le := NewLinkEndpoint(channel.New(4, 1280, ""))
			rec := &recorder{}
			le.Attach(rec)
			defer le.Attach(nil)
			fw.AttachLink(le)
			for _, b := range tc.in {
				pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
				le.DeliverNetworkPacket(0, pkt)
				pkt.DecRef()
			}
			if tc.want == nil {
				// One whole datagram, with the long header kept.
				if len(rec.got) != 1 || len(rec.got[0]) != header.IPv6MinimumSize+520+3000 || !bytes.Equal(rec.got[0][len(rec.got[0])-3000:], data) {
					t.Fatalf("delivered %d packets, want the whole datagram", len(rec.got))
				}
				return
			}
			if len(rec.got) != len(tc.want) {
				t.Fatalf("delivered %d packets, want %d", len(rec.got), len(tc.want))
			}
			for i := range tc.want {
				if !bytes.Equal(rec.got[i], tc.want[i]) {
					t.Fatalf("packet %d differs (%d bytes, want %d)", i, len(rec.got[i]), len(tc.want[i]))
				}
			}
		})
	}
}

// BenchmarkLinkTrack is the link stage's per-packet cost without rules:
// conntrack of an established TCP flow's packets, both directions.
func BenchmarkLinkTrack(b *testing.B) {
	ft := newFlowTable(65536)
	out, in := ctPkt(6, false, TCPAck, 0), ctPkt(6, true, TCPAck, 0)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i&1 == 0 {
			ft.observeBytes(out, now)
		} else {
			ft.observeBytes(in, now)
		}
	}
}
