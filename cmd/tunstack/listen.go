package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/control"
)

func newListenCmd() *cobra.Command {
	var name string
	var udp, once bool
	cmd := &cobra.Command{
		Use:   "listen [--name N] [--udp] [--once] [HOST]:PORT -- COMMAND [ARG...]",
		Short: "Run a command for each connection the sandbox makes to a port on the stack",
		Long: `listen asks a running instance to listen on its stack, on HOST:PORT (default
host: the gateway address 10.0.2.2, so the sandbox connects to
10.0.2.2:PORT; such a listener takes the port's place on the host's
loopback for the sandbox), and runs COMMAND for each accepted connection,
inetd style, with the connection as its standard input and output. The
peer's address is in $TUNSTACK_PEER ("10.0.2.100:40000"). Commands run
concurrently; listen runs until interrupted.

With --udp, listen binds a UDP socket and runs one COMMAND per peer
address: its standard input and output are a SOCK_SEQPACKET unix socket,
each read returns one datagram from that peer and each write sends one to
it. The flow ends when COMMAND exits; the next datagram from the peer
starts a new COMMAND.

--once handles one connection (or UDP flow) and exits with its command's
status.`,
		Example: `  # A one-line server the sandbox reaches at 10.0.2.2:7000
  tunstack listen 7000 -- sh -c 'echo hello from the host'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d := cmd.ArgsLenAtDash(); d != 1 {
				return errors.New("usage: tunstack listen [--name N] [--udp] [HOST]:PORT -- COMMAND [ARG...]")
			}
			addr := args[0]
			if !strings.Contains(addr, ":") {
				addr = ":" + addr
			}
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			req := control.FDRequest{Op: control.FDListen, Addr: addr}
			if udp {
				req = control.FDRequest{Op: control.FDUDP, Bind: addr}
			}
			f, info, err := c.FD(cmd.Context(), req)
			if err != nil {
				return err
			}
			fc, err := net.FileConn(f)
			f.Close()
			if err != nil {
				return err
			}
			uc := fc.(*net.UnixConn)
			defer uc.Close()
			fmt.Fprintf(os.Stderr, "tunstack: listening on %s\n", info.Local)
			var code int
			if udp {
				code, err = serveUDP(uc, args[1:], once)
			} else {
				code, err = serveTCP(uc, args[1:], once)
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "instance name (default: the only running instance)")
	cmd.Flags().BoolVar(&udp, "udp", false, "UDP: one COMMAND per peer address")
	cmd.Flags().BoolVar(&once, "once", false, "handle one connection, then exit with its command's status")
	return cmd
}

// serveTCP receives accepted connections (the peer's address and an fd per
// message) and runs argv for each.
func serveTCP(ln *net.UnixConn, argv []string, once bool) (int, error) {
	buf := make([]byte, 256)
	oob := make([]byte, syscall.CmsgSpace(4))
	for {
		n, oobn, _, _, err := ln.ReadMsgUnix(buf, oob)
		if err != nil {
			return 0, fmt.Errorf("accept: %w", err)
		}
		fds := control.ParseRights(oob[:oobn])
		if n == 0 && len(fds) == 0 {
			return 0, errors.New("accept: the instance closed the listener")
		}
		if len(fds) == 0 {
			continue
		}
		for _, extra := range fds[1:] {
			syscall.Close(extra)
		}
		conn := os.NewFile(uintptr(fds[0]), "tunstack-conn")
		peer := string(buf[:n])
		if once {
			code, err := runWithConn(argv, conn, []string{"TUNSTACK_PEER=" + peer})
			conn.Close()
			return code, err
		}
		c, err := startWithConn(argv, conn, []string{"TUNSTACK_PEER=" + peer})
		conn.Close()
		if err != nil {
			var ee exitError
			if errors.As(err, &ee) {
				return ee.code, fmt.Errorf("%s: not found", argv[0])
			}
			fmt.Fprintf(os.Stderr, "tunstack: %v\n", err)
			continue
		}
		go c.Wait()
	}
}

// udpFlow is one peer's COMMAND and our end of its socket.
type udpFlow struct {
	uc *net.UnixConn
}

// serveUDP demultiplexes datagrams on an unconnected exported UDP socket
// (each message starts with the address header) by peer address.
func serveUDP(sock *net.UnixConn, argv []string, once bool) (int, error) {
	var mu sync.Mutex
	flows := map[netip.AddrPort]*udpFlow{}
	buf := make([]byte, 3+16+65536)
	started := false
	onceCode := make(chan int, 1)
	for {
		n, err := sock.Read(buf)
		if err != nil || n == 0 {
			if once && started {
				// The flow ended and closed the socket.
				return <-onceCode, nil
			}
			if err == nil {
				err = errors.New("the instance closed the socket")
			}
			return 0, fmt.Errorf("udp: %w", err)
		}
		peer, payload, ok := parseUDPHeader(buf[:n])
		if !ok {
			continue
		}
		mu.Lock()
		fl := flows[peer]
		mu.Unlock()
		if fl == nil {
			if once && started {
				continue
			}
			fl, err = startUDPFlow(sock, peer, argv, func(code int) {
				mu.Lock()
				delete(flows, peer)
				mu.Unlock()
				if once {
					onceCode <- code
					sock.Close()
				}
			})
			if err != nil {
				var ee exitError
				if errors.As(err, &ee) {
					return ee.code, fmt.Errorf("%s: not found", argv[0])
				}
				fmt.Fprintf(os.Stderr, "tunstack: %v\n", err)
				continue
			}
			started = true
			mu.Lock()
			flows[peer] = fl
			mu.Unlock()
		}
		fl.uc.Write(payload) // a flow whose command is gone drops it
	}
}

func startUDPFlow(sock *net.UnixConn, peer netip.AddrPort, argv []string, ended func(code int)) (*udpFlow, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "tunstack-udp-flow")
	theirs := os.NewFile(uintptr(fds[1]), "tunstack-udp-flow")
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, err
	}
	uc := fc.(*net.UnixConn)
	c, err := startWithConn(argv, theirs, []string{"TUNSTACK_PEER=" + peer.String()})
	theirs.Close()
	if err != nil {
		uc.Close()
		return nil, err
	}
	go func() {
		// Replies: prepend the peer's address header.
		hdr := udpHeader(peer)
		buf := make([]byte, len(hdr)+65536)
		copy(buf, hdr)
		for {
			n, err := uc.Read(buf[len(hdr):])
			if err != nil || n == 0 {
				return
			}
			sock.Write(buf[:len(hdr)+n])
		}
	}()
	go func() {
		code := waitStatus(c)
		uc.Close()
		ended(code)
	}()
	return &udpFlow{uc: uc}, nil
}

// udpHeader is the exported UDP socket's address header: the address
// length (4 or 16), the port (big endian), the address.
func udpHeader(ap netip.AddrPort) []byte {
	raw := ap.Addr().Unmap().AsSlice()
	return append([]byte{byte(len(raw)), byte(ap.Port() >> 8), byte(ap.Port())}, raw...)
}

func parseUDPHeader(msg []byte) (netip.AddrPort, []byte, bool) {
	if len(msg) < 3 {
		return netip.AddrPort{}, nil, false
	}
	l := int(msg[0])
	if (l != 4 && l != 16) || len(msg) < 3+l {
		return netip.AddrPort{}, nil, false
	}
	a, _ := netip.AddrFromSlice(msg[3 : 3+l])
	return netip.AddrPortFrom(a, uint16(msg[1])<<8|uint16(msg[2])), msg[3+l:], true
}
