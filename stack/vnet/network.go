// Package vnet builds in-process virtual networks of tunstack stacks:
// hosts (each a *stack.Stack) joined by point-to-point links or switches,
// with per-direction impairments (loss, delay and jitter, reordering,
// duplication, bandwidth, MTU) and partitions that can change while traffic
// flows. It needs no root, no TUN device and no network namespace, and
// every packet stays in the process.
//
// It is meant for programs as much as for tests: a simulator, a service
// whose components talk TCP to each other without touching the host's
// network, or a client that reaches an in-process server through a real
// TCP/IP stack. Package stack/stacktest adds testing.TB helpers (NewPair,
// leak checks) on top of it.
//
// Randomness (loss, jitter, ...) comes from generators seeded by
// Options.Seed, one stream per link direction, so the same seed makes the
// same drop decisions for the same packet sequence.
package vnet

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/tunstack/tunstack/stack"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// DefaultMTU is the MTU of links and switch ports unless Options.MTU says
// otherwise.
const DefaultMTU = 1500

// Options configure a Network.
type Options struct {
	// Seed seeds the impairment randomness (0 is a valid seed).
	Seed uint64
	// MTU of every link and switch port (default DefaultMTU).
	MTU int
	// Stack is the template for every host's stack.Options.
	Stack stack.Options
}

// Network is a set of hosts and the links and switches between them. Close
// releases all of it.
type Network struct {
	opts Options

	mu sync.Mutex // guards hosts, dirs, streams, closed
	// +checklocks:mu
	hosts []*Host
	// +checklocks:mu
	dirs []*direction
	// +checklocks:mu
	streams uint64
	// +checklocks:mu
	closed bool
}

// NewNetwork returns an empty network.
func NewNetwork(opts Options) *Network {
	if opts.MTU <= 0 {
		opts.MTU = DefaultMTU
	}
	return &Network{opts: opts}
}

// Host is a machine on the network: a stack plus the NICs that links and
// switch ports gave it.
type Host struct {
	// Name identifies the host in errors and NIC names.
	Name string
	// Stack is the host's TCP/IP stack; use it to dial, listen, open
	// sockets or add routes.
	Stack *stack.Stack

	net *Network
	mu  sync.Mutex // guards nics, addr
	// +checklocks:mu
	nics int
	// +checklocks:mu
	addr []netip.Addr
}

// AddHost creates a host with a fresh stack.
func (n *Network) AddHost(name string) (*Host, error) {
	s, err := stack.New(n.opts.Stack)
	if err != nil {
		return nil, fmt.Errorf("vnet: host %q: %w", name, err)
	}
	h := &Host{Name: name, Stack: s, net: n}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		s.Close()
		return nil, errors.New("vnet: network closed")
	}
	n.hosts = append(n.hosts, h)
	return h, nil
}

// Addr returns the host's first address (invalid if it has none).
func (h *Host) Addr() netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.addr) == 0 {
		return netip.Addr{}
	}
	return h.addr[0]
}

// Addrs returns every address links and switch ports gave the host.
func (h *Host) Addrs() []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]netip.Addr(nil), h.addr...)
}

// attach adds a NIC whose outbound packets go to out, with addresses (AddNIC
// adds their on-link routes), and returns the NIC's endpoint.
func (h *Host) attach(out *direction, addrs []netip.Prefix) (*endpoint, stack.NICID, error) {
	h.mu.Lock()
	name := fmt.Sprintf("eth%d", h.nics)
	h.nics++
	h.mu.Unlock()
	ep := &endpoint{mtu: uint32(h.net.opts.MTU), out: out}
	id, err := h.Stack.AddNIC(stack.NICConfig{Name: name, Endpoint: ep, Addresses: addrs})
	if err != nil {
		return nil, 0, fmt.Errorf("vnet: host %q: %w", h.Name, err)
	}
	h.mu.Lock()
	for _, p := range addrs {
		h.addr = append(h.addr, p.Addr())
	}
	h.mu.Unlock()
	return ep, id, nil
}

func (n *Network) newDirection(out deliverFunc) (*direction, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("vnet: network closed")
	}
	n.streams++
	d := newDirection(n.opts.Seed, n.streams, out)
	n.dirs = append(n.dirs, d)
	return d, nil
}

// Link is a point-to-point link between two hosts.
type Link struct {
	a, b   *Host
	ab, ba *direction
	nicA   stack.NICID
	nicB   stack.NICID
}

// Link joins a and b with a point-to-point link, giving a the address
// aAddr and b the address bAddr (with on-link routes for their prefixes).
func (n *Network) Link(a *Host, aAddr netip.Prefix, b *Host, bAddr netip.Prefix) (*Link, error) {
	l := &Link{a: a, b: b}
	var epA, epB *endpoint
	var err error
	if l.ab, err = n.newDirection(func(p tcpip.NetworkProtocolNumber, buf buffer.Buffer) { epB.deliver(p, buf) }); err != nil {
		return nil, err
	}
	if l.ba, err = n.newDirection(func(p tcpip.NetworkProtocolNumber, buf buffer.Buffer) { epA.deliver(p, buf) }); err != nil {
		return nil, err
	}
	if epA, l.nicA, err = a.attach(l.ab, []netip.Prefix{aAddr}); err != nil {
		return nil, err
	}
	if epB, l.nicB, err = b.attach(l.ba, []netip.Prefix{bAddr}); err != nil {
		return nil, err
	}
	return l, nil
}

// NIC returns the ID of h's NIC on the link (0 if h is not on it), for
// routes through the link.
func (l *Link) NIC(h *Host) stack.NICID {
	switch h {
	case l.a:
		return l.nicA
	case l.b:
		return l.nicB
	}
	return 0
}

func (l *Link) from(h *Host) *direction {
	if h == l.b {
		return l.ba
	}
	return l.ab
}

// Impair sets the impairment of both directions.
func (l *Link) Impair(im Impairment) {
	l.ab.setImpairment(im)
	l.ba.setImpairment(im)
}

// ImpairFrom sets the impairment of the direction whose sender is from.
func (l *Link) ImpairFrom(from *Host, im Impairment) { l.from(from).setImpairment(im) }

// Partition cuts the link both ways: packets in flight and every later
// packet are lost until Heal.
func (l *Link) Partition() {
	l.ab.setDown(true)
	l.ba.setDown(true)
}

// Heal reconnects a partitioned link.
func (l *Link) Heal() {
	l.ab.setDown(false)
	l.ba.setDown(false)
}

// Stats returns the packet counts of the direction whose sender is from.
func (l *Link) Stats(from *Host) Stats { return l.from(from).stats() }

// Switch joins any number of hosts. It forwards each packet to the port
// that owns its destination address, and floods packets for other
// destinations (broadcast, multicast, or addresses behind a router host) to
// every other port.
type Switch struct {
	net *Network
	mu  sync.RWMutex // guards ports
	// +checklocks:mu
	ports []*Port
}

// Port is a host's attachment to a switch.
type Port struct {
	sw    *Switch
	host  *Host
	addrs []netip.Addr
	up    *direction // host to switch
	down  *direction // switch to host
	nic   stack.NICID
}

// Switch returns a new switch with no ports.
func (n *Network) Switch() *Switch { return &Switch{net: n} }

// Attach connects h to the switch with the given addresses.
func (sw *Switch) Attach(h *Host, addrs ...netip.Prefix) (*Port, error) {
	p := &Port{sw: sw, host: h}
	for _, a := range addrs {
		p.addrs = append(p.addrs, a.Addr())
	}
	var ep *endpoint
	var err error
	if p.up, err = sw.net.newDirection(func(proto tcpip.NetworkProtocolNumber, buf buffer.Buffer) { sw.forward(p, proto, buf) }); err != nil {
		return nil, err
	}
	if p.down, err = sw.net.newDirection(func(proto tcpip.NetworkProtocolNumber, buf buffer.Buffer) { ep.deliver(proto, buf) }); err != nil {
		return nil, err
	}
	if ep, p.nic, err = h.attach(p.up, addrs); err != nil {
		return nil, err
	}
	sw.mu.Lock()
	sw.ports = append(sw.ports, p)
	sw.mu.Unlock()
	return p, nil
}

func (sw *Switch) forward(from *Port, proto tcpip.NetworkProtocolNumber, buf buffer.Buffer) {
	dst, ok := dstAddr(proto, buf)
	sw.mu.RLock()
	var targets []*Port
	for _, p := range sw.ports {
		if p == from {
			continue
		}
		if ok && p.owns(dst) {
			targets = append(targets[:0], p)
			break
		}
		targets = append(targets, p)
	}
	sw.mu.RUnlock()
	for i, p := range targets {
		b := buf
		if i < len(targets)-1 {
			b = buf.Clone()
		}
		p.down.send(proto, b)
	}
	if len(targets) == 0 {
		buf.Release()
	}
}

func (p *Port) owns(a netip.Addr) bool {
	for _, x := range p.addrs {
		if x == a {
			return true
		}
	}
	return false
}

func dstAddr(proto tcpip.NetworkProtocolNumber, buf buffer.Buffer) (netip.Addr, bool) {
	var hdr [header.IPv6MinimumSize]byte
	switch proto {
	case header.IPv4ProtocolNumber:
		if n, _ := buf.ReadAt(hdr[:header.IPv4MinimumSize], 0); n == header.IPv4MinimumSize {
			return netip.AddrFrom4([4]byte(hdr[16:20])), true
		}
	case header.IPv6ProtocolNumber:
		if n, _ := buf.ReadAt(hdr[:], 0); n == header.IPv6MinimumSize {
			return netip.AddrFrom16([16]byte(hdr[24:40])), true
		}
	}
	return netip.Addr{}, false
}

// NIC returns the host's NIC ID for this port.
func (p *Port) NIC() stack.NICID { return p.nic }

// Impair sets the impairment of both directions of the port.
func (p *Port) Impair(im Impairment) {
	p.up.setImpairment(im)
	p.down.setImpairment(im)
}

// ImpairUp sets the impairment from the host to the switch; ImpairDown
// the one from the switch to the host.
func (p *Port) ImpairUp(im Impairment) { p.up.setImpairment(im) }

// ImpairDown sets the impairment from the switch to the host.
func (p *Port) ImpairDown(im Impairment) { p.down.setImpairment(im) }

// Partition disconnects the port's host from the switch until Heal.
func (p *Port) Partition() {
	p.up.setDown(true)
	p.down.setDown(true)
}

// Heal reconnects the port.
func (p *Port) Heal() {
	p.up.setDown(false)
	p.down.setDown(false)
}

// Close stops every link and closes every host's stack. It is safe to call
// more than once.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	hosts, dirs := n.hosts, n.dirs
	n.mu.Unlock()
	// Links first, so no packet is delivered to a stack that is going
	// away; the stacks' closing RSTs are simply dropped.
	for _, d := range dirs {
		d.close()
	}
	var errs []error
	for _, h := range hosts {
		errs = append(errs, h.Stack.Close())
	}
	return errors.Join(errs...)
}
