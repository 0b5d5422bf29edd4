package echo

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	gw4, gw6 = netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")
	// silent is an address the fake host never hears back from.
	silent = netip.MustParseAddr("198.18.0.9")
	// elsewhere is an address Translate leaves to the stack.
	elsewhere = netip.MustParseAddr("198.18.0.10")
)

// fakeHost stands in for the host's ping sockets: it answers echo
// requests to every address but silent, and, as Linux does, gives each
// socket its own identifier, so the relay must put the sandbox's back.
type fakeHost struct {
	mu      sync.Mutex
	opened  int
	refuse  bool
	sockets []*fakePing
}

func (h *fakeHost) listen(network, _ string) (net.PacketConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refuse {
		return nil, errors.New("socket: permission denied")
	}
	h.opened++
	p := &fakePing{v6: network == "udp6", ident: uint16(0xbe00 + h.opened), replies: make(chan []byte, 16), closed: make(chan struct{})}
	h.sockets = append(h.sockets, p)
	return p, nil
}

type fakePing struct {
	net.PacketConn // unused methods
	v6             bool
	ident          uint16
	replies        chan []byte
	once           sync.Once
	closed         chan struct{}
	mu             sync.Mutex
	deadline       time.Time
}

func (p *fakePing) WriteTo(b []byte, addr net.Addr) (int, error) {
	dst, _ := netip.AddrFromSlice(addr.(*net.UDPAddr).IP)
	if dst.Unmap() == silent {
		return len(b), nil
	}
	r := append([]byte(nil), b...)
	if p.v6 {
		header.ICMPv6(r).SetType(header.ICMPv6EchoReply)
		header.ICMPv6(r).SetIdent(p.ident)
	} else {
		header.ICMPv4(r).SetType(header.ICMPv4EchoReply)
		header.ICMPv4(r).SetIdent(p.ident)
	}
	select {
	case p.replies <- r:
	default:
	}
	return len(b), nil
}

func (p *fakePing) ReadFrom(b []byte) (int, net.Addr, error) {
	p.mu.Lock()
	d := p.deadline
	p.mu.Unlock()
	timer := time.NewTimer(time.Until(d))
	defer timer.Stop()
	select {
	case r := <-p.replies:
		return copy(b, r), &net.UDPAddr{}, nil
	case <-timer.C:
		return 0, nil, &net.OpError{Op: "read", Err: timeoutErr{}}
	case <-p.closed:
		return 0, nil, net.ErrClosed
	}
}

func (p *fakePing) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
	return nil
}

func (p *fakePing) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// sandbox runs an echo relay with cfg on a gateway stack (10.0.2.2,
// fd00::2) and returns a sandbox stack linked to it.
func sandbox(t *testing.T, cfg Config) (*stack.Stack, *Relay) {
	t.Helper()
	a, b := pipe.New("", "", 1500)
	gs, err := stack.New(stack.Options{NoLocalDelivery: true})
	if err != nil {
		t.Fatal(err)
	}
	nic, err := gs.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: a, Promiscuous: true, Spoofing: true, Disabled: true,
		Addresses: []netip.Prefix{netip.PrefixFrom(gw4, 24), netip.PrefixFrom(gw6, 64)}})
	if err != nil {
		t.Fatal(err)
	}
	gs.AddDefaultRoutes(nic)
	sb, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snic, err := sb.AddNIC(stack.NICConfig{Name: "eth0", Endpoint: b, Addresses: []netip.Prefix{
		netip.MustParsePrefix("10.0.2.100/24"), netip.MustParsePrefix("fd00::100/64")}})
	if err != nil {
		t.Fatal(err)
	}
	sb.AddDefaultRoutes(snic)
	cfg.Stack = gs
	r, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.EnableNIC(nic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		gs.Close()
		sb.Close()
	})
	return sb, r
}

func translate(dst netip.Addr) (netip.Addr, bool) {
	switch dst {
	case elsewhere:
		return netip.Addr{}, false
	case gw4:
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	}
	return dst, true
}

func TestPing(t *testing.T) {
	tests := []struct {
		name       string
		refuse     bool
		dst        netip.Addr
		wantReply  bool
		wantOpened int
	}{
		{"gateway via the host's loopback", false, gw4, true, 1},
		{"IPv6 address", false, netip.MustParseAddr("fd00:1::9"), true, 1},
		{"address the host pings as is", false, netip.MustParseAddr("198.18.0.7"), true, 1},
		{"silent host times out", false, silent, false, 1},
		{"left to the stack: not its address, no reply", false, elsewhere, false, 0},
		{"host refuses ping sockets: the gateway still answers itself", true, gw4, true, 0},
		{"host refuses ping sockets: others time out", true, netip.MustParseAddr("198.18.0.7"), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := &fakeHost{refuse: tt.refuse}
			sb, _ := sandbox(t, Config{Translate: translate, ListenPacket: host.listen})
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			_, err := sb.Ping(ctx, tt.dst)
			if tt.wantReply && err != nil {
				t.Fatalf("ping %s: %v, want a reply", tt.dst, err)
			}
			if !tt.wantReply && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("ping %s: %v, want no reply (deadline exceeded)", tt.dst, err)
			}
			host.mu.Lock()
			defer host.mu.Unlock()
			if host.opened != tt.wantOpened {
				t.Errorf("host ping sockets opened: %d, want %d", host.opened, tt.wantOpened)
			}
		})
	}
}

// TestFlowReusedThenIdleClosed: pings of one session share a host socket,
// which is closed once the session has been idle.
func TestFlowReusedThenIdleClosed(t *testing.T) {
	host := &fakeHost{}
	sb, r := sandbox(t, Config{Translate: translate, ListenPacket: host.listen, IdleTimeout: 200 * time.Millisecond})
	so, err := sb.Socket(stack.AF_INET, stack.SOCK_DGRAM, stack.IPPROTO_ICMP)
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	if err := so.Connect(netip.AddrPortFrom(gw4, 0)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for seq := range 3 {
		req := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+4))
		req.SetType(header.ICMPv4Echo)
		req.SetSequence(uint16(seq))
		copy(req.Payload(), "ping")
		if _, err := so.Write(req); err != nil {
			t.Fatal(err)
		}
		so.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := so.Read(buf)
		if err != nil {
			t.Fatalf("reply %d: %v", seq, err)
		}
		rep := header.ICMPv4(buf[:n])
		if rep.Type() != header.ICMPv4EchoReply || rep.Sequence() != uint16(seq) || string(rep.Payload()) != "ping" {
			t.Fatalf("reply %d: type %d seq %d payload %q", seq, rep.Type(), rep.Sequence(), rep.Payload())
		}
	}
	if host.opened != 1 {
		t.Errorf("three pings of one session opened %d host sockets, want 1", host.opened)
	}
	deadline := time.Now().Add(3 * time.Second)
	for r.Flows() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := r.Flows(); n != 0 {
		t.Errorf("%d flows still open after the idle timeout", n)
	}
}

// TestFlowCap: a ping session past the cap gets no reply and is counted;
// sessions within it are answered.
func TestFlowCap(t *testing.T) {
	host := &fakeHost{}
	flows := relay.NewLimit("ping-flows", 2)
	sb, _ := sandbox(t, Config{Translate: translate, ListenPacket: host.listen, Flows: flows})
	replies := 0
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		// Each Ping is its own socket, so its own session.
		if _, err := sb.Ping(ctx, netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + i)})); err == nil {
			replies++
		}
		cancel()
	}
	if replies != 2 {
		t.Errorf("%d sessions answered, want 2 (the cap)", replies)
	}
	if s := flows.Stat(); s.Dropped == 0 || s.InUse != 2 {
		t.Errorf("ping-flows: %+v, want 2 in use and drops counted", s)
	}
	if host.opened != 2 {
		t.Errorf("host sockets opened: %d, want 2", host.opened)
	}
}
