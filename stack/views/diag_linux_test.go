package views

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// diagMsg crafts one inet_diag_msg netlink message of sequence seq.
type diagMsg struct {
	family, state  uint8
	local, peer    netip.AddrPort
	rq, wq, inode  uint32
	v6only         int // -1: no INET_DIAG_SKV6ONLY attribute
	seq            uint32
	typ            uint16 // 0: SOCK_DIAG_BY_FAMILY
	errno          int32  // for typ NLMSG_ERROR
	trailing, trim int    // stray attribute bytes; bytes cut from the body
}

func (m diagMsg) bytes() []byte {
	ne := binary.NativeEndian
	typ := m.typ
	if typ == 0 {
		typ = unix.SOCK_DIAG_BY_FAMILY
	}
	var body []byte
	switch typ {
	case unix.NLMSG_DONE:
		body = make([]byte, 4)
	case unix.NLMSG_ERROR:
		body = make([]byte, 4+unix.SizeofNlMsghdr)
		ne.PutUint32(body, uint32(-m.errno))
	default:
		body = make([]byte, sizeofInetDiagMsg)
		body[0], body[1] = m.family, m.state
		binary.BigEndian.PutUint16(body[4:], m.local.Port())
		binary.BigEndian.PutUint16(body[6:], m.peer.Port())
		if m.local.IsValid() {
			a := m.local.Addr().AsSlice()
			copy(body[8:], a)
		}
		if m.peer.IsValid() {
			copy(body[24:], m.peer.Addr().AsSlice())
		}
		ne.PutUint32(body[56:], m.rq)
		ne.PutUint32(body[60:], m.wq)
		ne.PutUint32(body[68:], m.inode)
		// An attribute ss does not use first (INET_DIAG_SHUTDOWN, u8),
		// then V6ONLY: the parser must walk past the first.
		body = append(body, 5, 0, 8, 0, 0, 0, 0, 0)
		if m.v6only >= 0 {
			body = append(body, 5, 0, inetDiagSKV6Only, 0, byte(m.v6only), 0, 0, 0)
		}
		body = append(body, make([]byte, m.trailing)...)
	}
	body = body[:len(body)-m.trim]
	h := make([]byte, unix.SizeofNlMsghdr)
	ne.PutUint32(h, uint32(len(h)+len(body)))
	ne.PutUint16(h[4:], typ)
	ne.PutUint32(h[8:], m.seq)
	return append(h, body...)
}

func cat(ms ...diagMsg) []byte {
	var b []byte
	for _, m := range ms {
		b = append(b, m.bytes()...)
	}
	return b
}

func TestParseDiagMessages(t *testing.T) {
	ap := netip.MustParseAddrPort
	listen4 := diagMsg{family: unix.AF_INET, state: 10, local: ap("0.0.0.0:8080"), peer: ap("0.0.0.0:0"), wq: 7, rq: 2, inode: 42, v6only: -1, seq: 1}
	v6only := diagMsg{family: unix.AF_INET6, state: 10, local: ap("[::]:8081"), peer: ap("[::]:0"), wq: 128, inode: 43, v6only: 1, seq: 1}
	dual := v6only
	dual.v6only, dual.local = 0, ap("[::]:8082")
	estab := diagMsg{family: unix.AF_INET6, state: 1, local: ap("[::ffff:127.0.0.1]:8082"), peer: ap("[::ffff:127.0.0.1]:40000"), rq: 3, inode: 44, v6only: -1, seq: 1}
	synrecv := diagMsg{family: unix.AF_INET, state: tcpNewSynRecv, local: ap("10.0.2.100:80"), peer: ap("198.18.0.1:5555"), v6only: -1, seq: 1}
	done := diagMsg{typ: unix.NLMSG_DONE, seq: 1}

	for _, tc := range []struct {
		name    string
		in      []byte
		want    []Socket
		done    bool
		wantErr bool
	}{
		{"listeners and connections", cat(listen4, v6only, dual, estab, synrecv, done), []Socket{
			{Side: SideSandbox, Netid: "tcp", State: "LISTEN", Local: ap("0.0.0.0:8080"), RecvQ: 2, SendQ: 7, Inode: 42},
			{Side: SideSandbox, Netid: "tcp", State: "LISTEN", Local: ap("[::]:8081"), SendQ: 128, Inode: 43, V6: true, V6Only: true},
			{Side: SideSandbox, Netid: "tcp", State: "LISTEN", Local: ap("[::]:8082"), SendQ: 128, Inode: 43, V6: true},
			{Side: SideSandbox, Netid: "tcp", State: "ESTAB", Local: ap("[::ffff:127.0.0.1]:8082"), Peer: ap("[::ffff:127.0.0.1]:40000"), RecvQ: 3, Inode: 44, V6: true},
			{Side: SideSandbox, Netid: "tcp", State: "SYN-RECV", Local: ap("10.0.2.100:80"), Peer: ap("198.18.0.1:5555")},
		}, true, false},
		{"datagram without done", cat(listen4), []Socket{
			{Side: SideSandbox, Netid: "tcp", State: "LISTEN", Local: ap("0.0.0.0:8080"), RecvQ: 2, SendQ: 7, Inode: 42},
		}, false, false},
		{"other sequence skipped", cat(diagMsg{family: unix.AF_INET, state: 10, seq: 9, v6only: -1}, diagMsg{typ: unix.NLMSG_DONE, seq: 9}, done), nil, true, false},
		{"empty", nil, nil, false, false},
		{"ack", cat(diagMsg{typ: unix.NLMSG_ERROR, seq: 1}, done), nil, true, false},
		{"netlink error", cat(diagMsg{typ: unix.NLMSG_ERROR, errno: int32(unix.EPERM), seq: 1}), nil, false, true},
		{"short header", []byte{1, 2, 3}, nil, false, true},
		{"length below header", func() []byte { b := done.bytes(); binary.NativeEndian.PutUint32(b, 8); return b }(), nil, false, true},
		{"length past end", func() []byte { b := done.bytes(); binary.NativeEndian.PutUint32(b, 4096); return b }(), nil, false, true},
		{"truncated inet_diag_msg", cat(diagMsg{family: unix.AF_INET, state: 10, seq: 1, v6only: -1, trim: 24}), nil, false, true},
		{"truncated error", cat(diagMsg{typ: unix.NLMSG_ERROR, seq: 1, trim: 18}), nil, false, true},
		{"unknown family", cat(diagMsg{family: unix.AF_UNIX, state: 10, seq: 1, v6only: -1}), nil, false, true},
		{"unknown state", cat(diagMsg{family: unix.AF_INET, state: 13, seq: 1, v6only: -1}), nil, false, true},
		{"stray attribute bytes", cat(diagMsg{family: unix.AF_INET6, state: 10, seq: 1, v6only: 1, trailing: 2}), nil, false, true},
		{"cut attribute", cat(diagMsg{family: unix.AF_INET6, state: 10, seq: 1, v6only: 1, trim: 4}), nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, done, err := parseDiagMessages(tc.in, "tcp", 1)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) || done != tc.done {
				t.Errorf("got %+v (done %v), want %+v (done %v)", got, done, tc.want, tc.done)
			}
		})
	}
	if _, _, err := parseDiagMessages(cat(diagMsg{typ: unix.NLMSG_ERROR, errno: int32(unix.EPERM), seq: 1}), "tcp", 1); !errors.Is(err, unix.EPERM) {
		t.Errorf("netlink error: %v, want EPERM", err)
	}
}

// TestParseDiagPrefixes: every prefix and every corrupted byte of a
// valid datagram parses or fails, never panics.
func TestParseDiagPrefixes(t *testing.T) {
	ap := netip.MustParseAddrPort
	valid := cat(diagMsg{family: unix.AF_INET6, state: 10, local: ap("[::]:1"), v6only: 1, seq: 1},
		diagMsg{family: unix.AF_INET, state: 1, local: ap("127.0.0.1:1"), peer: ap("127.0.0.1:2"), v6only: -1, seq: 1},
		diagMsg{typ: unix.NLMSG_DONE, seq: 1})
	for n := range len(valid) {
		parseDiagMessages(valid[:n], "tcp", 1)
		b := append([]byte(nil), valid...)
		for _, v := range []byte{0, 1, 0x7f, 0xff} {
			b[n] = v
			parseDiagMessages(b, "udp", 1)
		}
	}
}

// TestDiagSockets dumps this process's own namespace and finds a listener
// it opened, with its backlog as Send-Q and IPV6_V6ONLY as set.
func TestDiagSockets(t *testing.T) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		t.Skipf("no NETLINK_SOCK_DIAG socket here: %v", err)
	}
	defer unix.Close(fd)
	l, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6 here: %v", err)
	}
	defer unix.Close(l)
	if err := unix.SetsockoptInt(l, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(l, &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()}); err != nil {
		t.Skipf("cannot bind ::1: %v", err)
	}
	if err := unix.Listen(l, 7); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(l)
	port := sa.(*unix.SockaddrInet6).Port
	var st unix.Stat_t
	if err := unix.Fstat(l, &st); err != nil {
		t.Fatal(err)
	}
	socks, err := DiagSockets(fd)
	if err != nil {
		t.Fatal(err)
	}
	want := Socket{Side: SideSandbox, Netid: "tcp", State: "LISTEN", SendQ: 7, V6: true, V6Only: true,
		Local: netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)), Inode: st.Ino}
	for _, s := range socks {
		if s.Local == want.Local && s.Netid == "tcp" {
			if !reflect.DeepEqual(s, want) {
				t.Errorf("listener: got %+v, want %+v", s, want)
			}
			return
		}
	}
	t.Errorf("listener on %s not in the dump of %d sockets", want.Local, len(socks))
}
