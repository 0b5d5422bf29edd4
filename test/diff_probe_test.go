package test

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The probe helper mode sends the differential test's traffic and prints
// one line describing what came back, the same on Linux and on tunstack
// (both clients are Linux sockets; only what answers them differs):
//
//	probe tcp ADDR:PORT      connect, GET /peer, read to EOF:
//	                         "ok port=P bytes=N", or the error
//	probe udp ADDR:PORT N    N datagrams, one at a time, each awaiting its
//	                         echo: "echoed=K/N" and the first error, with
//	                         the ICMP type and code from IP_RECVERR
func probeHelper(args []string) int {
	if len(args) < 2 {
		fmt.Println("probe: want KIND ADDR [N]")
		return 2
	}
	switch args[0] {
	case "tcp":
		fmt.Println(probeTCP(args[1]))
	case "udp":
		n := 1
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[2])
		}
		fmt.Println(probeUDP(args[1], n))
	default:
		fmt.Printf("probe: unknown kind %q\n", args[0])
		return 2
	}
	return 0
}

func probeTCP(addr string) string {
	// Not a whole number of seconds: Linux 6.x resends a SYN every
	// second at first (tcp_syn_linear_timeouts), and a 2 s timeout
	// raced the third.
	c, err := net.DialTimeout("tcp", addr, 2500*time.Millisecond)
	if err != nil {
		return err.Error()
	}
	// Close with a reset: the next scenario must not see this one's
	// FIN retransmissions (its rules may drop them).
	defer func() { c.(*net.TCPConn).SetLinger(0); c.Close() }()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "GET /peer HTTP/1.0\r\nHost: probe\r\n\r\n"); err != nil {
		return "ok, then " + err.Error()
	}
	b, err := io.ReadAll(c)
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	port := "?"
	if p, ok := strings.CutPrefix(body, "port="); ok && len(p) >= 5 {
		port = strings.TrimLeft(p[:5], "0")
	}
	if err != nil {
		return fmt.Sprintf("ok, then %v after %d bytes", err, len(b))
	}
	return fmt.Sprintf("ok port=%s bytes=%d", port, len(body))
}

// probeUDP uses a raw socket fd for IP_RECVERR, which makes the kernel
// queue each ICMP error with its type and code.
func probeUDP(addr string, n int) string {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err.Error()
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err.Error()
	}
	defer syscall.Close(fd)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_RECVERR, 1)
	tv := syscall.NsecToTimeval(int64(700 * time.Millisecond))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	sa := &syscall.SockaddrInet4{Port: ua.Port}
	copy(sa.Addr[:], ua.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		return err.Error()
	}
	echoed, first := 0, ""
	buf := make([]byte, 128)
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("probe %d", i)
		_, err := syscall.Write(fd, []byte(msg))
		k := 0
		if err == nil {
			k, err = syscall.Read(fd, buf)
		}
		switch {
		case err == nil && string(buf[:k]) == msg:
			echoed++
			continue
		case err == syscall.EAGAIN:
			err = fmt.Errorf("timeout")
		case err == nil:
			err = fmt.Errorf("wrong echo %q", buf[:k])
		default:
			err = fmt.Errorf("%s (%v)", icmpError(fd), err)
		}
		if first == "" {
			first = " " + err.Error()
		}
	}
	return fmt.Sprintf("echoed=%d/%d%s", echoed, n, first)
}

// icmpError reads the ICMP type and code of the error queued on fd.
func icmpError(fd int) string {
	b, oob := make([]byte, 256), make([]byte, 512)
	_, oobn, _, _, err := syscall.Recvmsg(fd, b, oob, syscall.MSG_ERRQUEUE)
	if err != nil {
		return "no queued error: " + err.Error()
	}
	msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		// struct sock_extended_err: errno u32, origin, type, code, pad u8.
		if m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_RECVERR && len(m.Data) >= 8 {
			return fmt.Sprintf("icmp type=%d code=%d", m.Data[5], m.Data[6])
		}
	}
	return "no IP_RECVERR message"
}
