package netfilter_test

import (
	"errors"
	"fmt"
	"log"
	"net/netip"
	"syscall"

	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack/vnet"
)

// A firewall on a stack: iptables rules, written as on Linux, reject one
// port and let another through.
func ExampleNew() {
	n := vnet.NewNetwork(vnet.Options{})
	defer n.Close()
	client, _ := n.AddHost("client")
	server, _ := n.AddHost("server")
	if _, err := n.Link(client, netip.MustParsePrefix("198.18.0.1/24"), server, netip.MustParsePrefix("198.18.0.2/24")); err != nil {
		log.Fatal(err)
	}
	for _, port := range []string{":80", ":23"} {
		ln, err := server.Stack.Listen("tcp", port)
		if err != nil {
			log.Fatal(err)
		}
		defer ln.Close()
	}

	fw, err := netfilter.New(server.Stack, netfilter.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := fw.Exec(netfilter.IPv4, []string{"-A", "INPUT", "-p", "tcp", "--dport", "23", "-j", "REJECT", "--reject-with", "tcp-reset"}); err != nil {
		log.Fatal(err)
	}

	for _, addr := range []string{"198.18.0.2:80", "198.18.0.2:23"} {
		c, err := client.Stack.Dial("tcp", addr)
		if err != nil {
			fmt.Println(addr, "refused:", errors.Is(err, syscall.ECONNREFUSED))
			continue
		}
		c.Close()
		fmt.Println(addr, "connected")
	}
	// Output:
	// 198.18.0.2:80 connected
	// 198.18.0.2:23 refused: true
}
