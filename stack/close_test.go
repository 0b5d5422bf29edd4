package stack_test

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack"
)

// floodLink is a link endpoint whose reader goroutine delivers the same
// inbound packet over and over while it is attached, the way a TUN reader
// delivers the packets that are still queued when the stack closes. Wait
// waits for that goroutine, as a TUN endpoint's Wait does.
type floodLink struct {
	*channel.Endpoint
	pkt []byte

	mu        sync.Mutex // guards d
	d         gstack.NetworkDispatcher
	wg        sync.WaitGroup
	delivered atomic.Int64
}

func (l *floodLink) Attach(d gstack.NetworkDispatcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := l.d == nil && d != nil
	l.d = d
	if start {
		l.wg.Add(1)
		go l.read()
	}
}

func (l *floodLink) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d != nil
}

func (l *floodLink) Wait() { l.wg.Wait() }

func (l *floodLink) read() {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		d := l.d
		l.mu.Unlock()
		if d == nil {
			return
		}
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(l.pkt)})
		d.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
		pkt.DecRef()
		l.delivered.Add(1)
	}
}

// syn4 is a TCP SYN from src to dst.
func syn4(src, dst netip.AddrPort) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(b[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{
		SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagSyn, WindowSize: 65535,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), header.TCPMinimumSize)
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	return b
}

// TestCloseWhilePacketsArrive: Close returns while the link's reader is
// still delivering packets that the firewall's hooks evaluate. The hooks
// ask the stack for the input interface's name, which takes the stack's
// lock; gVisor's Stack.Wait holds that lock while it waits for the link's
// reader, so a reader caught in a hook at that moment deadlocked Close
// (seen as "tunstack run" never exiting after its command had).
func TestCloseWhilePacketsArrive(t *testing.T) {
	pkt := syn4(netip.MustParseAddrPort("198.18.0.100:40000"), netip.MustParseAddrPort("198.18.0.2:80"))
	for i := range 20 {
		s, err := stack.New(stack.Options{NoLocalDelivery: true})
		if err != nil {
			t.Fatal(err)
		}
		fl := &floodLink{Endpoint: channel.New(16, 1500, ""), pkt: pkt}
		link := netfilter.NewLinkEndpoint(fl)
		if _, err := s.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: link, Promiscuous: true, Spoofing: true}); err != nil {
			t.Fatal(err)
		}
		fw, err := netfilter.New(s, netfilter.Config{Gateway: true, HostInterface: "host"})
		if err != nil {
			t.Fatal(err)
		}
		fw.AttachLink(link)
		if _, err := fw.Exec(netfilter.IPv4, []string{"-A", "INPUT", "-i", "tun0", "-p", "tcp", "--dport", "81", "-j", "DROP"}); err != nil {
			t.Fatal(err)
		}
		// Packets are flowing through the hooks.
		for deadline := time.Now().Add(10 * time.Second); fl.delivered.Load() < 100; {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d packets delivered in 10 s", i, fl.delivered.Load())
			}
			time.Sleep(time.Millisecond)
		}
		closed := make(chan struct{})
		go func() {
			s.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Stack.Close did not return within 10 s while packets arrived (%d delivered)", i, fl.delivered.Load())
		}
		fl.Endpoint.Close()
	}
}
