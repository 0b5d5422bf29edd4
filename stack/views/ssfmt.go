package views

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SSOptions select and shape ss output; they mirror ss's flags.
type SSOptions struct {
	TCP, UDP  bool // -t, -u; neither means both
	Listening bool // -l: only listening (LISTEN, UNCONN) sockets
	All       bool // -a: listening and non-listening
	Numeric   bool // -n: no service names
	Processes bool // -p
	Extended  bool // -e
	Info      bool // -i
	Family    int  // 4 or 6 (-4, -6); 0 means both
	// ShowSide adds a first column, Side, naming each socket's side
	// (stack or sandbox), for a listing of both.
	ShowSide bool
	// NoHeader (-H) leaves the header line out; as in ss, the columns are
	// then only as wide as their contents (Recv-Q and Send-Q values are
	// always padded to six).
	NoHeader bool
	// ServiceName names a port for a protocol ("http"), or returns ""; it
	// is used unless Numeric.
	ServiceName func(port uint16, proto string) string
}

// Filter returns the sockets ss would list with these options. Without
// -l or -a that is ss's default, the connected sockets: no listening,
// unconnected, TIME-WAIT or SYN-RECV ones.
func (o SSOptions) Filter(all []Socket) []Socket {
	var out []Socket
	bothProtos := o.TCP == o.UDP
	for _, s := range all {
		switch {
		case !bothProtos && o.TCP && s.Netid != "tcp",
			!bothProtos && o.UDP && s.Netid != "udp",
			o.Family == 4 && s.V6,
			o.Family == 6 && !s.V6,
			!o.All && o.Listening && !s.Listening(),
			!o.All && !o.Listening && (s.Listening() || s.State == "TIME-WAIT" || s.State == "SYN-RECV"):
			continue
		}
		out = append(out, s)
	}
	return out
}

// WriteSS prints socks (already filtered) in ss's layout.
func WriteSS(w io.Writer, socks []Socket, o SSOptions) error {
	showNetid := o.TCP == o.UDP
	header := []string{"State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Process"}
	if showNetid {
		header = append([]string{"Netid"}, header...)
	}
	if o.ShowSide {
		header = append([]string{"Side"}, header...)
	}
	type row struct {
		cols                  []string
		laddr, lport          string
		paddr, pport, process string
		info                  string
	}
	rows := make([]row, 0, len(socks))
	for _, s := range socks {
		r := row{cols: []string{s.State, strconv.Itoa(s.RecvQ), strconv.Itoa(s.SendQ)}}
		if showNetid {
			r.cols = append([]string{s.Netid}, r.cols...)
		}
		if o.ShowSide {
			r.cols = append([]string{s.Side}, r.cols...)
		}
		r.laddr, r.lport = o.hostPort(s, false)
		r.paddr, r.pport = o.hostPort(s, true)
		r.process = processColumn(s, o)
		if o.Info && s.TCP != nil {
			r.info = infoLine(s.TCP)
		}
		rows = append(rows, r)
	}
	// Width of each fixed column, and of the address and port halves of
	// the two address columns (ss aligns on the colon).
	nfix := len(header) - 3
	wid := make([]int, nfix)
	for i := range wid {
		wid[i] = len(header[i])
		if o.NoHeader && header[i] != "Recv-Q" && header[i] != "Send-Q" {
			wid[i] = 0 // ss prints the queues %-6d, the rest as they are
		}
	}
	la, lp, pa, pp := 0, 0, 0, 0
	for _, r := range rows {
		for i, c := range r.cols {
			wid[i] = max(wid[i], len(c))
		}
		la, lp = max(la, len(r.laddr)), max(lp, len(r.lport))
		pa, pp = max(pa, len(r.paddr)), max(pp, len(r.pport))
	}
	lw, pw := la+1+lp, pa+1+pp
	if !o.NoHeader {
		lw, pw = max(lw, len(header[nfix])), max(pw, len(header[nfix+1]))
	}
	la, pa = lw-1-lp, pw-1-pp
	var b strings.Builder
	if !o.NoHeader {
		for i := 0; i < nfix; i++ {
			fmt.Fprintf(&b, "%-*s ", wid[i], header[i])
		}
		fmt.Fprintf(&b, "%*s %*s %s\n", lw, header[nfix], pw, header[nfix+1], header[nfix+2])
	}
	for _, r := range rows {
		for i, c := range r.cols {
			fmt.Fprintf(&b, "%-*s ", wid[i], c)
		}
		fmt.Fprintf(&b, "%*s:%-*s %*s:%-*s %s", la, r.laddr, lp, r.lport, pa, r.paddr, pp, r.pport, r.process)
		line := strings.TrimRight(b.String(), " ")
		b.Reset()
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return err
		}
		if r.info != "" {
			if _, err := io.WriteString(w, "\t "+r.info+"\n"); err != nil {
				return err
			}
		}
	}
	if b.Len() > 0 {
		_, err := io.WriteString(w, b.String())
		return err
	}
	return nil
}

// hostPort splits a socket's local or peer address into ss's two halves.
func (o SSOptions) hostPort(s Socket, peer bool) (string, string) {
	ap := s.Local
	if peer {
		ap = s.Peer
	}
	var host string
	switch a := ap.Addr(); {
	case s.V6 && !s.V6Only && (!a.IsValid() || a.IsUnspecified()):
		// ss's "*": an IPv6 socket bound to any address that also
		// takes IPv4 (the kernel's default; with IPV6_V6ONLY ss
		// prints [::]).
		host = "*"
	case !a.IsValid() && s.V6:
		host = "[::]"
	case !a.IsValid():
		host = "0.0.0.0"
	case a.Is6():
		host = "[" + a.String() + "]"
	default:
		host = a.String()
	}
	port := "*"
	if ap.Port() != 0 {
		port = strconv.Itoa(int(ap.Port()))
		if !o.Numeric && o.ServiceName != nil {
			if n := o.ServiceName(ap.Port(), s.Netid); n != "" {
				port = n
			}
		}
	}
	return host, port
}

func processColumn(s Socket, o SSOptions) string {
	var parts []string
	if o.Processes && len(s.Processes) > 0 {
		var us []string
		for _, p := range s.Processes {
			us = append(us, fmt.Sprintf("(%q,pid=%d,fd=%d)", p.Command, p.PID, p.FD))
		}
		parts = append(parts, "users:("+strings.Join(us, ",")+")")
	}
	if o.Extended && s.Inode != 0 {
		parts = append(parts, fmt.Sprintf("ino:%d", s.Inode))
	}
	return strings.Join(parts, " ")
}

func infoLine(t *TCPInfo) string {
	ms := func(d interface{ Microseconds() int64 }) string {
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
	}
	var f []string
	if t.Congestion != "" {
		f = append(f, t.Congestion)
	}
	f = append(f,
		fmt.Sprintf("rto:%d", t.RTO.Milliseconds()),
		fmt.Sprintf("rtt:%s/%s", ms(t.RTT), ms(t.RTTVar)),
		fmt.Sprintf("cwnd:%d", t.Cwnd))
	if t.Ssthresh != 0 && t.Ssthresh < 1<<31-1 {
		f = append(f, fmt.Sprintf("ssthresh:%d", t.Ssthresh))
	}
	f = append(f, fmt.Sprintf("segs_out:%d", t.SegsOut), fmt.Sprintf("segs_in:%d", t.SegsIn))
	if t.Retransmits > 0 || t.Timeouts > 0 {
		f = append(f, fmt.Sprintf("retrans:0/%d", t.Retransmits), fmt.Sprintf("timeouts:%d", t.Timeouts))
	}
	if t.CAState != "" && t.CAState != "Open" {
		f = append(f, "ca_state:"+t.CAState)
	}
	if t.ReorderSeen {
		f = append(f, "reordering")
	}
	return strings.Join(f, " ")
}
