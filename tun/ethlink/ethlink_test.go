package ethlink

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	guestMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x64}
	guest4   = netip.MustParseAddr("10.0.2.100")
	guestLL  = netip.MustParseAddr("fe80::64")
)

func testLink() *Link {
	return New(Config{
		Gateway4: netip.MustParseAddr("10.0.2.2"), DNS4: netip.MustParseAddr("10.0.2.3"),
		Prefix6:  netip.MustParsePrefix("fd00::/64"),
		Gateway6: netip.MustParseAddr("fd00::2"), DNS6: netip.MustParseAddr("fd00::3"), MTU: 65520,
	})
}

func arpRequest(target netip.Addr) []byte {
	f := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], guestMAC)
	binary.BigEndian.PutUint16(f[12:], uint16(header.ARPProtocolNumber))
	a := header.ARP(f[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), guestMAC)
	copy(a.ProtocolAddressSender(), guest4.AsSlice())
	copy(a.ProtocolAddressTarget(), target.AsSlice())
	return f
}

// input feeds one frame and returns the replies.
func input(l *Link, frame []byte) (consumed bool, replies [][]byte) {
	consumed = l.Input(frame, len(frame), func(b []byte) { replies = append(replies, append([]byte(nil), b...)) })
	return consumed, replies
}

func TestARP(t *testing.T) {
	tests := []struct {
		target  string
		wantMAC net.HardwareAddr // nil: no answer
	}{
		{"10.0.2.2", net.HardwareAddr{0x52, 0x55, 10, 0, 2, 2}},
		{"10.0.2.3", net.HardwareAddr{0x52, 0x55, 10, 0, 2, 3}},
		{"10.0.2.100", nil}, // the guest's own address
		{"10.0.2.50", nil},  // nobody
		{"198.18.0.1", nil},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			consumed, replies := input(testLink(), arpRequest(netip.MustParseAddr(tc.target)))
			if !consumed {
				t.Fatal("ARP frame passed to the stack")
			}
			if tc.wantMAC == nil {
				if len(replies) != 0 {
					t.Fatalf("answered ARP for %s: %x", tc.target, replies)
				}
				return
			}
			if len(replies) != 1 {
				t.Fatalf("%d replies, want 1", len(replies))
			}
			r := replies[0]
			eth := header.Ethernet(r)
			if eth.DestinationAddress() != tcpip.LinkAddress(guestMAC) || eth.SourceAddress() != tcpip.LinkAddress(tc.wantMAC) || eth.Type() != header.ARPProtocolNumber {
				t.Fatalf("ethernet header %x", r[:14])
			}
			a := header.ARP(r[14:])
			if !a.IsValid() || a.Op() != header.ARPReply || !bytes.Equal(a.HardwareAddressSender(), tc.wantMAC) ||
				!bytes.Equal(a.ProtocolAddressSender(), netip.MustParseAddr(tc.target).AsSlice()) ||
				!bytes.Equal(a.HardwareAddressTarget(), guestMAC) || !bytes.Equal(a.ProtocolAddressTarget(), guest4.AsSlice()) {
				t.Fatalf("bad ARP reply %x", r[14:])
			}
		})
	}
}

// icmp6Frame builds a frame from the guest carrying an ICMPv6 message.
func icmp6Frame(src, dst netip.Addr, body []byte) []byte {
	l := &Link{}
	var mac [6]byte
	copy(mac[:], guestMAC)
	f := l.frame([]byte{0x33, 0x33, 0, 0, 0, 2}, mac, src, dst, body)
	return f
}

func neighborSolicit(target netip.Addr) []byte {
	b := make([]byte, header.ICMPv6NeighborSolicitMinimumSize)
	b[0] = byte(header.ICMPv6NeighborSolicit)
	copy(b[8:], target.AsSlice())
	return b
}

// checkICMPv6 parses a reply frame and verifies its checksum.
func checkICMPv6(t *testing.T, r []byte) (header.IPv6, header.ICMPv6) {
	t.Helper()
	if header.Ethernet(r).Type() != header.IPv6ProtocolNumber {
		t.Fatalf("not IPv6: %x", r[:14])
	}
	ip := header.IPv6(r[14:])
	if ip.HopLimit() != 255 || tcpip.TransportProtocolNumber(ip.NextHeader()) != header.ICMPv6ProtocolNumber || int(ip.PayloadLength()) != len(ip)-header.IPv6MinimumSize {
		t.Fatalf("bad IPv6 header %x", r[14:54])
	}
	icmp := header.ICMPv6(ip.Payload())
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()})
	if icmp.Checksum() != want {
		t.Fatalf("ICMPv6 checksum %#x, want %#x", icmp.Checksum(), want)
	}
	return ip, icmp
}

func TestNeighborSolicit(t *testing.T) {
	tests := []struct {
		target, src string
		wantMAC     net.HardwareAddr
	}{
		{"fd00::2", "fe80::64", net.HardwareAddr{0x52, 0x56, 0, 0, 0, 2}},
		{"fd00::3", "fd00::64", net.HardwareAddr{0x52, 0x56, 0, 0, 0, 3}},
		{"fe80::2", "fe80::64", net.HardwareAddr{0x52, 0x56, 0, 0, 0, 2}},
		{"fd00::2", "::", nil},          // duplicate address detection
		{"fd00::abcd", "fe80::64", nil}, // someone else
	}
	for _, tc := range tests {
		t.Run(tc.target+" from "+tc.src, func(t *testing.T) {
			target := netip.MustParseAddr(tc.target)
			consumed, replies := input(testLink(), icmp6Frame(netip.MustParseAddr(tc.src), target, neighborSolicit(target)))
			if !consumed {
				t.Fatal("neighbour solicitation passed to the stack")
			}
			if tc.wantMAC == nil {
				if len(replies) != 0 {
					t.Fatalf("answered: %x", replies)
				}
				return
			}
			if len(replies) != 1 {
				t.Fatalf("%d replies, want 1", len(replies))
			}
			ip, icmp := checkICMPv6(t, replies[0])
			if icmp.Type() != header.ICMPv6NeighborAdvert || ip.DestinationAddress() != tcpip.AddrFrom16(netip.MustParseAddr(tc.src).As16()) {
				t.Fatalf("reply type %d to %s", icmp.Type(), ip.DestinationAddress())
			}
			na := header.NDPNeighborAdvert(icmp.MessageBody())
			if na.TargetAddress() != tcpip.AddrFrom16(target.As16()) || !na.SolicitedFlag() || !na.OverrideFlag() {
				t.Fatalf("bad advert %x", icmp)
			}
			opt := icmp.MessageBody()[header.NDPNAMinimumSize:]
			if opt[0] != 2 || opt[1] != 1 || !bytes.Equal(opt[2:8], tc.wantMAC) {
				t.Fatalf("target link-layer option %x, want %s", opt, tc.wantMAC)
			}
		})
	}
}

func TestRouterSolicit(t *testing.T) {
	rs := make([]byte, header.ICMPv6MinimumSize+4)
	rs[0] = byte(header.ICMPv6RouterSolicit)
	consumed, replies := input(testLink(), icmp6Frame(guestLL, netip.MustParseAddr("ff02::2"), rs))
	if !consumed || len(replies) != 1 {
		t.Fatalf("consumed %v, %d replies", consumed, len(replies))
	}
	ip, icmp := checkICMPv6(t, replies[0])
	if icmp.Type() != header.ICMPv6RouterAdvert || ip.SourceAddress() != tcpip.AddrFrom16(RouterLinkLocal.As16()) {
		t.Fatalf("type %d from %s", icmp.Type(), ip.SourceAddress())
	}
	ra := header.NDPRouterAdvert(icmp.MessageBody())
	if ra.RouterLifetime() == 0 {
		t.Fatal("router lifetime 0: not a default router")
	}
	it, err := ra.Options().Iter(true)
	if err != nil {
		t.Fatal(err)
	}
	var prefix, mtu, rdnss bool
	for {
		opt, done, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		switch o := opt.(type) {
		case header.NDPPrefixInformation:
			prefix = o.Subnet().String() == "fd00::/64" && o.OnLinkFlag() && o.AutonomousAddressConfigurationFlag() && o.ValidLifetime() > 0
		case header.NDPRecursiveDNSServer:
			addrs, _ := o.Addresses()
			rdnss = len(addrs) == 1 && addrs[0] == tcpip.AddrFrom16(netip.MustParseAddr("fd00::3").As16())
		}
	}
	// gVisor does not parse the MTU option: walk the options by hand.
	for o := icmp.MessageBody()[header.NDPRAMinimumSize:]; len(o) >= 8 && o[1] > 0; o = o[int(o[1])*8:] {
		if o[0] == 5 && binary.BigEndian.Uint32(o[4:]) == 65520 {
			mtu = true
		}
	}
	if !prefix || !mtu || !rdnss {
		t.Fatalf("advertisement lacks options: prefix %v mtu %v rdnss %v (%x)", prefix, mtu, rdnss, icmp)
	}
}

func TestHeaderLearnsGuest(t *testing.T) {
	l := testLink()
	h := l.Header(header.IPv4ProtocolNumber)
	if !bytes.Equal(h[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		t.Fatalf("before any frame, destination %x, want broadcast", h[0:6])
	}
	input(l, arpRequest(netip.MustParseAddr("10.0.2.2")))
	h = l.Header(header.IPv4ProtocolNumber)
	if !bytes.Equal(h[0:6], guestMAC) || !bytes.Equal(h[6:12], []byte{0x52, 0x55, 10, 0, 2, 2}) || binary.BigEndian.Uint16(h[12:]) != 0x0800 {
		t.Fatalf("header %x", h)
	}
	h = l.Header(header.IPv6ProtocolNumber)
	if !bytes.Equal(h[6:12], []byte{0x52, 0x56, 0, 0, 0, 2}) || binary.BigEndian.Uint16(h[12:]) != 0x86dd {
		t.Fatalf("IPv6 header %x", h)
	}
	// An IPv4 packet is the stack's.
	f := make([]byte, 14+20)
	copy(f[6:12], guestMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	if consumed, _ := input(l, f); consumed {
		t.Fatal("IPv4 frame consumed by the link")
	}
	// A configured MAC is used before any frame.
	l = New(Config{Gateway4: netip.MustParseAddr("10.0.2.2"), GuestMAC: guestMAC})
	if h := l.Header(header.IPv4ProtocolNumber); !bytes.Equal(h[0:6], guestMAC) {
		t.Fatalf("configured guest MAC not used: %x", h)
	}
}

// TestRunAdvertises: unsolicited advertisements go out at once and then
// periodically (the sandbox's default route would lapse otherwise), and
// Run returns when stopped; without IPv6 it sends nothing.
func TestRunAdvertises(t *testing.T) {
	l := testLink()
	l.cfg.AdvertInterval = 10 * time.Millisecond
	frames := make(chan []byte, 100)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		l.Run(stop, func(b []byte) { frames <- b })
		close(done)
	}()
	for i := 0; i < 3; i++ {
		select {
		case f := <-frames:
			if _, icmp := checkICMPv6(t, f); icmp.Type() != header.ICMPv6RouterAdvert {
				t.Fatalf("frame %d is ICMPv6 type %d", i, icmp.Type())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d advertisements", i)
		}
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when stopped")
	}
	l4 := New(Config{Gateway4: netip.MustParseAddr("10.0.2.2")})
	l4.Run(make(chan struct{}), func([]byte) { t.Error("IPv4-only link advertised") })
}
