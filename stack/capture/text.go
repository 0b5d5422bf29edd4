package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// FormatPacket renders p as tcpdump -n -S prints it (absolute sequence
// numbers), without the timestamp: "IP 10.0.2.100.40000 > 10.0.2.2.80:
// Flags [S], seq 1, win 65535, length 0".
func FormatPacket(p Packet) string {
	var d decoded
	d.decode(p.Data)
	var b strings.Builder
	switch d.version {
	case 4:
		b.WriteString("IP ")
	case 6:
		b.WriteString("IP6 ")
	default:
		fmt.Fprintf(&b, "unknown packet, length %d", p.Len)
		return b.String()
	}
	payload := d.ipLen - d.hdrLen - (len(p.Data) - d.hdrLen - len(d.transport))
	if d.ipLen == 0 || payload < 0 {
		payload = len(d.transport)
	}
	if d.version == 4 && d.ipLen == 0 {
		// A TSO super-packet's IPv4 total length may be 0; the capture
		// length is the truth then.
		payload = p.Len - d.hdrLen
	}
	switch {
	case d.hasPorts && d.proto == protoTCP:
		fmt.Fprintf(&b, "%s > %s: ", hostPort(d.src, d.sport), hostPort(d.dst, d.dport))
		formatTCP(&b, d.transport, payload)
	case d.hasPorts && d.proto == protoUDP:
		fmt.Fprintf(&b, "%s > %s: UDP, length %d", hostPort(d.src, d.sport), hostPort(d.dst, d.dport), max(payload-8, 0))
	case d.proto == protoICMP && d.version == 4:
		fmt.Fprintf(&b, "%s > %s: ICMP %s, length %d", d.src, d.dst, icmpText(d.transport, false), payload)
	case d.proto == protoICMPv6 && d.version == 6:
		fmt.Fprintf(&b, "%s > %s: ICMP6, %s, length %d", d.src, d.dst, icmpText(d.transport, true), payload)
	default:
		fmt.Fprintf(&b, "%s > %s: ip-proto-%d %d", d.src, d.dst, d.proto, payload)
	}
	return b.String()
}

// FormatLine prepends the time of day to FormatPacket's text.
func FormatLine(p Packet) string {
	return p.Time.Format("15:04:05.000000") + " " + FormatPacket(p)
}

// FormatCookedLine is FormatLine for a capture on several interfaces
// (tcpdump -i any): the interface name and the direction come after the
// time, padded as tcpdump pads them: "12:00:00.000000 tun0  In  IP ...".
func FormatCookedLine(p Packet, ifName string) string {
	dir := "In"
	if p.Dir == Out {
		dir = "Out"
	}
	return fmt.Sprintf("%s %-5s %-3s %s", p.Time.Format("15:04:05.000000"), ifName, dir, FormatPacket(p))
}

func hostPort(a netip.Addr, port uint16) string { return fmt.Sprintf("%s.%d", a, port) }

func formatTCP(b *strings.Builder, t []byte, segLen int) {
	if len(t) < 20 {
		fmt.Fprintf(b, "tcp %d [|tcp]", segLen)
		return
	}
	seq := binary.BigEndian.Uint32(t[4:])
	ack := binary.BigEndian.Uint32(t[8:])
	off := int(t[12]>>4) * 4
	flags := t[13]
	win := binary.BigEndian.Uint16(t[14:])
	data := max(segLen-off, 0)
	var f strings.Builder
	for _, x := range []struct {
		bit byte
		c   byte
	}{{0x02, 'S'}, {0x01, 'F'}, {0x04, 'R'}, {0x08, 'P'}, {0x20, 'U'}, {0x40, 'E'}, {0x80, 'W'}} {
		if flags&x.bit != 0 {
			f.WriteByte(x.c)
		}
	}
	if flags&0x10 != 0 {
		f.WriteByte('.')
	}
	if f.Len() == 0 {
		f.WriteString("none")
	}
	fmt.Fprintf(b, "Flags [%s]", f.String())
	switch {
	case data > 0:
		fmt.Fprintf(b, ", seq %d:%d", seq, seq+uint32(data))
	case flags&0x07 != 0:
		fmt.Fprintf(b, ", seq %d", seq)
	}
	if flags&0x10 != 0 {
		fmt.Fprintf(b, ", ack %d", ack)
	}
	fmt.Fprintf(b, ", win %d", win)
	if opts := tcpOptions(t, off); opts != "" {
		fmt.Fprintf(b, ", options [%s]", opts)
	}
	fmt.Fprintf(b, ", length %d", data)
}

func tcpOptions(t []byte, off int) string {
	if off > len(t) || off <= 20 {
		return ""
	}
	o := t[20:off]
	var out []string
	for len(o) > 0 {
		kind := o[0]
		if kind == 0 {
			out = append(out, "eol")
			break
		}
		if kind == 1 {
			out = append(out, "nop")
			o = o[1:]
			continue
		}
		if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
			out = append(out, "bad opt")
			break
		}
		v := o[2:o[1]]
		switch {
		case kind == 2 && len(v) == 2:
			out = append(out, fmt.Sprintf("mss %d", binary.BigEndian.Uint16(v)))
		case kind == 3 && len(v) == 1:
			out = append(out, fmt.Sprintf("wscale %d", v[0]))
		case kind == 4:
			out = append(out, "sackOK")
		case kind == 5:
			out = append(out, fmt.Sprintf("sack %d", len(v)/8))
		case kind == 8 && len(v) == 8:
			out = append(out, fmt.Sprintf("TS val %d ecr %d", binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])))
		default:
			out = append(out, fmt.Sprintf("opt-%d", kind))
		}
		o = o[o[1]:]
	}
	return strings.Join(out, ",")
}

func icmpText(t []byte, v6 bool) string {
	if len(t) < 4 {
		return "[|icmp]"
	}
	typ, code := t[0], t[1]
	echo := func(what string) string {
		if len(t) < 8 {
			return what
		}
		return fmt.Sprintf("%s, id %d, seq %d", what, binary.BigEndian.Uint16(t[4:]), binary.BigEndian.Uint16(t[6:]))
	}
	if v6 {
		switch typ {
		case 128:
			return echo("echo request")
		case 129:
			return echo("echo reply")
		case 1:
			return fmt.Sprintf("destination unreachable, code %d", code)
		case 2:
			return "packet too big"
		case 3:
			return "time exceeded in-transit"
		case 133:
			return "router solicitation"
		case 134:
			return "router advertisement"
		case 135:
			return "neighbor solicitation"
		case 136:
			return "neighbor advertisement"
		}
		return fmt.Sprintf("type %d, code %d", typ, code)
	}
	switch typ {
	case 8:
		return echo("echo request")
	case 0:
		return echo("echo reply")
	case 3:
		return fmt.Sprintf("unreachable, code %d", code)
	case 11:
		return "time exceeded in-transit"
	}
	return fmt.Sprintf("type-#%d", typ)
}
