package stack_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/netip"
	"time"

	"github.com/tunstack/tunstack/netdev"
	"github.com/tunstack/tunstack/stack"
)

// newHost makes a stack whose one NIC is dev, with address addr. AddNIC also
// adds the route to addr's prefix (here a /24), as `ip addr add` does.
func newHost(dev netdev.Device, addr string) *stack.Stack {
	s, err := stack.New(stack.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_, err = s.AddNIC(stack.NICConfig{
		Name:      "eth0",
		Endpoint:  netdev.NewEndpoint(dev, netdev.EndpointOptions{}),
		Addresses: []netip.Prefix{netip.MustParsePrefix(addr)},
	})
	if err != nil {
		log.Fatal(err)
	}
	return s
}

// Two userspace stacks joined by an in-memory link, a listener on one, a
// dialer on the other, and bytes across.
func Example_twoStacks() {
	devA, devB := netdev.Pipe(1500) // what one writes, the other reads
	a := newHost(devA, "198.18.0.1/24")
	defer a.Close()
	b := newHost(devB, "198.18.0.2/24")
	defer b.Close()

	ln, err := b.Listen("tcp", "198.18.0.2:80") // a net.Listener
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
		io.WriteString(c, "hello from "+c.LocalAddr().String())
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", "198.18.0.2:80") // a net.Conn
	if err != nil {
		log.Fatal(err) // errors wrap syscall.Errno: errors.Is(err, syscall.ECONNREFUSED)
	}
	defer c.Close()
	reply, err := io.ReadAll(c)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output: hello from 198.18.0.2:80
}
