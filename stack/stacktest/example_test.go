package stacktest_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

	"github.com/tunstack/tunstack/stack/stacktest"
)

// Two hosts on a link: an HTTP server on one, a client on the other, all
// in-process.
func Example_http() {
	n := stacktest.NewNetwork(stacktest.Options{})
	defer n.Close()
	client, _ := n.AddHost("client")
	server, _ := n.AddHost("server")
	n.Link(client, netip.MustParsePrefix("198.18.0.1/24"), server, netip.MustParsePrefix("198.18.0.2/24"))

	ln, err := server.Stack.Listen("tcp", ":80")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s", r.URL.Path[1:], server.Name)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	tr := &http.Transport{DialContext: client.Stack.DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://198.18.0.2/gopher")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body))
	// Output: 200 OK hello gopher from server
}

// A transfer over a link that loses 5% of the packets each way arrives
// intact: TCP retransmits.
func ExampleLink_Impair() {
	n := stacktest.NewNetwork(stacktest.Options{Seed: 1})
	defer n.Close()
	a, _ := n.AddHost("a")
	b, _ := n.AddHost("b")
	l, _ := n.Link(a, netip.MustParsePrefix("198.18.0.1/24"), b, netip.MustParsePrefix("198.18.0.2/24"))
	l.Impair(stacktest.Impairment{Loss: 0.05, Delay: time.Millisecond})

	ln, _ := b.Stack.Listen("tcp", ":9")
	defer ln.Close()
	got := make(chan [32]byte)
	go func() {
		c, _ := ln.Accept()
		h := sha256.New()
		io.Copy(h, c)
		c.Close()
		got <- [32]byte(h.Sum(nil))
	}()

	c, err := a.Stack.Dial("tcp", "198.18.0.2:9")
	if err != nil {
		panic(err)
	}
	h := sha256.New()
	data := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{}), 2<<20), h)
	io.Copy(c, data)
	c.Close()
	fmt.Println("intact:", <-got == [32]byte(h.Sum(nil)), "lost packets:", l.Stats(a).Dropped > 0)
	// Output: intact: true lost packets: true
}

// A partition makes a dial time out; after Heal it succeeds.
func ExampleLink_Partition() {
	n := stacktest.NewNetwork(stacktest.Options{})
	defer n.Close()
	a, _ := n.AddHost("a")
	b, _ := n.AddHost("b")
	l, _ := n.Link(a, netip.MustParsePrefix("198.18.0.1/24"), b, netip.MustParsePrefix("198.18.0.2/24"))
	ln, _ := b.Stack.Listen("tcp", ":22")
	defer ln.Close()

	l.Partition()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := a.Stack.DialContext(ctx, "tcp", "198.18.0.2:22")
	fmt.Println("partitioned:", err, errors.Is(err, context.DeadlineExceeded))

	l.Heal()
	c, err := a.Stack.Dial("tcp", "198.18.0.2:22")
	fmt.Println("healed:", err)
	if err == nil {
		c.Close()
	}
	// Output:
	// partitioned: dial tcp 198.18.0.2:22: i/o timeout true
	// healed: <nil>
}
