package netdev_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"

	"github.com/tunstack/tunstack/netdev"
	"github.com/tunstack/tunstack/stack"
)

// udpDevice is a netdev.Device that carries each IP packet in one UDP
// datagram to a fixed peer: the smallest "own transport". A VPN tunnel or
// a QUIC datagram stream would encrypt or frame here.
type udpDevice struct {
	conn net.PacketConn
	peer net.Addr
	mtu  int
}

func (d *udpDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, from, err := d.conn.ReadFrom(bufs[0][offset:])
		if err != nil {
			return 0, err
		}
		if from.String() == d.peer.String() { // ignore strangers
			sizes[0] = n
			return 1, nil
		}
	}
}

func (d *udpDevice) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := d.conn.WriteTo(b[offset:], d.peer); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (d *udpDevice) MTU() int       { return d.mtu }
func (d *udpDevice) BatchSize() int { return 1 }
func (d *udpDevice) Close() error   { return d.conn.Close() }

// newStack returns a stack whose one NIC is dev, with address addr.
func newStack(dev netdev.Device, addr string) *stack.Stack {
	s, err := stack.New(stack.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_, err = s.AddNIC(stack.NICConfig{
		Name:      "udp0",
		Endpoint:  netdev.NewEndpoint(dev, netdev.EndpointOptions{}),
		Addresses: []netip.Prefix{netip.MustParsePrefix(addr)}, // and the on-link /24 route
	})
	if err != nil {
		log.Fatal(err)
	}
	return s
}

// Two stacks joined by UDP datagrams on 127.0.0.1: each stack's NIC is a
// Device that sends its packets over a net.PacketConn. A TCP connection
// between the stacks runs inside the datagrams.
func Example_udpTransport() {
	ca, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	cb, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	// 1400 leaves room for the outer IP and UDP headers on most paths.
	a := newStack(&udpDevice{conn: ca, peer: cb.LocalAddr(), mtu: 1400}, "198.18.0.1/24")
	defer a.Close()
	b := newStack(&udpDevice{conn: cb, peer: ca.LocalAddr(), mtu: 1400}, "198.18.0.2/24")
	defer b.Close()

	ln, err := b.Listen("tcp", "198.18.0.2:7")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()

	c, err := a.Dial("tcp", "198.18.0.2:7")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 100_000) // many packets
	for i := range msg {
		msg[i] = byte(i)
	}
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		log.Fatal(err)
	}
	fmt.Println("echoed", len(got), "bytes intact:", string(got) == string(msg))
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	fmt.Println("from", local.Addr(), "to", c.RemoteAddr())
	// Output:
	// echoed 100000 bytes intact: true
	// from 198.18.0.1 to 198.18.0.2:7
}
