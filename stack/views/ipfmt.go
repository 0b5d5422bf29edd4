package views

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// IPOptions shape ip output; they mirror ip's flags.
type IPOptions struct {
	Stats  bool // -s: counters
	Family int  // 4 or 6 (-4, -6); 0 means both (addr) or 4 (route)
}

// WriteLinks prints links in ip link's layout.
func WriteLinks(w io.Writer, links []Link, o IPOptions) error {
	var b strings.Builder
	for _, l := range links {
		linkHead(&b, l, "mode DEFAULT ")
		if o.Stats {
			linkStats(&b, l.Stats)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteAddrs prints links with their addresses in ip addr's layout.
func WriteAddrs(w io.Writer, links []Link, o IPOptions) error {
	var b strings.Builder
	for _, l := range links {
		linkHead(&b, l, "")
		for _, a := range l.Addresses {
			if (o.Family == 4 && !a.Prefix.Addr().Is4()) || (o.Family == 6 && a.Prefix.Addr().Is4()) {
				continue
			}
			label := ""
			if a.Prefix.Addr().Is4() {
				label = " " + l.Name
			}
			fmt.Fprintf(&b, "    %s %s scope %s%s\n", a.Family(), a.Prefix, a.Scope, label)
			b.WriteString("       valid_lft forever preferred_lft forever\n")
		}
		if o.Stats {
			linkStats(&b, l.Stats)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func linkHead(b *strings.Builder, l Link, mode string) {
	fmt.Fprintf(b, "%d: %s: <%s> mtu %d qdisc none state %s %sgroup default", l.Index, l.Name, strings.Join(l.Flags, ","), l.MTU, l.State, mode)
	if l.TxQueueLen > 0 {
		fmt.Fprintf(b, " qlen %d", l.TxQueueLen)
	}
	b.WriteString("\n")
	fmt.Fprintf(b, "    link/%s", l.Kind)
	if l.Offload != "" {
		fmt.Fprintf(b, " offload %s", l.Offload)
	}
	b.WriteString("\n")
}

// linkStats prints counters as ip -s does: a header row and a value row per
// direction, each column right-aligned to the wider of the two.
func linkStats(b *strings.Builder, s LinkStats) {
	table := func(head []string, vals []uint64) {
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = strconv.FormatUint(v, 10)
		}
		var h, v strings.Builder
		for i := range head {
			wd := max(len(head[i]), len(cells[i]))
			fmt.Fprintf(&h, " %*s", wd, head[i])
			fmt.Fprintf(&v, " %*s", wd, cells[i])
		}
		fmt.Fprintf(b, "   %s\n   %s\n", h.String(), v.String())
	}
	table([]string{"RX:  bytes", "packets", "errors", "dropped", "gso"},
		[]uint64{s.RxBytes, s.RxPackets, s.RxErrors, s.RxDropped, s.RxGSO})
	table([]string{"TX:  bytes", "packets", "errors", "dropped", "gso"},
		[]uint64{s.TxBytes, s.TxPackets, s.TxErrors, s.TxDropped, s.TxGSO})
}

// WriteRoutes prints routes in ip route's layout. Like ip, it shows IPv4
// routes unless o.Family is 6.
func WriteRoutes(w io.Writer, routes []Route, o IPOptions) error {
	var b strings.Builder
	for _, r := range routes {
		if r.Destination.Addr().Is4() != (o.Family != 6) {
			continue
		}
		dst := r.Destination.String()
		if r.Destination.Bits() == 0 {
			dst = "default"
		}
		b.WriteString(dst)
		if r.Gateway.IsValid() {
			fmt.Fprintf(&b, " via %s", r.Gateway)
		}
		fmt.Fprintf(&b, " dev %s", r.Device)
		if r.MTU != 0 {
			fmt.Fprintf(&b, " mtu %d", r.MTU)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
