package capture

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tunstack/tunstack/stack"
)

// pingStack is a stack at 10.0.2.2 behind a capture tap on a channel link.
func pingStack(t *testing.T) (*Endpoint, *channel.Endpoint) {
	t.Helper()
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch := channel.New(64, 1500, "")
	tap := NewEndpoint(ch)
	nic, err := st.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: tap, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.2.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDefaultRoutes(nic)
	t.Cleanup(func() {
		st.Close()
		ch.Close()
	})
	return tap, ch
}

func inject(ch *channel.Endpoint, p []byte) {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
	ch.InjectInbound(header.IPv4ProtocolNumber, pkt)
	pkt.DecRef()
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTapSeesBothDirections(t *testing.T) {
	tap, ch := pingStack(t)
	// Nobody listens: packets pass without a copy.
	inject(ch, icmpEcho("10.0.2.100", "10.0.2.2"))
	drain(t, ch, 1)

	all := tap.Subscribe(nil, 0, 16)
	defer all.Close()
	f, err := ParseFilter("icmp and src host 10.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	replies := tap.Subscribe(f, 30, 16)
	inject(ch, icmpEcho("10.0.2.100", "10.0.2.2"))
	drain(t, ch, 1)

	in, out := recv(t, all), recv(t, all)
	if in.Dir != In || out.Dir != Out {
		t.Fatalf("directions %v, %v: want In then Out", in.Dir, out.Dir)
	}
	if got := FormatPacket(in); !strings.Contains(got, "IP 10.0.2.100 > 10.0.2.2: ICMP echo request, id 7, seq 1") {
		t.Errorf("request printed as %q", got)
	}
	if got := FormatPacket(out); !strings.Contains(got, "IP 10.0.2.2 > 10.0.2.100: ICMP echo reply, id 7, seq 1") {
		t.Errorf("reply printed as %q", got)
	}
	r := recv(t, replies)
	if len(r.Data) != 30 || r.Len != out.Len {
		t.Errorf("snapped reply has %d of %d bytes, want 30 of %d", len(r.Data), r.Len, out.Len)
	}
	select {
	case p := <-replies.C():
		t.Errorf("filtered subscription got a second packet: %s", FormatPacket(p))
	default:
	}
	replies.Close()
	replies.Close() // idempotent
	if _, ok := <-replies.C(); ok {
		t.Error("closed subscription's channel is open")
	}
}

func TestTapSlowSubscriberDrops(t *testing.T) {
	tap, ch := pingStack(t)
	s := tap.Subscribe(nil, 0, 1)
	defer s.Close()
	for range 3 {
		inject(ch, icmpEcho("10.0.2.100", "10.0.2.2"))
		drain(t, ch, 1)
	}
	if s.Dropped() != 5 || s.Matched() != 6 {
		t.Errorf("matched %d, dropped %d; want 6 and 5 with a queue of 1", s.Matched(), s.Dropped())
	}
}

func icmpEcho(src, dst string) []byte {
	p := testPacket(protoICMP, src, dst, 0, 0, 8)
	// ICMP checksum, which the stack verifies.
	icmp := p[20:]
	var sum uint32
	for i := 0; i+1 < len(icmp); i += 2 {
		sum += uint32(icmp[i])<<8 | uint32(icmp[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	c := ^uint16(sum)
	icmp[2], icmp[3] = byte(c>>8), byte(c)
	return p
}

func drain(t *testing.T, ch *channel.Endpoint, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n > 0 {
		if pkt := ch.Read(); pkt != nil {
			pkt.DecRef()
			n--
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack sent no reply")
		}
		time.Sleep(time.Millisecond)
	}
}

func recv(t *testing.T, s *Subscription) Packet {
	t.Helper()
	select {
	case p := <-s.C():
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet captured")
	}
	return Packet{}
}

func TestPcapRoundTripAndTcpdump(t *testing.T) {
	var buf bytes.Buffer
	pw, err := NewPcapWriter(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Unix(1700000000, 123456000)
	corpus := filterCorpus()
	for _, p := range corpus {
		if err := pw.WritePacket(Packet{Time: when, Data: p, Len: len(p)}); err != nil {
			t.Fatal(err)
		}
	}
	raw := append([]byte(nil), buf.Bytes()...)
	pr, err := NewPcapReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if pr.LinkType != LinkTypeRaw || pr.SnapLen != DefaultSnapLen {
		t.Errorf("header: linktype %d snaplen %d", pr.LinkType, pr.SnapLen)
	}
	var ours []string
	for i := range corpus {
		p, err := pr.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !p.Time.Equal(when) || !bytes.Equal(p.Data, corpus[i]) {
			t.Errorf("record %d differs after a round trip", i)
		}
		ours = append(ours, FormatPacket(p))
	}
	if _, err := pr.Next(); err == nil {
		t.Error("no EOF after the last record")
	}
	if _, err := NewPcapReader(strings.NewReader("not a pcap file at all!!")); err == nil {
		t.Error("NewPcapReader accepted garbage")
	}

	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed")
	}
	cmd := exec.Command(tcpdump, "-nr", "-", "-t", "-S")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(corpus) {
		t.Fatalf("tcpdump read %d packets, want %d:\n%s", len(lines), len(corpus), out)
	}
	// Our printer is tcpdump's layout: the TCP, ICMP and address parts
	// agree word for word up to the length.
	for i, l := range lines {
		if head := strings.SplitN(ours[i], ":", 2)[0]; !strings.HasPrefix(l, head) {
			t.Errorf("packet %d: tcpdump %q, ours %q", i, l, ours[i])
		}
	}
}

func TestCompleteChecksum(t *testing.T) {
	mk := func(proto uint8, partial bool) []byte {
		b := make([]byte, 20+20+5)
		b[0], b[9] = 0x45, proto
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		copy(b[12:], []byte{10, 0, 2, 100})
		copy(b[16:], []byte{198, 18, 0, 1})
		seg := b[20:]
		binary.BigEndian.PutUint16(seg[0:], 40000)
		binary.BigEndian.PutUint16(seg[2:], 443)
		off := 16
		if proto == 17 {
			binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)))
			off = 6
		} else {
			seg[12] = 5 << 4
		}
		copy(seg[len(seg)-5:], "hello")
		src, dst := tcpip.AddrFrom4([4]byte{10, 0, 2, 100}), tcpip.AddrFrom4([4]byte{198, 18, 0, 1})
		pseudo := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(seg)))
		if partial {
			// What checksum offload leaves: the pseudo-header sum only.
			binary.BigEndian.PutUint16(seg[off:], pseudo)
		} else {
			binary.BigEndian.PutUint16(seg[off:], ^checksum.Checksum(seg, pseudo))
		}
		return b
	}
	verifies := func(b []byte) bool {
		src, dst := tcpip.AddrFrom4([4]byte(b[12:16])), tcpip.AddrFrom4([4]byte(b[16:20]))
		pseudo := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(b[9]), src, dst, uint16(len(b)-20))
		return checksum.Checksum(b[20:], pseudo) == 0xffff
	}
	for _, proto := range []uint8{6, 17} {
		for _, partial := range []bool{true, false} {
			b := mk(proto, partial)
			want := append([]byte(nil), b...)
			var d decoded
			d.decode(b)
			completeChecksum(b, &d)
			if !verifies(b) {
				t.Errorf("proto %d partial=%v: checksum does not verify after completeChecksum", proto, partial)
			}
			if !partial && !bytes.Equal(b, want) {
				t.Errorf("proto %d: a correct checksum was changed", proto)
			}
		}
	}
	// A packet cut by the snapshot length is left alone.
	b := mk(6, true)
	cut := b[:30]
	var d decoded
	d.decode(cut)
	before := append([]byte(nil), cut...)
	completeChecksum(cut, &d)
	if !bytes.Equal(cut, before) {
		t.Error("a truncated packet was changed")
	}
}
