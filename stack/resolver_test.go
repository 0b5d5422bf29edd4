package stack_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

// serveDNS answers every A query on pc with addr, until pc is closed.
func serveDNS(pc net.PacketConn, addr netip.Addr) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if len(q) < 12 {
			continue
		}
		// Keep header and question, drop the EDNS record Go adds.
		i := 12
		for i < len(q) && q[i] != 0 {
			i += int(q[i]) + 1
		}
		i += 5
		if i > len(q) {
			continue
		}
		qtype := binary.BigEndian.Uint16(q[i-4:])
		resp := append([]byte(nil), q[:i]...)
		binary.BigEndian.PutUint16(resp[2:], 0x8180)
		binary.BigEndian.PutUint16(resp[10:], 0)
		if qtype == 1 {
			binary.BigEndian.PutUint16(resp[6:], 1)
			resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			resp = append(resp, addr.AsSlice()...)
		} else {
			binary.BigEndian.PutUint16(resp[6:], 0)
		}
		pc.WriteTo(resp, from)
	}
}

func TestResolverAndDialByName(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, b, _ := stacktest.NewPair(t, stacktest.Options{})
	pc, err := b.Stack.ListenPacket("udp4", "198.18.0.2:53")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveDNS(pc, netip.MustParseAddr("198.18.0.2"))
	ln, err := b.Stack.Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()

	r := a.Stack.Resolver(netip.MustParseAddrPort("198.18.0.2:53"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip4", "server.test")
	if err != nil || len(ips) != 1 || ips[0] != netip.MustParseAddr("198.18.0.2") {
		t.Fatalf("LookupNetIP = %v, %v", ips, err)
	}
	d := stack.Dialer{Stack: a.Stack, Resolver: r, Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp4", "server.test:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}

	// Without a resolver, names fail with a DNS error naming the host.
	_, err = a.Stack.Dial("tcp", "server.test:8080")
	var de *net.DNSError
	if !errors.As(err, &de) || de.Name != "server.test" {
		t.Fatalf("Dial by name without resolver: %v", err)
	}
}

func TestPing(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, _, l := stacktest.NewPair(t, stacktest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rtt, err := a.Stack.Ping(ctx, netip.MustParseAddr("198.18.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rtt %v", rtt)

	l.Partition()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := a.Stack.Ping(ctx2, netip.MustParseAddr("198.18.0.2")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping over partition: %v, want deadline exceeded", err)
	}
}
