package netfilter

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ctPkt builds an IPv4 packet between 198.18.0.2:40000 (client) and
// 198.18.0.1:80 for the tracker; fromServer reverses it.
func ctPkt(proto uint8, fromServer bool, flags uint8, icmpType uint8) []byte {
	b := make([]byte, header.IPv4MinimumSize+20)
	src, dst := tcpipAddr4(198, 18, 0, 2), tcpipAddr4(198, 18, 0, 1)
	sp, dp := uint16(40000), uint16(80)
	if fromServer {
		src, dst, sp, dp = dst, src, dp, sp
	}
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: proto, SrcAddr: src, DstAddr: dst})
	th := b[header.IPv4MinimumSize:]
	switch proto {
	case 6, 17:
		binary.BigEndian.PutUint16(th, sp)
		binary.BigEndian.PutUint16(th[2:], dp)
		th[13] = flags
	case 1:
		th[0] = icmpType
		binary.BigEndian.PutUint16(th[4:], 77)
	}
	return b
}

func TestConntrackStates(t *testing.T) {
	const (
		c = false // from the client (original direction)
		s = true  // from the server (reply)
	)
	syn, synack, ack, fin, finack, rst := TCPSyn, TCPSyn|TCPAck, TCPAck, TCPFin, TCPFin|TCPAck, TCPRst
	type p struct {
		from  bool
		flags uint8
		after time.Duration
	}
	tests := []struct {
		name  string
		proto uint8
		pkts  []p
		want  string // the listing line's start after "tcp      6 " etc.
	}{
		{"syn only", 6, []p{{c, syn, 0}}, "tcp      6 120 SYN_SENT src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=80 [UNREPLIED] src=198.18.0.1 dst=198.18.0.2 sport=80 dport=40000 mark=0 use=1"},
		{"syn-ack", 6, []p{{c, syn, 0}, {s, synack, 0}}, "tcp      6 60 SYN_RECV src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=80 src=198.18.0.1 dst=198.18.0.2 sport=80 dport=40000 mark=0 use=1"},
		{"established", 6, []p{{c, syn, 0}, {s, synack, 0}, {c, ack, 0}}, "tcp      6 432000 ESTABLISHED src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=80 src=198.18.0.1 dst=198.18.0.2 sport=80 dport=40000 [ASSURED] mark=0 use=1"},
		{"client close", 6, []p{{c, syn, 0}, {s, synack, 0}, {c, ack, 0}, {c, finack, 0}, {s, ack, 0}, {s, finack, 0}, {c, ack, time.Second}}, "tcp      6 120 TIME_WAIT "},
		{"close wait", 6, []p{{c, syn, 0}, {s, synack, 0}, {c, ack, 0}, {c, fin, 0}, {s, ack, 0}}, "tcp      6 60 CLOSE_WAIT "},
		{"last ack", 6, []p{{c, syn, 0}, {s, synack, 0}, {c, ack, 0}, {s, finack, 0}, {c, finack, 0}}, "tcp      6 30 LAST_ACK "},
		{"reset", 6, []p{{c, syn, 0}, {s, synack, 0}, {c, ack, 0}, {s, rst, 0}}, "tcp      6 10 CLOSE "},
		{"refused: no entry", 6, []p{{c, syn, 0}, {s, rst | ack, 0}}, ""},
		{"mid-stream ack picked up", 6, []p{{c, ack, 0}}, "tcp      6 432000 ESTABLISHED src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=80 [UNREPLIED] "},
		{"udp one way", 17, []p{{c, 0, 0}}, "udp      17 30 src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=80 [UNREPLIED] src=198.18.0.1"},
		{"udp replied at once", 17, []p{{c, 0, 0}, {s, 0, 0}}, "udp      17 30 src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=80 src=198.18.0.1 dst=198.18.0.2 sport=80 dport=40000 mark=0 use=1"},
		{"udp stream", 17, []p{{c, 0, 0}, {s, 0, 0}, {c, 0, 3 * time.Second}}, "udp      17 120 src=198.18.0.2 dst=198.18.0.1 sport=40000 dport=80 src=198.18.0.1 dst=198.18.0.2 sport=80 dport=40000 [ASSURED] mark=0 use=1"},
		{"ping", 1, []p{{c, 8, 0}, {s, 0, 0}}, "icmp     1 30 src=198.18.0.2 dst=198.18.0.1 type=8 code=0 id=77 src=198.18.0.1 dst=198.18.0.2 type=0 code=0 id=77 mark=0 use=1"},
		{"udp expired", 17, []p{{c, 0, 0}, {c, 0, 31 * time.Second}}, "udp      17 30 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFlowTable(100)
			now := time.Now()
			ft.now = func() time.Time { return now }
			for _, pk := range tc.pkts {
				now = now.Add(pk.after)
				flags, typ := pk.flags, uint8(0)
				if tc.proto == 1 {
					typ = pk.flags
				}
				ft.observeBytes(ctPkt(tc.proto, pk.from, flags, typ), now)
			}
			flows := ft.list()
			if tc.want == "" {
				if len(flows) != 0 {
					t.Fatalf("%d flows, want none: %s", len(flows), FormatConntrack(flows))
				}
				return
			}
			if len(flows) != 1 {
				t.Fatalf("%d flows, want 1", len(flows))
			}
			got := strings.SplitN(FormatConntrack(flows), "\n", 2)[0]
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestConntrackBound: at the cap a new flow evicts an unassured one; when
// all are assured the new flow is left untracked and counted.
func TestConntrackBound(t *testing.T) {
	ft := newFlowTable(64)
	now := time.Now()
	udp := func(port uint16, reply bool) []byte {
		b := ctPkt(17, reply, 0, 0)
		off := 20
		if reply {
			off += 2
		}
		binary.BigEndian.PutUint16(b[off:], port)
		return b
	}
	for i := 0; i < 64; i++ {
		ft.observeBytes(udp(uint16(1000+i), false), now)
	}
	ft.observeBytes(udp(5000, false), now)
	if st := ft.stats(); st.Entries != 64 || st.EarlyDrops != 1 || st.Drops != 0 {
		t.Fatalf("unassured at the cap: %+v", st)
	}
	// Make every flow assured (reply, then traffic after 2 s).
	later := now.Add(3 * time.Second)
	for _, f := range ft.list() {
		ft.observeBytes(udp(f.Orig.SrcPort, true), now)
		ft.observeBytes(udp(f.Orig.SrcPort, false), later)
	}
	ft.observeBytes(udp(6000, false), later)
	if st := ft.stats(); st.Entries != 64 || st.Drops != 1 {
		t.Fatalf("all assured at the cap: %+v", st)
	}
}

// TestConntrackExpiresWithoutScans: expired flows leave the table as new
// flows come (one shard reaped per 256 new flows), with no listing.
func TestConntrackExpiresWithoutScans(t *testing.T) {
	ft := newFlowTable(1 << 20)
	now := time.Now()
	flood := func(n int, base uint32) {
		for i := 0; i < n; i++ {
			b := ctPkt(17, false, 0, 0)
			binary.BigEndian.PutUint32(b[12:], base+uint32(i)) // a new source each
			ft.observeBytes(b, now)
		}
	}
	flood(300, 0x0a000000)
	now = now.Add(31 * time.Second)
	flood(256*flowShards, 0x0b000000)
	if st := ft.stats(); st.Entries != 256*flowShards {
		t.Fatalf("after the UDP timeout and %d new flows: %+v (the 300 expired ones should be gone)", 256*flowShards, st)
	}
}

// TestConntrackConcurrent: packet goroutines at the bound, with replies
// and listings alongside, keep the count exact (run with -race).
func TestConntrackConcurrent(t *testing.T) {
	ft := newFlowTable(256)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := time.Now()
			for i := 0; i < 3000; i++ {
				b := ctPkt(17, false, 0, 0)
				binary.BigEndian.PutUint32(b[12:], uint32(g)<<24|uint32(i))
				ft.observeBytes(b, now)
				if i%3 == 0 {
					r := ctPkt(17, true, 0, 0)
					binary.BigEndian.PutUint32(r[16:], uint32(g)<<24|uint32(i))
					ft.observeBytes(r, now.Add(3*time.Second))
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			ft.list()
		}
	}()
	wg.Wait()
	flows := ft.list()
	if st := ft.stats(); st.Entries != len(flows) || st.Entries > 256 {
		t.Fatalf("count %d, listed %d, max 256 (%+v)", st.Entries, len(flows), st)
	}
}

// TestFormatConntrackExtended checks conntrack -o extended's layer 3
// column: name in 8 columns, then the address family's number.
func TestFormatConntrackExtended(t *testing.T) {
	v4 := Flow{Family: IPv4, Protocol: 17, Timeout: 30 * time.Second, Unreplied: true,
		Orig:  Tuple{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), 1000, 53},
		Reply: Tuple{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1"), 53, 1000}}
	v6 := Flow{Family: IPv6, Protocol: 6, State: "ESTABLISHED", Timeout: 100 * time.Second, ReplyPackets: 1, Assured: true,
		Orig:  Tuple{netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2"), 40000, 80},
		Reply: Tuple{netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2::1"), 80, 40000}}
	for _, tc := range []struct {
		f        Flow
		extended bool
		want     string
	}{
		{v4, false, "udp      17 30 src=198.18.0.1 dst=198.18.0.2 sport=1000 dport=53 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=53 dport=1000 mark=0 use=1"},
		{v4, true, "ipv4     2 udp      17 30 src=198.18.0.1 dst=198.18.0.2 sport=1000 dport=53 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=53 dport=1000 mark=0 use=1"},
		{v6, true, "ipv6     10 tcp      6 100 ESTABLISHED src=2001:2::1 dst=2001:2::2 sport=40000 dport=80 src=2001:2::2 dst=2001:2::1 sport=80 dport=40000 [ASSURED] mark=0 use=1"},
	} {
		got, _, _ := strings.Cut(FormatConntrackWith([]Flow{tc.f}, ConntrackFormat{Extended: tc.extended}), "\n")
		if got != tc.want {
			t.Errorf("extended=%v:\n got %q\nwant %q", tc.extended, got, tc.want)
		}
	}
}
