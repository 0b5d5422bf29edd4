package vnet_test

import (
	"fmt"
	"io"
	"log"
	"net/netip"
	"time"

	"github.com/tunstack/tunstack/stack/vnet"
)

// A program (not a test) that builds a three-host network on a switch, one
// of whose ports is slow, and talks TCP across it.
func Example() {
	n := vnet.NewNetwork(vnet.Options{})
	defer n.Close()
	sw := n.Switch()
	hosts := map[string]*vnet.Host{}
	for i, name := range []string{"db", "app", "client"} {
		h, err := n.AddHost(name)
		if err != nil {
			log.Fatal(err)
		}
		addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}), 24)
		port, err := sw.Attach(h, addr)
		if err != nil {
			log.Fatal(err)
		}
		if name == "client" {
			port.Impair(vnet.Impairment{Delay: 5 * time.Millisecond})
		}
		hosts[name] = h
	}

	ln, err := hosts["db"].Stack.Listen("tcp", ":5432")
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
		io.WriteString(c, "rows from "+c.LocalAddr().String())
	}()

	c, err := hosts["app"].Stack.Dial("tcp", "198.18.0.1:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	fmt.Println(string(b))
	// Output: rows from 198.18.0.1:5432
}
