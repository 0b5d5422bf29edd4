package relay

import (
	"crypto/sha256"
	"io"
	"net"
	"testing"
)

// spliced relays a and b the way Pipe once did for two kernel sockets:
// TCPConn.ReadFrom, which the Go runtime does with splice(2). Kept for
// the benchmarks' reference row; it moved less than Copy (see Pipe).
func spliced(a, b *net.TCPConn) {
	go func() { b.ReadFrom(a); b.CloseWrite() }()
	a.ReadFrom(b)
	a.CloseWrite()
}

// relayedFor is relayed by Pipe (the userspace Copy) or, with splice, by
// spliced.
func relayedFor(t testing.TB, splice bool) (client, server *net.TCPConn, done chan struct{}) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	done = make(chan struct{})
	go func() {
		defer close(done)
		if splice {
			spliced(a, b)
			a.Close()
			b.Close()
		} else {
			Pipe(a, b)
		}
	}()
	return client, server, done
}

// TestKernelPathIntact: bytes cross a Pipe of two kernel sockets (a
// spliced forward) intact in both directions at once, and a half-close
// passes through.
func TestKernelPathIntact(t *testing.T) {
	client, server, done := relayedFor(t, false)
	const n = 8 << 20
	src := make([]byte, n)
	for i := range src {
		src[i] = byte(i * 7 >> 3)
	}
	want := sha256.Sum256(src)
	sums := make(chan [32]byte, 2)
	read := func(c *net.TCPConn) {
		h := sha256.New()
		io.Copy(h, c)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sums <- s
	}
	go read(server)
	go read(client)
	go func() { client.Write(src); client.CloseWrite() }()
	go func() { server.Write(src); server.CloseWrite() }()
	for range 2 {
		if got := <-sums; got != want {
			t.Fatalf("a direction's bytes differ: sha256 %x, want %x", got, want)
		}
	}
	<-done
}

// BenchmarkPipeKernel moves 64 MiB one way through a Pipe of two loopback
// TCP connections, by Pipe (Copy) and by splice(2) for reference.
func BenchmarkPipeKernel(b *testing.B) {
	for _, bc := range []struct {
		name   string
		splice bool
	}{{"splice", true}, {"copy", false}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 1<<20)
			const total = 64 << 20
			b.SetBytes(total)
			for b.Loop() {
				client, server, done := relayedFor(b, bc.splice)
				go func() {
					for sent := 0; sent < total; sent += len(buf) {
						client.Write(buf)
					}
					client.CloseWrite()
				}()
				io.Copy(io.Discard, server)
				server.Close()
				client.Close()
				<-done
			}
		})
	}
}

// BenchmarkPipeKernelRR bounces one byte through a Pipe of two loopback
// TCP connections and back: the latency a spliced forward adds.
func BenchmarkPipeKernelRR(b *testing.B) {
	for _, bc := range []struct {
		name   string
		splice bool
	}{{"splice", true}, {"copy", false}} {
		b.Run(bc.name, func(b *testing.B) {
			client, server, done := relayedFor(b, bc.splice)
			client.SetNoDelay(true)
			server.SetNoDelay(true)
			go func() {
				buf := make([]byte, 1)
				for {
					if _, err := server.Read(buf); err != nil {
						return
					}
					server.Write(buf)
				}
			}()
			buf := make([]byte, 1)
			for b.Loop() {
				client.Write(buf)
				if _, err := client.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
			client.Close()
			server.Close()
			<-done
		})
	}
}
