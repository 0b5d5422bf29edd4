package instance

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack/capture"
)

func hostTapStack(t *testing.T, nic string, ep gstack.LinkEndpoint, addrs ...string) *gstack.Stack {
	t.Helper()
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol},
	})
	if err := s.CreateNICWithOptions(1, ep, gstack.NICOptions{Name: nic}); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFromSlice(netip.MustParseAddr(a).AsSlice()), PrefixLen: 24}}
		if err := s.AddProtocolAddress(1, pa, gstack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	t.Cleanup(func() { s.Close(); s.Wait() })
	return s
}

func hostTapServe(t *testing.T, s *gstack.Stack, addr string, port uint16) {
	l, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(netip.MustParseAddr(addr).AsSlice()), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
}

func hostTapDial(s *gstack.Stack, addr string, port uint16, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(netip.MustParseAddr(addr).AsSlice()), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

type seenTCP struct {
	dir      capture.Direction
	src, dst netip.AddrPort
}

// TestHostCaptureAfterFilterAndNAT: the host tap sees packets after the
// filter tables accepted them, so after DNAT (the new destination) and
// never a DROPped packet; replies show the pre-POSTROUTING source; the
// hooks exist only while a capture is open.
func TestHostCaptureAfterFilterAndNAT(t *testing.T) {
	a, b := pipe.New("", "", 1500)
	client := hostTapStack(t, "eth0", a, "10.0.2.100")
	server := hostTapStack(t, "tun0", b, "10.0.2.2", "198.18.0.1")
	gw := tcpip.AddrFromSlice(netip.MustParseAddr("10.0.2.2").AsSlice())
	fw, err := netfilter.NewGVisor(server, netfilter.Config{Gateway: true, HostInterface: HostInterface,
		IsLocal: func(x tcpip.Address) bool { return x == gw }})
	if err != nil {
		t.Fatal(err)
	}
	hostTapServe(t, server, "10.0.2.2", 8080)
	hostTapServe(t, server, "10.0.2.2", 81)
	hostTapServe(t, server, "198.18.0.1", 80)
	for _, r := range [][]string{
		{"-t", "nat", "-A", "PREROUTING", "-d", "10.0.2.2", "-p", "tcp", "--dport", "90", "-j", "DNAT", "--to-destination", "10.0.2.2:8080"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "81", "-j", "DROP"},
		{"-A", "FORWARD", "-o", HostInterface, "-p", "tcp", "--dport", "80", "-j", "ACCEPT"},
	} {
		if _, err := fw.Exec(netfilter.IPv4, r); err != nil {
			t.Fatalf("iptables %v: %v", r, err)
		}
	}

	hc := newHostCapture(fw)
	if hc.active() {
		t.Fatal("hooks registered with no capture open")
	}
	sub, err := hc.Subscribe(nil, 0, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// A second capture shares the hooks; closing it leaves them.
	sub2, err := hc.Subscribe(nil, 0, 1024)
	if err != nil {
		t.Fatal(err)
	}
	sub2.Close()
	if !hc.active() {
		t.Fatal("hooks removed while a capture is still open")
	}

	if got, err := hostTapDial(client, "10.0.2.2", 90, 2*time.Second); err != nil || got != "hello" {
		t.Fatalf("DNAT 90 → 8080: got %q, %v", got, err)
	}
	if got, err := hostTapDial(client, "198.18.0.1", 80, 2*time.Second); err != nil || got != "hello" {
		t.Fatalf("forwarded: got %q, %v", got, err)
	}
	if _, err := hostTapDial(client, "10.0.2.2", 81, 300*time.Millisecond); err == nil {
		t.Fatal("port 81 should be dropped")
	}
	sub.Close()
	if hc.active() {
		t.Fatal("hooks still registered after the last capture closed")
	}

	var seen []seenTCP
	for p := range sub.C() {
		ip := header.IPv4(p.Data)
		if !ip.IsValid(len(p.Data)) || ip.TransportProtocol() != header.TCPProtocolNumber {
			t.Fatalf("captured packet is not IPv4/TCP: % x", p.Data[:min(len(p.Data), 40)])
		}
		th := header.TCP(ip.Payload())
		src, _ := netip.AddrFromSlice(ip.SourceAddressSlice())
		dst, _ := netip.AddrFromSlice(ip.DestinationAddressSlice())
		seen = append(seen, seenTCP{p.Dir, netip.AddrPortFrom(src, th.SourcePort()), netip.AddrPortFrom(dst, th.DestinationPort())})
	}
	has := func(dir capture.Direction, src, dst string) bool {
		for _, s := range seen {
			if s.dir == dir && (src == "" || s.src.String() == src) && (dst == "" || s.dst.String() == dst) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		dir      capture.Direction
		src, dst string
		want     bool
		what     string
	}{
		{capture.In, "", "10.0.2.2:8080", true, "DNATed packets with the new destination (INPUT)"},
		{capture.Out, "10.0.2.2:8080", "", true, "replies before POSTROUTING's reverse NAT (OUTPUT)"},
		{capture.In, "", "10.0.2.2:90", false, "the pre-DNAT destination"},
		{capture.Out, "10.0.2.2:90", "", false, "replies after the reverse NAT"},
		{capture.In, "", "10.0.2.2:81", false, "packets DROPped in INPUT"},
		{capture.Out, "10.0.2.2:81", "", false, "answers to DROPped packets"},
		{capture.In, "", "198.18.0.1:80", true, "sandbox egress (FORWARD)"},
		{capture.Out, "198.18.0.1:80", "", true, "replies to sandbox egress (FORWARD)"},
	} {
		if got := has(c.dir, c.src, c.dst); got != c.want {
			t.Errorf("%s: seen=%v, want %v (captured %v)", c.what, got, c.want, seen)
		}
	}
}
