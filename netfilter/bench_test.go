package netfilter

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// synPacket builds a parsed IPv4 TCP SYN 10.0.2.100:40000 → 198.18.0.1:443.
func synPacket() *gstack.PacketBuffer {
	b := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 2, 100}), DstAddr: tcpip.AddrFrom4([4]byte{198, 18, 0, 1})})
	tcp := header.TCP(b[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 443, Flags: header.TCPFlagSyn, DataOffset: header.TCPMinimumSize, WindowSize: 1000})
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	pkt.NetworkHeader().Consume(header.IPv4MinimumSize)
	pkt.TransportHeader().Consume(header.TCPMinimumSize)
	return pkt
}

func benchDispatch(b *testing.B, fw *Firewall) {
	d := &dispatcher{fw: fw, fam: IPv4, ghook: gstack.Input, plan: plans[[2]int{int(gstack.Input), int(gstack.FilterID)}]}
	pkt := synPacket()
	defer pkt.DecRef()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v, _ := d.Action(pkt, gstack.Input, nil, nil); v != gstack.RuleAccept {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkRules measures per-packet cost through the hook with N
// non-matching rules (each a TCP port test) before the final ACCEPT.
func BenchmarkRules(b *testing.B) {
	for _, n := range []int{0, 10, 100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			fw, _ := New(nil, Config{})
			err := fw.Update(func(tx *Tx) error {
				for i := 0; i < n; i++ {
					r := &Rule{Protocol: 6, Src: Addr{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 2, 100}), 32)},
						Matches: []Match{&TCP{DstPorts: Ports{Set: true, Range: PortRange{uint16(1 + i%400), uint16(1 + i%400)}}}}, Target: Drop{}}
					if err := tx.Append(IPv4, Filter, "INPUT", r); err != nil {
						return err
					}
				}
				return tx.SetPolicy(IPv4, Filter, "INPUT", PolicyAccept)
			})
			if err != nil {
				b.Fatal(err)
			}
			benchDispatch(b, fw)
		})
	}
}

// BenchmarkSet100k measures a -m set lookup against 100,000 networks.
func BenchmarkSet100k(b *testing.B) {
	fw, _ := New(nil, Config{})
	if _, err := fw.IPSet([]string{"create", "block", "hash:net", "maxelem", "200000"}); err != nil {
		b.Fatal(err)
	}
	s := fw.Sets().Get("block")
	for i := 0; i < 100000; i++ {
		bits := 16 + i%17
		pf := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 0}), bits)
		s.Add(pf, true)
	}
	if _, err := fw.Exec(IPv4, []string{"-A", "INPUT", "-m", "set", "--match-set", "block", "dst", "-j", "DROP"}); err != nil {
		b.Fatal(err)
	}
	benchDispatch(b, fw)
}

// BenchmarkAllowlist measures the per-packet cost of the --allow-host
// policy's chain (package fqdn installs these rules) for a new flow to an
// allowed (learned) and a denied destination, with N learned addresses in
// the timeout set.
func BenchmarkAllowlist(b *testing.B) {
	for _, n := range []int{10, 10000} {
		for _, allowed := range []bool{true, false} {
			name := fmt.Sprintf("learned=%d/allowed=%v", n, allowed)
			b.Run(name, func(b *testing.B) {
				// Gateway mode, as in a sandbox: the SYN to 198.18.0.1
				// arriving at INPUT traverses FORWARD, out by "host".
				fw, _ := New(nil, Config{Gateway: true, HostInterface: "host", IsLocal: func(tcpip.Address) bool { return false }})
				if _, err := fw.IPSet([]string{"create", "ts-allow4", "hash:ip", "timeout", "0", "maxelem", "65536"}); err != nil {
					b.Fatal(err)
				}
				s := fw.Sets().Get("ts-allow4")
				for i := 0; i < n; i++ {
					s.AddTimeout(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32), time.Hour, true)
				}
				if allowed {
					s.AddTimeout(netip.MustParsePrefix("198.18.0.1/32"), time.Hour, true)
				}
				text := "*filter\n:TS-ALLOW - [0:0]\n-A INPUT -j TS-ALLOW\n-A FORWARD -o host -j TS-ALLOW\n" +
					"-A TS-ALLOW -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
					"-A TS-ALLOW -d 10.0.2.3/32 -p udp -m udp --dport 53 -j RETURN\n" +
					"-A TS-ALLOW -d 10.0.2.3/32 -p tcp -m tcp --dport 53 -j RETURN\n" +
					"-A TS-ALLOW -m set --match-set ts-allow4 dst -j RETURN\n" +
					"-A TS-ALLOW -j DROP\nCOMMIT\n"
				if err := fw.Restore(IPv4, text, RestoreOptions{}); err != nil {
					b.Fatal(err)
				}
				d := &dispatcher{fw: fw, fam: IPv4, ghook: gstack.Input, plan: plans[[2]int{int(gstack.Input), int(gstack.FilterID)}]}
				pkt := synPacket()
				defer pkt.DecRef()
				want := gstack.RuleAccept
				if !allowed {
					want = gstack.RuleDrop
				}
				b.ReportAllocs()
				for b.Loop() {
					if v, _ := d.Action(pkt, gstack.Input, nil, nil); v != want {
						b.Fatalf("verdict %v, want %v", v, want)
					}
				}
			})
		}
	}
}
