package tun_test

import (
	"fmt"
	"log"
	"net/netip"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/tun"
)

// A stack serving a TUN device in the current network namespace, as a
// process inside a namespace would run it (it needs CAP_NET_ADMIN there).
// The kernel's side of the link gets 198.18.0.1/24, MTU 9000 and link up;
// the stack is 198.18.0.2 on the other side. Kernel programs in the
// namespace then reach the stack's listeners at 198.18.0.2.
//
// This example is compiled but not run by go test, since it needs
// privileges; TestOpenEndpoint runs the same steps in a network namespace
// it creates.
func ExampleOpenEndpoint() {
	ep, err := tun.OpenEndpoint(tun.Config{Name: "tun0"}, tun.LinkConfig{
		Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")},
		MTU:       9000,
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	s, err := stack.New(stack.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // also closes the device
	if _, err := s.AddNIC(stack.NICConfig{
		Name:      "tun0",
		Endpoint:  ep,
		Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")},
	}); err != nil {
		log.Fatal(err)
	}
	ln, err := s.Listen("tcp", "198.18.0.2:80")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println("serving on", ln.Addr(), "behind", ep.Device().Name, "MTU", ep.MTU())
}
