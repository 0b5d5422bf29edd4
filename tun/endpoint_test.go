package tun_test

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/egress"
	"github.com/tunstack/tunstack/stack/gateway"
	"github.com/tunstack/tunstack/tun"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTun is a SOCK_SEQPACKET pair standing in for a TUN device: like a
// TUN it keeps frame boundaries, and it needs no privileges.
type fakeTun struct {
	dev  *tun.Device
	peer int
}

func newFakeTun(t testing.TB, offload bool) *fakeTun {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[0], true)
	// The test side polls (readFrame), so a missing reply fails the test
	// instead of blocking it.
	unix.SetNonblock(fds[1], true)
	f := &fakeTun{dev: &tun.Device{File: os.NewFile(uintptr(fds[0]), "fake-tun"), Name: "tun0", Offload: offload}, peer: fds[1]}
	t.Cleanup(func() { unix.Close(fds[1]) })
	return f
}

// newGateway serves a fake TUN with the sandbox gateway (loopback-only
// egress) and returns the stack.
func newGateway(t testing.TB, ft *fakeTun) *stack.Stack {
	ep, err := tun.NewEndpoint(ft.dev, 65520, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stack.New(stack.Options{NoLocalDelivery: true})
	if err != nil {
		t.Fatal(err)
	}
	nic, err := st.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: ep, Promiscuous: true, Spoofing: true, Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	v4, _ := gateway.AddressesFor(gateway.DefaultCIDR)
	v6, _ := gateway.AddressesFor(gateway.DefaultCIDR6)
	gw, err := gateway.Start(st, nic, gateway.Config{V4: v4, V6: v6, Dialer: &egress.LoopbackDialer{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gw.Close()
		st.Close()
	})
	return st
}

// echoRequest builds an IPv4 ICMP echo request from the sandbox to dst.
func echoRequest(dst netip.Addr, seq uint16) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+8)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: stack.Addr(netip.MustParseAddr("10.0.2.100")), DstAddr: stack.Addr(dst),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	ic.SetType(header.ICMPv4Echo)
	ic.SetIdent(77)
	ic.SetSequence(seq)
	copy(ic[header.ICMPv4MinimumSize:], "tunstack")
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	return pkt
}

func TestEndpointDeliversAndWrites(t *testing.T) {
	for _, offload := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "vnet"}[offload]
		t.Run(name, func(t *testing.T) {
			ft := newFakeTun(t, offload)
			newGateway(t, ft)
			frame := echoRequest(netip.MustParseAddr("10.0.2.3"), 9)
			if offload {
				frame = append(make([]byte, 10), frame...)
			}
			// Garbage first: a frame that is only a virtio header, a
			// truncated IPv4 header, a non-IP version. None may stop
			// the endpoint.
			for _, junk := range [][]byte{make([]byte, 10), {0x45, 0, 0}, {0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}} {
				unix.Write(ft.peer, junk)
			}
			if _, err := unix.Write(ft.peer, frame); err != nil {
				t.Fatal(err)
			}
			reply := readFrame(t, ft.peer)
			if offload {
				reply = reply[10:]
			}
			ip := header.IPv4(reply)
			if !ip.IsValid(len(reply)) || ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
				t.Fatalf("reply is not IPv4 ICMP: % x", reply)
			}
			ic := header.ICMPv4(ip.Payload())
			if ic.Type() != header.ICMPv4EchoReply || ic.Sequence() != 9 || string(ic.Payload()) != "tunstack" {
				t.Fatalf("got ICMP type %d seq %d payload %q, want an echo reply to seq 9", ic.Type(), ic.Sequence(), ic.Payload())
			}
		})
	}
}

func readFrame(t testing.TB, fd int) []byte {
	t.Helper()
	buf := make([]byte, 70000)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if err == nil {
			return buf[:n]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no frame written by the stack within 5 s")
	return nil
}

// FuzzInboundFrame feeds arbitrary frames to a gateway stack through both
// endpoint modes, on TUN and TAP devices: nothing may crash it, and it must still answer afterwards.
func FuzzInboundFrame(f *testing.F) {
	f.Add(echoRequest(netip.MustParseAddr("10.0.2.2"), 1))
	f.Add(echoRequest(netip.MustParseAddr("198.18.0.9"), 2))
	f.Add([]byte{0x45, 0, 0, 20})
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 6, 64})
	f.Add(make([]byte, 10))
	plain, vnet := newFakeTun(f, false), newFakeTun(f, true)
	newGateway(f, plain)
	newGateway(f, vnet)
	// TAP devices: the same bytes read as Ethernet frames.
	tapPlain, tapVnet := newTapGateway(f, false), newTapGateway(f, true)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) == 0 || len(frame) > 65000 {
			return
		}
		// Never block: a full socket buffer just drops the input.
		unix.Send(plain.peer, frame, unix.MSG_DONTWAIT)
		unix.Send(vnet.peer, frame, unix.MSG_DONTWAIT)
		unix.Send(tapPlain.peer, frame, unix.MSG_DONTWAIT)
		unix.Send(tapVnet.peer, frame, unix.MSG_DONTWAIT)
	})
}
