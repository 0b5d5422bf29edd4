package netdev_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunstack/tunstack/netdev"
	"github.com/tunstack/tunstack/stack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestPipe checks order, batching, the MTU limit, short buffers and Close.
func TestPipe(t *testing.T) {
	a, b := netdev.Pipe(100)
	defer a.Close()
	pkts := [][]byte{[]byte("\x00\x00one"), []byte("\x00\x00two"), []byte("\x00\x00three")}
	if n, err := a.Write(pkts, 2); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	bufs := [][]byte{make([]byte, 10), make([]byte, 10)}
	sizes := make([]int, 2)
	n, err := b.Read(bufs, sizes, 4)
	if n != 2 || err != nil {
		t.Fatalf("Read = %d, %v; want 2 packets (the batch)", n, err)
	}
	if got := string(bufs[0][4:4+sizes[0]]) + "," + string(bufs[1][4:4+sizes[1]]); got != "one,two" {
		t.Errorf("read %q, want one,two", got)
	}
	if n, err = b.Read(bufs, sizes, 4); n != 1 || string(bufs[0][4:4+sizes[0]]) != "three" {
		t.Errorf("Read = %d, %v, %q; want three", n, err, bufs[0][4:4+sizes[0]])
	}
	if _, err := a.Write([][]byte{make([]byte, 101)}, 0); !errors.Is(err, netdev.ErrTooLarge) {
		t.Errorf("write over MTU: %v, want ErrTooLarge", err)
	}
	a.Write([][]byte{make([]byte, 20)}, 0)
	if _, err := b.Read(bufs, sizes, 0); !errors.Is(err, netdev.ErrTooLarge) {
		t.Errorf("read into a short buffer: %v, want ErrTooLarge", err)
	}
	done := make(chan error)
	go func() { _, err := b.Read(bufs, sizes, 0); done <- err }()
	time.Sleep(10 * time.Millisecond)
	a.Close() // closes both ends
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a blocked Read")
	}
}

// TestEndpointPipe moves 1 MiB between two stacks over a Pipe, with and
// without checksums and with headroom, and checks the stats and that
// closing the stacks stops every goroutine (TestMain's goleak).
func TestEndpointPipe(t *testing.T) {
	for _, opts := range []netdev.EndpointOptions{{}, {NoChecksums: true}, {Offset: 16}} {
		da, db := netdev.Pipe(1500)
		ea, eb := netdev.NewEndpoint(da, opts), netdev.NewEndpoint(db, opts)
		sa, sb := mustStack(t, ea, "198.18.0.1/24"), mustStack(t, eb, "198.18.0.2/24")
		ln, err := sb.Listen("tcp", ":9")
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
		go func() {
			c, err := sa.Dial("tcp", "198.18.0.2:9")
			if err != nil {
				return
			}
			c.Write(want)
			c.Close()
		}()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%+v: read %d bytes (%v), want %d intact", opts, len(got), err, len(want))
		}
		c.Close()
		ln.Close()
		if tx, rx := ea.Stats.TxPackets.Load(), eb.Stats.RxPackets.Load(); tx < 700 || rx < 700 {
			t.Errorf("%+v: a sent %d packets, b received %d; want over 700 each for 1 MiB at MTU 1500", opts, tx, rx)
		}
		sa.Close()
		sb.Close()
	}
}

func mustStack(t *testing.T, ep *netdev.Endpoint, addr string) *stack.Stack {
	t.Helper()
	s, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.AddNIC(stack.NICConfig{Name: "eth0", Endpoint: ep, Addresses: []netip.Prefix{netip.MustParsePrefix(addr)}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEndpointOffloadPipe moves 4 MiB between two stacks over an
// OffloadPipe at MTU 1500: the data arrives intact and crosses as TCP
// super-packets (both ends count GSO packets, far fewer packets than at
// 1500 bytes each).
func TestEndpointOffloadPipe(t *testing.T) {
	da, db := netdev.OffloadPipe(1500)
	ea, eb := netdev.NewEndpoint(da, netdev.EndpointOptions{}), netdev.NewEndpoint(db, netdev.EndpointOptions{})
	sa, sb := mustStack(t, ea, "198.18.0.1/24"), mustStack(t, eb, "198.18.0.2/24")
	ln, err := sb.Listen("tcp", ":9")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18)
	go func() {
		c, err := sa.Dial("tcp", "198.18.0.2:9")
		if err != nil {
			return
		}
		c.Write(want)
		c.Close()
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want %d intact", len(got), err, len(want))
	}
	tx, txGSO, rxGSO := ea.Stats.TxPackets.Load(), ea.Stats.TxGSO.Load(), eb.Stats.RxGSO.Load()
	if txGSO == 0 || rxGSO == 0 || tx > 2000 {
		t.Errorf("sent %d packets, %d of them GSO, received %d GSO; want super-packets (4 MiB is ~2900 packets at MTU 1500)", tx, txGSO, rxGSO)
	}
	sa.Close()
	sb.Close()
}
