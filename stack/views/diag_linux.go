package views

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The sandbox's sockets as ss itself reads them: inet_diag dumps
// (SOCK_DIAG_BY_FAMILY) over a NETLINK_SOCK_DIAG socket of the sandbox's
// network namespace. Unlike the /proc tables they carry a listener's
// backlog (idiag_wqueue, ss's Send-Q) and IPV6_V6ONLY (INET_DIAG_SKV6ONLY).
// golang.org/x/sys/unix has the netlink constants but not the inet_diag
// structures, so their layouts (linux/inet_diag.h) are spelled out here.
const (
	// sizeofInetDiagReqV2 is struct inet_diag_req_v2: family, protocol,
	// ext, pad (1 byte each), states (4), id (48).
	sizeofInetDiagReqV2 = 56
	// sizeofInetDiagMsg is struct inet_diag_msg: family, state, timer,
	// retrans (1 byte each), id (48: sport, dport, src, dst, if, cookie),
	// expires, rqueue, wqueue, uid, inode (4 each).
	sizeofInetDiagMsg = 72
	// inetDiagSKV6Only is INET_DIAG_SKV6ONLY, a u8 attribute the kernel
	// adds to every IPv6 socket in LISTEN or CLOSE (unasked: the ext
	// bitmask is 8 bits wide and cannot name attribute 11).
	inetDiagSKV6Only = 11
	// tcpNewSynRecv is TCP_NEW_SYN_RECV, a request socket's state in a
	// dump, which ss shows as SYN-RECV.
	tcpNewSynRecv = 12
	// diagAllStates asks for sockets in every state (bits 0..12), as
	// ss -a does; the views filter as ss does.
	diagAllStates = 1<<13 - 1
	// diagBufSize holds one datagram of a dump (the kernel fills at
	// most a page or so per datagram).
	diagBufSize = 1 << 16
)

// diagDumps are the four dumps ss -tua makes.
var diagDumps = [...]struct {
	family uint8
	proto  uint8
	netid  string
}{
	{unix.AF_INET, unix.IPPROTO_TCP, "tcp"},
	{unix.AF_INET6, unix.IPPROTO_TCP, "tcp"},
	{unix.AF_INET, unix.IPPROTO_UDP, "udp"},
	{unix.AF_INET6, unix.IPPROTO_UDP, "udp"},
}

// DiagSockets lists the TCP and UDP sockets of the network namespace of
// fd, a NETLINK_SOCK_DIAG socket (blocking, with a receive timeout so a
// silent kernel cannot hold the caller), as ss does: Side SideSandbox,
// queues as ss shows them (a listener's Send-Q is its backlog), V6Only
// read. Callers serialise dumps on one fd.
func DiagSockets(fd int) ([]Socket, error) {
	drainDiag(fd)
	var out []Socket
	for i, d := range diagDumps {
		seq := uint32(i + 1)
		if err := unix.Sendto(fd, diagRequest(d.family, d.proto, seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("views: sock_diag request (family %d, protocol %d): %w", d.family, d.proto, err)
		}
		socks, err := readDiagDump(fd, d.netid, seq)
		if err != nil {
			return nil, fmt.Errorf("views: sock_diag dump (family %d, protocol %d): %w", d.family, d.proto, err)
		}
		out = append(out, socks...)
	}
	return out, nil
}

// drainDiag drops what an earlier, abandoned dump left queued on fd.
func drainDiag(fd int) {
	buf := make([]byte, diagBufSize)
	for {
		if n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil || n <= 0 {
			return
		}
	}
}

// readDiagDump reads the datagrams of the dump seq until its NLMSG_DONE.
func readDiagDump(fd int, netid string, seq uint32) ([]Socket, error) {
	buf := make([]byte, diagBufSize)
	var out []Socket
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		socks, done, err := parseDiagMessages(buf[:n], netid, seq)
		if err != nil {
			return nil, err
		}
		out = append(out, socks...)
		if done {
			return out, nil
		}
	}
}

// diagRequest builds a dump request: an nlmsghdr and an inet_diag_req_v2
// for every socket of family and proto.
func diagRequest(family, proto uint8, seq uint32) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+sizeofInetDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	r := b[unix.SizeofNlMsghdr:]
	r[0], r[1] = family, proto
	ne.PutUint32(r[4:], diagAllStates)
	return b
}

// parseDiagMessages parses one datagram of a dump answering request seq
// (messages of another sequence, left from an abandoned dump, are
// skipped): the sockets, and whether NLMSG_DONE ended it. Malformed input
// is an error.
func parseDiagMessages(b []byte, netid string, seq uint32) (socks []Socket, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < unix.SizeofNlMsghdr {
			return nil, false, fmt.Errorf("truncated netlink header (%d bytes)", len(b))
		}
		l := int(ne.Uint32(b))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return nil, false, fmt.Errorf("netlink message length %d with %d bytes left", l, len(b))
		}
		typ, mseq, body := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[unix.SizeofNlMsghdr:l]
		b = b[min(nlmAlign(l), len(b)):]
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_DONE:
			return socks, true, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return nil, false, errors.New("truncated netlink error")
			}
			if e := int32(ne.Uint32(body)); e != 0 {
				return nil, false, fmt.Errorf("netlink error: %w", unix.Errno(-e))
			}
			continue
		case unix.SOCK_DIAG_BY_FAMILY:
		default:
			continue
		}
		s, err := parseDiagMsg(body, netid)
		if err != nil {
			return nil, false, err
		}
		socks = append(socks, s)
	}
	return socks, false, nil
}

// parseDiagMsg parses an inet_diag_msg and its attributes.
func parseDiagMsg(b []byte, netid string) (Socket, error) {
	if len(b) < sizeofInetDiagMsg {
		return Socket{}, fmt.Errorf("truncated inet_diag_msg (%d bytes)", len(b))
	}
	family, state := b[0], b[1]
	var name string
	switch {
	case state == tcpNewSynRecv:
		name = "SYN-RECV"
	case int(state) < len(procStates):
		name = procStates[state]
	}
	if name == "" {
		return Socket{}, fmt.Errorf("inet_diag_msg: unknown state %d", state)
	}
	n := 4
	if family == unix.AF_INET6 {
		n = 16
	} else if family != unix.AF_INET {
		return Socket{}, fmt.Errorf("inet_diag_msg: unknown family %d", family)
	}
	ne := binary.NativeEndian
	src, _ := netip.AddrFromSlice(b[8 : 8+n])
	dst, _ := netip.AddrFromSlice(b[24 : 24+n])
	s := Socket{Side: SideSandbox, Netid: netid, State: name, V6: family == unix.AF_INET6,
		Local: netip.AddrPortFrom(src, binary.BigEndian.Uint16(b[4:])),
		Peer:  netip.AddrPortFrom(dst, binary.BigEndian.Uint16(b[6:])),
		RecvQ: int(ne.Uint32(b[56:])),
		SendQ: int(ne.Uint32(b[60:])),
		Inode: uint64(ne.Uint32(b[68:])),
	}
	if s.Peer.Port() == 0 && s.Peer.Addr().IsUnspecified() {
		s.Peer = netip.AddrPort{} // unconnected, as Socket has it
	}
	v6only, err := diagV6Only(b[sizeofInetDiagMsg:])
	if err != nil {
		return Socket{}, err
	}
	s.V6Only = s.V6 && v6only
	return s, nil
}

// diagV6Only walks the attributes after an inet_diag_msg for
// INET_DIAG_SKV6ONLY.
func diagV6Only(b []byte) (bool, error) {
	ne := binary.NativeEndian
	v6only := false
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return false, fmt.Errorf("inet_diag attribute length %d with %d bytes left", l, len(b))
		}
		if ne.Uint16(b[2:]) == inetDiagSKV6Only {
			if l < unix.SizeofRtAttr+1 {
				return false, errors.New("empty INET_DIAG_SKV6ONLY")
			}
			v6only = b[unix.SizeofRtAttr] != 0
		}
		b = b[min(nlmAlign(l), len(b)):]
	}
	if len(b) != 0 {
		return false, fmt.Errorf("inet_diag attributes: %d stray bytes", len(b))
	}
	return v6only, nil
}

// nlmAlign rounds a netlink length up to 4 bytes.
func nlmAlign(n int) int { return (n + 3) &^ 3 }
