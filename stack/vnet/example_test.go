package vnet_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/tunstack/tunstack/stack/vnet"
)

// A program (not a test) that builds a three-host network on a switch, one
// of whose ports adds 5 ms of delay, and talks TCP across it.
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
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "rows for "+c.RemoteAddr().(*net.TCPAddr).IP.String())
			c.Close()
		}
	}()

	for _, name := range []string{"app", "client"} {
		slow := name == "client"
		start := time.Now()
		c, err := hosts[name].Stack.Dial("tcp", "198.18.0.1:5432")
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		// The client's port adds 5 ms each way, and the handshake and
		// the reply take at least two crossings; the app's may take that
		// long on a busy machine, so only the client's is certain.
		if slow {
			fmt.Println(name, "got", string(b), "after 10 ms or more:", time.Since(start) >= 10*time.Millisecond)
		} else {
			fmt.Println(name, "got", string(b))
		}
	}
	// Output:
	// app got rows for 198.18.0.2
	// client got rows for 198.18.0.3 after 10 ms or more: true
}
