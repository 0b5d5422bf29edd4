package netfilter

import (
	"encoding/binary"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// fuzzRules exercise every stage a frame can reach: reassembly (loaded
// rules), port and flag matches, conntrack, LOG, REJECT and marks.
const fuzzRules = "*mangle\n-A PREROUTING -p udp -j MARK --set-mark 7\nCOMMIT\n" +
	"*filter\n:INPUT ACCEPT [0:0]\n" +
	"-A INPUT -m conntrack --ctstate INVALID -j LOG --log-prefix \"inv \"\n" +
	"-A INPUT -p udp --dport 9999 -j DROP\n" +
	"-A INPUT -p tcp --syn --dport 81 -j REJECT --reject-with tcp-reset\n" +
	"-A INPUT -p icmp -m limit --limit 10/second -j ACCEPT\n" +
	"-A INPUT -p tcp --dport 80 -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT\n" +
	"COMMIT\n"

// FuzzFramesWithRules feeds arbitrary frames (whole packets and
// fragments) into a stack with rules loaded and fragment reassembly on,
// then checks the stack still answers a TCP connection. The stacks are
// joined in memory: nothing leaves the process.
func FuzzFramesWithRules(f *testing.F) {
	a, b := pipe.New("", "", 1500)
	le := NewLinkEndpoint(b)
	client := newGStack(f, "eth0", a, clientAddr)
	server := newGStack(f, "tun0", le, serverAddr)
	p := &pair{client: client, server: server, logs: &syncBuffer{}}
	fw, err := NewGVisor(server, Config{})
	if err != nil {
		f.Fatal(err)
	}
	fw.AttachLink(le)
	p.fw = fw
	if err := fw.Restore(IPv4, fuzzRules, RestoreOptions{}); err != nil {
		f.Fatal(err)
	}
	p.listen(f, serverAddr, 80)

	syn := tcpSYNFrag(0, 20, false)
	f.Add(syn)
	f.Add(tcpSYNFrag(0, 8, true))
	f.Add(tcpSYNFrag(8, 16, true))
	f.Add(tcpSYNFrag(16, 20, false))
	d := payload(3000)
	for _, fs := range split(3000, 1256) {
		f.Add(frag4(d, 9, fs))
		f.Add(frag6(d, 9, fs))
	}
	over := frag4(d, 9, fragSpec{2992, 3000, false})
	over[6], over[7] = 0x1f, 0xff // the largest offset: over 65535 bytes
	f.Add(over)
	f.Add([]byte{0x45})
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 44, 64})

	f.Fuzz(func(t *testing.T, frame []byte) {
		proto := tcpip.NetworkProtocolNumber(ipv4.ProtocolNumber)
		if len(frame) > 0 && frame[0]>>4 == 6 {
			proto = ipv6.ProtocolNumber
		}
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), frame...))})
		le.DeliverNetworkPacket(proto, pkt)
		pkt.DecRef()
		if got, err := p.dial(serverAddr, 80, 5*time.Second); err != nil || got != "hello" {
			t.Fatalf("stack stopped answering after a %d-byte frame: %q, %v", len(frame), got, err)
		}
		_ = fw.Conntrack()
		_ = fw.Stats()
	})
}

// tcpSYNFrag is an IPv4 fragment [off,end) of a SYN from the client to
// the server's port 81 (whole when off 0, end 20, !more).
func tcpSYNFrag(off, end int, more bool) []byte {
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg, 40001)
	binary.BigEndian.PutUint16(seg[2:], 81)
	seg[12], seg[13] = 5<<4, TCPSyn
	b := frag4(seg, 5, fragSpec{off, end, more})
	b[9] = 6
	copy(b[12:16], []byte{10, 0, 2, 100})
	copy(b[16:20], []byte{10, 0, 2, 2})
	return b
}
