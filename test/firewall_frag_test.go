package test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFirewallFragments: at MTU 1280 (offload off, so the sandbox's
// kernel really fragments) 3000- and 20000-byte UDP datagrams to a port
// dropped in INPUT or FORWARD reach nothing: a sink on the host listening
// there records every datagram and must see none (as for a 100-byte
// one). The same datagrams to a port not dropped come back intact from
// the host's echo server.
func TestFirewallFragments(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	sinkPort := hostPort + 2
	sink := startSink(t, []string{"ip", "netns", "exec", ns}, fmt.Sprintf("127.0.0.1:%d", sinkPort), fmt.Sprintf("%s:%d", hostAddr, sinkPort))
	sizes := "100,3000,20000"
	for _, tc := range []struct {
		chain, offload   string
		dropped, allowed string
	}{
		{"INPUT", "off", fmt.Sprintf("10.0.2.2:%d", sinkPort), fmt.Sprintf("%s:%d", hostAddr, hostPort)},
		{"FORWARD", "off", fmt.Sprintf("%s:%d", hostAddr, sinkPort), fmt.Sprintf("10.0.2.2:%d", hostPort)},
		// With offload the sandbox's kernel may hand over large UDP
		// datagrams whole instead of fragments; no bypass either way.
		{"FORWARD", "auto", fmt.Sprintf("%s:%d", hostAddr, sinkPort), fmt.Sprintf("10.0.2.2:%d", hostPort)},
	} {
		t.Run(tc.chain+"/offload-"+tc.offload, func(t *testing.T) {
			rules := fmt.Sprintf("*filter\n-A %s -p udp --dport %d -j DROP\nCOMMIT\n", tc.chain, sinkPort)
			r := tunstack(t, runOpts{netns: ns, env: []string{helperEnv + "=udpsizes"}},
				"run", "--mtu", "1280", "--offload", tc.offload, "--rules", writeRules(t, rules), "--", "sh", "-c",
				fmt.Sprintf("%s x %s %s; %s x %s %s", helperPath, tc.dropped, sizes, helperPath, tc.allowed, sizes))
			want := "100 lost\n3000 lost\n20000 lost\n100 ok\n3000 ok\n20000 ok\n"
			if r.stdout != want {
				t.Fatalf("%s DROP --dport %d: got\n%s\nwant\n%s\nstderr: %s", tc.chain, sinkPort, r.stdout, want, r.stderr)
			}
			if got := sink(); got != "" {
				t.Fatalf("%s DROP --dport %d: the host received %q", tc.chain, sinkPort, got)
			}
		})
	}
}

// TestFirewallFragmentedSYN: a TCP SYN split into 8-byte IP fragments
// (raw socket, from inside the sandbox) to a port dropped with --syn in
// INPUT or FORWARD gets no answer, while the same fragmented SYN to the
// other path, not dropped, is answered with a SYN-ACK (so the fragments
// do reach the stack, and the silence is the rule's).
func TestFirewallFragmentedSYN(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	for _, tc := range []struct{ chain, dropped, allowed string }{
		{"INPUT", "10.0.2.2", hostAddr},
		{"FORWARD", hostAddr, "10.0.2.2"},
	} {
		t.Run(tc.chain, func(t *testing.T) {
			rules := fmt.Sprintf("*filter\n-A %s -p tcp --syn --dport %d -j DROP\nCOMMIT\n", tc.chain, hostPort)
			r := tunstack(t, runOpts{netns: ns, env: []string{helperEnv + "=synfrag"}},
				"run", "--mtu", "1280", "--rules", writeRules(t, rules), "--", "sh", "-c",
				fmt.Sprintf("%s x %s %d; %s x %s %d", helperPath, tc.dropped, hostPort, helperPath, tc.allowed, hostPort))
			if want := "no answer\nsyn-ack\n"; r.stdout != want {
				t.Fatalf("fragmented SYN, %s DROP: got %q, want %q\nstderr: %s", tc.chain, r.stdout, want, r.stderr)
			}
		})
	}
}

// udpSizes sends one datagram of each size in a comma list to addr and
// prints "SIZE ok" when the echo came back identical, "SIZE lost" when
// nothing came within 2 s.
func udpSizes(addr, list string) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.Close()
	buf := make([]byte, 65536)
	for i, s := range strings.Split(list, ",") {
		n, _ := strconv.Atoi(s)
		msg := make([]byte, n)
		for j := range msg {
			msg[j] = byte(j*13 + i)
		}
		if _, err := c.Write(msg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := c.Read(buf)
		switch {
		case err != nil:
			fmt.Printf("%d lost\n", n)
		case bytes.Equal(buf[:k], msg):
			fmt.Printf("%d ok\n", n)
		default:
			fmt.Printf("%d corrupt (%d bytes back)\n", n, k)
		}
	}
	return 0
}

// synFrag sends a TCP SYN to addr:port as IPv4 fragments carrying 8
// bytes of TCP header each, then waits 2 s for a SYN-ACK or RST from
// addr:port and prints "syn-ack", "rst" or "no answer".
func synFrag(dst, port string) int {
	p, _ := strconv.Atoi(port)
	d, err := netip.ParseAddr(dst)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	src, err := sourceFor(d)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raw tcp socket:", err)
		return 2
	}
	defer unix.Close(rx)
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raw socket:", err)
		return 2
	}
	defer unix.Close(tx)
	const sport = 40404
	seg := tcpSYN(src, d, sport, uint16(p))
	to := &unix.SockaddrInet4{Addr: d.As4()}
	for off := 0; off < len(seg); off += 8 {
		end := min(off+8, len(seg))
		if err := unix.Sendto(tx, ipv4Frag(src, d, 0x5151, off, end < len(seg), seg[off:end]), 0, to); err != nil {
			fmt.Fprintln(os.Stderr, "send fragment:", err)
			return 2
		}
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil || n < 40 {
			continue
		}
		ihl := int(buf[0]&15) * 4
		if netip.AddrFrom4([4]byte(buf[12:16])) != d || n < ihl+14 {
			continue
		}
		tcp := buf[ihl:n]
		if binary.BigEndian.Uint16(tcp[0:]) != uint16(p) || binary.BigEndian.Uint16(tcp[2:]) != sport {
			continue
		}
		switch fl := tcp[13]; {
		case fl&0x12 == 0x12:
			fmt.Println("syn-ack")
		case fl&0x04 != 0:
			fmt.Println("rst")
		default:
			continue
		}
		return 0
	}
	fmt.Println("no answer")
	return 0
}

// sourceFor is the local address the kernel would use towards d.
func sourceFor(d netip.Addr) (netip.Addr, error) {
	c, err := net.Dial("udp4", netip.AddrPortFrom(d, 9).String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func csum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// tcpSYN is a 20-byte TCP SYN with a valid checksum.
func tcpSYN(src, dst netip.Addr, sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	b[12] = 5 << 4
	b[13] = 0x02
	binary.BigEndian.PutUint16(b[14:], 65535)
	s, d := src.As4(), dst.As4()
	pseudo := append(append(s[:], d[:]...), 0, 6, 0, 20)
	binary.BigEndian.PutUint16(b[16:], fold(csum(csum(0, pseudo), b)))
	return b
}

// ipv4Frag is one IPv4 fragment (protocol TCP) carrying data at offset
// off of the datagram.
func ipv4Frag(src, dst netip.Addr, id uint16, off int, more bool, data []byte) []byte {
	b := make([]byte, 20+len(data))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], fo)
	b[8], b[9] = 64, 6
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], fold(csum(0, b[:20])))
	copy(b[20:], data)
	return b
}

// TestFirewallFragmentsIPv6: the same over IPv6 (fragment headers): a
// port dropped in INPUT (rules6) receives nothing of 3000- and
// 20000-byte datagrams to the gateway, while another port echoes them
// back intact from the host's [::1].
func TestFirewallFragmentsIPv6(t *testing.T) {
	needTun(t, 0)
	ns := hostNS(t, hostPort)
	allowed, sinkPort := hostPort+1, hostPort+2
	startCTServer(t, []string{"ip", "netns", "exec", ns}, fmt.Sprintf("[::1]:%d", allowed), fmt.Sprintf("[::1]:%d", allowed))
	sink := startSink(t, []string{"ip", "netns", "exec", ns}, fmt.Sprintf("[::1]:%d", sinkPort))
	rules := fmt.Sprintf("*filter\n-A INPUT -p udp --dport %d -j DROP\nCOMMIT\n", sinkPort)
	sizes := "100,3000,20000"
	r := tunstack(t, runOpts{netns: ns, env: []string{helperEnv + "=udpsizes"}},
		"run", "--mtu", "1280", "--offload", "off", "--rules6", writeRules(t, rules), "--", "sh", "-c",
		fmt.Sprintf("%s x [fd00::2]:%d %s; %s x [fd00::2]:%d %s", helperPath, sinkPort, sizes, helperPath, allowed, sizes))
	if want := "100 lost\n3000 lost\n20000 lost\n100 ok\n3000 ok\n20000 ok\n"; r.stdout != want {
		t.Fatalf("ip6tables INPUT DROP --dport %d: got\n%s\nwant\n%s\nstderr: %s", sinkPort, r.stdout, want, r.stderr)
	}
	if got := sink(); got != "" {
		t.Fatalf("ip6tables INPUT DROP --dport %d: the host received %q", sinkPort, got)
	}
}

// startSink runs the udpsink helper (argv prefix, e.g. ip netns exec) on
// addrs; the returned function reports (and forgets) the sizes of the
// datagrams received so far, one per line.
func startSink(t *testing.T, prefix []string, addrs ...string) func() string {
	t.Helper()
	argv := append(append(append([]string{}, prefix...), helperPath), addrs...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"=udpsink")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start udpsink: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	rd := bufio.NewReader(stdout)
	if line, err := rd.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("udpsink did not start: %q %v", line, err)
	}
	var mu sync.Mutex
	var got strings.Builder
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			got.WriteString(line)
			mu.Unlock()
		}
	}()
	return func() string {
		time.Sleep(500 * time.Millisecond) // let late datagrams land
		mu.Lock()
		defer mu.Unlock()
		s := got.String()
		got.Reset()
		return s
	}
}

// udpSink listens for UDP on each address, prints "ready", then one line
// per datagram ("SIZE from ADDR"), until stdin closes.
func udpSink(addrs []string) int {
	var mu sync.Mutex
	for _, a := range addrs {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Printf("%d from %s\n", n, from)
				mu.Unlock()
			}
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}
