package capture

import (
	"bytes"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSLL2Header(t *testing.T) {
	v4 := testPacket(protoTCP, "10.0.2.100", "10.0.2.2", 40000, 80, 0)
	v6 := testPacket(protoTCP, "fd00::100", "fd00::2", 40000, 80, 0)
	for _, tc := range []struct {
		name    string
		data    []byte
		ifIndex uint32
		dir     Direction
		want    string // the 20 header bytes, hex
	}{
		{"v4 in", v4, 2, In, "0800" + "0000" + "00000002" + "fffe" + "00" + "00" + "0000000000000000"},
		{"v4 out", v4, 2, Out, "0800" + "0000" + "00000002" + "fffe" + "04" + "00" + "0000000000000000"},
		{"v6 in", v6, 0x01020304, In, "86dd" + "0000" + "01020304" + "fffe" + "00" + "00" + "0000000000000000"},
		{"v6 out", v6, 7, Out, "86dd" + "0000" + "00000007" + "fffe" + "04" + "00" + "0000000000000000"},
		{"not ip", []byte{0x10, 0}, 1, In, "0000" + "0000" + "00000001" + "fffe" + "00" + "00" + "0000000000000000"},
		{"empty", nil, 1, Out, "0000" + "0000" + "00000001" + "fffe" + "04" + "00" + "0000000000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := AppendSLL2Header(nil, tc.data, tc.ifIndex, tc.dir)
			if got := hex.EncodeToString(rec); got != tc.want {
				t.Fatalf("header %s, want %s", got, tc.want)
			}
			rec = append(rec, tc.data...)
			idx, dir, data, err := ParseSLL2Header(rec)
			if err != nil || idx != tc.ifIndex || dir != tc.dir || !bytes.Equal(data, tc.data) {
				t.Errorf("parse: index %d dir %d data equal %v err %v; want %d %d", idx, dir, bytes.Equal(data, tc.data), err, tc.ifIndex, tc.dir)
			}
		})
	}
	if _, _, _, err := ParseSLL2Header(make([]byte, SLL2HeaderLen-1)); err == nil {
		t.Error("ParseSLL2Header accepted a record shorter than the header")
	}
}

// TestSLL2PcapRoundTripAndTcpdump writes a LINUX_SLL2 pcap, reads it back
// and has real tcpdump read it: the link type, the direction, the
// interface (index 1 is lo in every namespace, so tcpdump names it) and
// the rest of the line agree with FormatCookedLine.
func TestSLL2PcapRoundTripAndTcpdump(t *testing.T) {
	when := time.Unix(1700000000, 123456000)
	pkts := []Packet{
		{Data: testPacket(protoTCP, "10.0.2.100", "10.0.2.2", 40000, 80, 0), Dir: In, IfIndex: 1},
		{Data: testPacket(protoTCP, "10.0.2.2", "10.0.2.100", 80, 40000, 0), Dir: Out, IfIndex: 1},
		{Data: testPacket(protoUDP, "fd00::100", "fd00::3", 40001, 40002, 12), Dir: In, IfIndex: 1},
		{Data: testPacket(protoICMPv6, "fd00::3", "fd00::100", 0, 0, 4), Dir: Out, IfIndex: 1},
	}
	var buf bytes.Buffer
	pw, err := NewPcapWriterLinkType(&buf, 0, LinkTypeLinuxSLL2)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for i := range pkts {
		pkts[i].Time, pkts[i].Len = when, len(pkts[i].Data)
		if err := pw.WritePacket(pkts[i]); err != nil {
			t.Fatal(err)
		}
		ours = append(ours, FormatCookedLine(pkts[i], "lo"))
	}
	raw := append([]byte(nil), buf.Bytes()...)
	pr, err := NewPcapReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if pr.LinkType != LinkTypeLinuxSLL2 {
		t.Errorf("link type %d, want %d", pr.LinkType, LinkTypeLinuxSLL2)
	}
	for i, want := range pkts {
		p, err := pr.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !bytes.Equal(p.Data, want.Data) || p.Len != want.Len || p.Dir != want.Dir || p.IfIndex != want.IfIndex {
			t.Errorf("record %d: len %d dir %d index %d after a round trip, want %d %d %d", i, p.Len, p.Dir, p.IfIndex, want.Len, want.Dir, want.IfIndex)
		}
	}

	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed")
	}
	cmd := exec.Command(tcpdump, "-nn", "-r", "-")
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r: %v: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "link-type LINUX_SLL2") {
		t.Errorf("tcpdump: %q, want link-type LINUX_SLL2", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(pkts) {
		t.Fatalf("tcpdump read %d packets, want %d:\n%s", len(lines), len(pkts), out)
	}
	for i, l := range lines {
		if l != ours[i] {
			t.Errorf("packet %d:\ntcpdump %q\nours    %q", i, l, ours[i])
		}
	}
}

// TestSLL2SnapLenCountsTheHeader: with -s, Linux's snapshot length bounds
// the cooked header and the packet together.
func TestSLL2SnapLenCountsTheHeader(t *testing.T) {
	var buf bytes.Buffer
	pw, err := NewPcapWriterLinkType(&buf, 60, LinkTypeLinuxSLL2)
	if err != nil {
		t.Fatal(err)
	}
	data := testPacket(protoTCP, "10.0.2.100", "10.0.2.2", 40000, 80, 100)
	if err := pw.WritePacket(Packet{Time: time.Now(), Data: data, Len: len(data), Dir: In, IfIndex: 3}); err != nil {
		t.Fatal(err)
	}
	pr, err := NewPcapReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Data) != 60-SLL2HeaderLen || p.Len != len(data) || p.IfIndex != 3 {
		t.Errorf("captured %d of %d bytes on index %d, want %d of %d on 3", len(p.Data), p.Len, p.IfIndex, 60-SLL2HeaderLen, len(data))
	}
	if _, err := NewPcapWriterLinkType(&buf, 0, 1); err == nil {
		t.Error("NewPcapWriterLinkType accepted Ethernet, which it cannot write")
	}
}
