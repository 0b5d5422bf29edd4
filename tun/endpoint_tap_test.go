package tun_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/egress"
	"github.com/tunstack/tunstack/stack/gateway"
	"github.com/tunstack/tunstack/tun"
	"github.com/tunstack/tunstack/tun/ethlink"
)

var (
	tapGuestMAC = []byte{0x02, 0, 0, 0, 0, 0x64}
	tapGwMAC    = []byte{0x52, 0x55, 10, 0, 2, 2}
)

// newTapGateway serves a fake TAP device (Ethernet frames) with the gateway
// and the slirp4netns link layer.
func newTapGateway(t testing.TB, offload bool, v6 ...bool) *fakeTun {
	ft := newFakeTun(t, offload)
	ft.dev.TAP = true
	ep, err := tun.NewEndpoint(ft.dev, 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	v4, _ := gateway.AddressesFor(gateway.DefaultCIDR)
	lc := ethlink.Config{Gateway4: v4.Gateway, DNS4: v4.DNS}
	if len(v6) > 0 && v6[0] {
		a6, _ := gateway.AddressesFor(gateway.DefaultCIDR6)
		lc.Prefix6, lc.Gateway6, lc.DNS6 = a6.Network, a6.Gateway, a6.DNS
	}
	ep.SetLink(ethlink.New(lc))
	st, err := stack.New(stack.Options{NoLocalDelivery: true})
	if err != nil {
		t.Fatal(err)
	}
	nic, err := st.AddNIC(stack.NICConfig{Name: "tap0", Endpoint: ep, Promiscuous: true, Spoofing: true, Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.Start(st, nic, gateway.Config{V4: v4, Dialer: &egress.LoopbackDialer{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gw.Close()
		st.Close()
	})
	return ft
}

func ethFrame(dst []byte, proto uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], tapGuestMAC)
	binary.BigEndian.PutUint16(f[12:], proto)
	return append(f, payload...)
}

// TestTAPEndpoint: on a TAP device the endpoint answers ARP for the
// gateway through the Link, strips Ethernet from what it delivers and
// frames what the stack sends, with and without the virtio header.
func TestTAPEndpoint(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "vnet"}[offload], func(t *testing.T) {
			ft := newTapGateway(t, offload)
			vh := 0
			if offload {
				vh = 10
			}
			send := func(f []byte) {
				if _, err := unix.Write(ft.peer, append(make([]byte, vh), f...)); err != nil {
					t.Fatal(err)
				}
			}
			// Junk must not stop the endpoint: a runt, an unknown
			// EtherType, an Ethernet header alone.
			for _, junk := range [][]byte{{1, 2, 3}, ethFrame(tapGwMAC, 0x88b5, []byte{1, 2, 3}), ethFrame(tapGwMAC, 0x0800, nil)} {
				send(junk)
			}
			arp := make([]byte, header.ARPSize)
			a := header.ARP(arp)
			a.SetIPv4OverEthernet()
			a.SetOp(header.ARPRequest)
			copy(a.HardwareAddressSender(), tapGuestMAC)
			copy(a.ProtocolAddressSender(), []byte{10, 0, 2, 100})
			copy(a.ProtocolAddressTarget(), []byte{10, 0, 2, 2})
			send(ethFrame([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x0806, arp))
			r := readFrame(t, ft.peer)[vh:]
			if !bytes.Equal(r[0:6], tapGuestMAC) || binary.BigEndian.Uint16(r[12:]) != 0x0806 ||
				!bytes.Equal(header.ARP(r[14:]).HardwareAddressSender(), tapGwMAC) {
				t.Fatalf("ARP reply % x", r)
			}
			send(ethFrame(tapGwMAC, 0x0800, echoRequest(netip.MustParseAddr("10.0.2.3"), 5)))
			r = readFrame(t, ft.peer)[vh:]
			if !bytes.Equal(r[0:6], tapGuestMAC) || !bytes.Equal(r[6:12], tapGwMAC) || binary.BigEndian.Uint16(r[12:]) != 0x0800 {
				t.Fatalf("Ethernet header of the reply: % x", r[:14])
			}
			ip := header.IPv4(r[14:])
			if !ip.IsValid(len(r)-14) || ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
				t.Fatalf("reply is not IPv4 ICMP: % x", r)
			}
			if ic := header.ICMPv4(ip.Payload()); ic.Type() != header.ICMPv4EchoReply || ic.Sequence() != 5 {
				t.Fatalf("ICMP type %d seq %d, want an echo reply to seq 5", ic.Type(), ic.Sequence())
			}
		})
	}
}

// TestTAPEndpointAdvertises: with IPv6 the link sends a router
// advertisement as soon as the device is served (the sandbox may have
// solicited before), and its timer stops with the stack (goleak checks).
func TestTAPEndpointAdvertises(t *testing.T) {
	ft := newTapGateway(t, false, true)
	// gVisor's own IPv6 may send a few NDP/MLD packets first.
	for i := 0; i < 20; i++ {
		r := readFrame(t, ft.peer)
		if len(r) > 14+40 && binary.BigEndian.Uint16(r[12:]) == 0x86dd && r[14+6] == 58 && r[14+40] == byte(header.ICMPv6RouterAdvert) {
			return
		}
	}
	t.Fatal("no router advertisement among the first 20 frames")
}
