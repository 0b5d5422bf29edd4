package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/relay"
)

// Target is the sandbox side of one address family.
type Target struct {
	// Sandbox is the address forwards connect to.
	Sandbox netip.Addr
	// Gateway is the source of connections whose client has no address
	// the sandbox can reach (loopback and unix socket clients).
	Gateway netip.Addr
}

// Config configures a Manager.
type Config struct {
	// Stack dials the sandbox; its NIC must have spoofing on.
	Stack *stack.Stack
	// NIC is the sandbox's NIC.
	NIC stack.NICID
	// V4 and V6 are the families' targets; an invalid Sandbox disables a
	// family.
	V4, V6 Target
	// Logger receives per-connection diagnostics; nil uses the stack's.
	Logger *slog.Logger
	// UDPIdleTimeout ends a UDP flow without traffic (default 60 s).
	UDPIdleTimeout time.Duration
	// Inner, if set, connects to a sandbox address from inside the
	// sandbox's network namespace with a kernel socket, for the splice
	// path (see Path). It returns an error wrapping syscall.ECONNREFUSED
	// when nothing listens there; any other error makes the connection
	// take the stack path. nil: every connection takes the stack path.
	Inner func(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error)
	// Path picks the path of TCP connections (PathAuto when empty).
	Path Path
	// FirewallEmpty reports whether the stack's firewall has nothing
	// loaded (no rule, no policy but ACCEPT, no hook), which PathAuto
	// needs to splice: a spliced flow never crosses the firewall. nil
	// means it is empty.
	FirewallEmpty func() bool
}

// Path is how a forwarded TCP connection reaches the sandbox.
type Path string

const (
	// PathAuto splices connections from the host's loopback and unix
	// socket clients while the firewall is empty, and takes the stack
	// path otherwise.
	PathAuto Path = "auto"
	// PathStack always dials through the stack, from the client's own
	// address (the gateway's for loopback and unix socket clients), over
	// tun0 and through the firewall.
	PathStack Path = "stack"
	// PathSplice splices every TCP connection, whatever its client and
	// the firewall: the sandbox sees each from its own loopback.
	PathSplice Path = "splice"
)

// ParsePath reads a --forward-path value.
func ParsePath(s string) (Path, error) {
	switch p := Path(s); p {
	case PathAuto, PathStack, PathSplice:
		return p, nil
	case "":
		return PathAuto, nil
	}
	return "", fmt.Errorf("forward path %q: want auto, stack or splice", s)
}

// Info describes an active forward.
type Info struct {
	// ID names the forward for Remove: its Spec in ParseSpec's syntax.
	ID   string `json:"id"`
	Spec Spec   `json:"spec"`
	// Listen are the host addresses actually listened on.
	Listen []string `json:"listen"`
	// Active counts open connections (UDP: flows).
	Active int64 `json:"active"`
	// Total counts connections (UDP: flows) since the forward was added.
	Total int64 `json:"total"`
	// Spliced counts the TCP connections of Total that took the splice
	// path (kernel socket to kernel socket; see Path).
	Spliced int64     `json:"spliced,omitempty"`
	Created time.Time `json:"created"`
}

// Manager owns the forwards of one stack.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // guards closed, forwards
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	forwards map[string]*fwd
}

// fwd is one running forward.
type fwd struct {
	m       *Manager
	spec    Spec
	created time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	// conns are the forward's live connections and goroutines (listener
	// loops included); stop closes them and waits.
	conns relay.Group

	lns    []net.Listener
	pcs    []net.PacketConn
	active atomic.Int64
	total  atomic.Int64
	// spliced counts connections that took the splice path.
	spliced atomic.Int64
}

// New returns a Manager with no forwards.
func New(cfg Config) (*Manager, error) {
	if cfg.Stack == nil {
		return nil, errors.New("forward: Config.Stack is nil")
	}
	if !cfg.V4.Sandbox.IsValid() && !cfg.V6.Sandbox.IsValid() {
		return nil, errors.New("forward: no sandbox address")
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Stack.Logger()
	}
	if cfg.UDPIdleTimeout == 0 {
		cfg.UDPIdleTimeout = 60 * time.Second
	}
	var err error
	if cfg.Path, err = ParsePath(string(cfg.Path)); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, log: cfg.Logger, forwards: map[string]*fwd{}}, nil
}

// Add starts the forwards in specs. Either all start or none does: on an
// error (a host port in use, say) the ones already started are stopped.
func (m *Manager) Add(specs []Spec) ([]Info, error) {
	var started []*fwd
	undo := func() {
		for _, f := range started {
			f.stop()
		}
	}
	for _, s := range specs {
		m.mu.Lock()
		_, dup := m.forwards[s.String()]
		closed := m.closed
		m.mu.Unlock()
		if closed {
			undo()
			return nil, errors.New("forward: manager closed")
		}
		if dup {
			undo()
			return nil, fmt.Errorf("forward %s: already exists", s)
		}
		f, err := m.start(s)
		if err != nil {
			undo()
			return nil, err
		}
		started = append(started, f)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Info
	for _, f := range started {
		if _, dup := m.forwards[f.spec.String()]; dup || m.closed {
			// Lost a race with a concurrent Add of the same spec.
			m.mu.Unlock()
			undo()
			m.mu.Lock()
			return nil, fmt.Errorf("forward %s: already exists", f.spec)
		}
	}
	for _, f := range started {
		m.forwards[f.spec.String()] = f
		out = append(out, f.info())
	}
	return out, nil
}

// Remove stops the forward with the given ID (a Spec string; "8080:80" is
// read as "8080:80/tcp").
func (m *Manager) Remove(id string) error {
	specs, err := ParseSpec(id)
	if err != nil {
		return err
	}
	var fs []*fwd
	m.mu.Lock()
	for _, s := range specs {
		f, ok := m.forwards[s.String()]
		if !ok {
			m.mu.Unlock()
			return fmt.Errorf("forward %s: no such forward", s)
		}
		fs = append(fs, f)
	}
	for _, f := range fs {
		delete(m.forwards, f.spec.String())
	}
	m.mu.Unlock()
	for _, f := range fs {
		f.stop()
	}
	return nil
}

// List returns the forwards, sorted by ID.
func (m *Manager) List() []Info {
	m.mu.Lock()
	out := make([]Info, 0, len(m.forwards))
	for _, f := range m.forwards {
		out = append(out, f.info())
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Close stops every forward and waits for their connections to end.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	fs := m.forwards
	m.forwards = map[string]*fwd{}
	m.mu.Unlock()
	for _, f := range fs {
		f.stop()
	}
	return nil
}

func (f *fwd) info() Info {
	in := Info{ID: f.spec.String(), Spec: f.spec, Created: f.created, Active: f.active.Load(), Total: f.total.Load(), Spliced: f.spliced.Load()}
	for _, l := range f.lns {
		in.Listen = append(in.Listen, l.Addr().String())
	}
	for _, pc := range f.pcs {
		in.Listen = append(in.Listen, pc.LocalAddr().String())
	}
	return in
}

// stop closes the listeners and the connections and waits for them.
func (f *fwd) stop() {
	f.cancel()
	for _, l := range f.lns {
		l.Close()
	}
	for _, pc := range f.pcs {
		pc.Close()
	}
	f.conns.Close()
}

// start listens on the host side of s.
func (m *Manager) start(s Spec) (*fwd, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fwd{m: m, spec: s, created: time.Now(), ctx: ctx, cancel: cancel}
	var err error
	switch {
	case s.HostPath != "":
		err = f.listenUnix()
	case s.Proto == "udp":
		err = f.listenUDP()
	default:
		err = f.listenTCP()
	}
	if err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// hostAddrs are the addresses to listen on: HostIP, or all IPv4 and IPv6
// addresses when it is unset.
func (s Spec) hostAddrs() []string {
	if s.HostIP.IsValid() {
		return []string{netip.AddrPortFrom(s.HostIP, s.HostPort).String()}
	}
	return []string{fmt.Sprintf(":%d", s.HostPort)}
}

// source picks the address the sandbox sees a client come from, and the
// sandbox address to connect to.
func (m *Manager) source(client netip.AddrPort) (src, dst netip.AddrPort, err error) {
	c := client.Addr().Unmap()
	v4, v6 := m.cfg.V4, m.cfg.V6
	pick := func(primary, other Target) (Target, bool) {
		if primary.Sandbox.IsValid() {
			return primary, true
		}
		return other, false
	}
	var t Target
	var sameFamily bool
	if c.Is4() || !c.IsValid() {
		t, sameFamily = pick(v4, v6)
	} else {
		t, sameFamily = pick(v6, v4)
	}
	dst = netip.AddrPortFrom(t.Sandbox, 0)
	switch {
	case !c.IsValid() || c.IsLoopback() || c.IsUnspecified():
		// A unix socket or loopback client: it appears as the gateway,
		// the address the sandbox reaches the host's loopback at.
		port := client.Port()
		if !c.IsValid() {
			port = 0
		}
		return netip.AddrPortFrom(t.Gateway, port), dst, nil
	case !sameFamily:
		// The sandbox has no address of the client's family.
		return netip.AddrPortFrom(t.Gateway, 0), dst, nil
	}
	return netip.AddrPortFrom(c, client.Port()), dst, nil
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
