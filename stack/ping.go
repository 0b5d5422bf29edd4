package stack

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// ICMP echo message types (RFC 792, RFC 4443).
const (
	icmpv4EchoRequest = 8
	icmpv4EchoReply   = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
	icmpHeaderLen     = 8
)

// pingSeq makes every echo request of the process distinct, so a late reply
// to an earlier Ping is never taken for the current one.
var pingSeq atomic.Uint32

// Ping sends an ICMP echo request to addr through the stack and waits for
// the matching reply, returning the round-trip time. It uses an
// unprivileged ping socket (SOCK_DGRAM, IPPROTO_ICMP), as ping(8) does on
// Linux. Give ctx a deadline: a lost request or reply is only noticed when
// ctx ends, and the error then satisfies errors.Is(err,
// context.DeadlineExceeded).
func (s *Stack) Ping(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	addr = addr.Unmap()
	rtt, err := s.ping(ctx, addr)
	if err != nil {
		return 0, &net.OpError{Op: "ping", Net: "icmp", Addr: &net.IPAddr{IP: addr.AsSlice()}, Err: netErr(err)}
	}
	return rtt, nil
}

func (s *Stack) ping(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	fam, proto, req, rep := AF_INET, IPPROTO_ICMP, byte(icmpv4EchoRequest), byte(icmpv4EchoReply)
	if addr.Is6() {
		fam, proto, req, rep = AF_INET6, IPPROTO_ICMPV6, icmpv6EchoRequest, icmpv6EchoReply
	}
	so, err := s.Socket(fam, SOCK_DGRAM, proto)
	if err != nil {
		return 0, syscallErr("socket", err)
	}
	defer so.Close()
	if err := so.Connect(netip.AddrPortFrom(addr, 0)); err != nil {
		return 0, syscallErr("connect", err)
	}
	seq := uint16(pingSeq.Add(1))
	msg := make([]byte, icmpHeaderLen+8)
	msg[0] = req
	// The stack fills in the identifier (the socket's port) and checksum.
	binary.BigEndian.PutUint16(msg[6:], seq)
	start := time.Now()
	binary.BigEndian.PutUint64(msg[8:], uint64(start.UnixNano()))
	if _, err := so.Write(msg); err != nil {
		return 0, syscallErr("sendto", err)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := so.recv(ctx, buf, 0, false)
		if err != nil {
			return 0, err
		}
		if n >= len(msg) && buf[0] == rep && binary.BigEndian.Uint16(buf[6:]) == seq && string(buf[8:n]) == string(msg[8:]) {
			return time.Since(start), nil
		}
	}
}

// syscallErr names the failing call the way the net package does
// ("connect: network is unreachable").
func syscallErr(call string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return os.NewSyscallError(call, errno)
	}
	return err
}
