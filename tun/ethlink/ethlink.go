// Package ethlink is the Ethernet side of a TAP device served by tunstack,
// as slirp4netns presents it: it answers ARP for the gateway and DNS
// addresses, IPv6 neighbour solicitations for them and for the router's
// link-local address, router solicitations with a router advertisement of
// the IPv6 prefix (SLAAC, with the DNS address as RDNSS), and it builds the
// Ethernet header of every frame the stack sends to the sandbox.
//
// The stack behind it sees IP packets only (tun.Endpoint strips and adds
// the Ethernet header), so captures, the firewall and the views stay the
// same as on a TUN device.
package ethlink

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Config describes the addresses the link answers for.
type Config struct {
	// Gateway4 and DNS4 are the IPv4 addresses answered by ARP; invalid
	// disables IPv4.
	Gateway4, DNS4 netip.Addr
	// Prefix6 is the IPv6 prefix advertised for SLAAC (a /64); Gateway6
	// and DNS6 are answered by neighbour discovery. An invalid Prefix6
	// disables IPv6.
	Prefix6        netip.Prefix
	Gateway6, DNS6 netip.Addr
	// MTU is advertised in router advertisements (0: none).
	MTU int
	// GuestMAC is the sandbox interface's address, if known; frames to
	// the sandbox go to the last source address seen, this until then,
	// and the broadcast address before either.
	GuestMAC net.HardwareAddr
	// AdvertInterval is the period of unsolicited router advertisements
	// (default 5 minutes). The sandbox solicits one only when its link
	// comes up, and its default route lapses after the router lifetime.
	AdvertInterval time.Duration
}

// RouterLinkLocal is the router's link-local address in advertisements:
// the sandbox's default IPv6 route points at it.
var RouterLinkLocal = netip.MustParseAddr("fe80::2")

// Link answers a TAP device's link layer; it implements tun.Link.
type Link struct {
	cfg   Config
	gwMAC [6]byte
	// guest is the sandbox's MAC address ([6]byte), learned from frames.
	guest atomic.Pointer[[6]byte]
}

// New returns a Link for cfg.
func New(cfg Config) *Link {
	l := &Link{cfg: cfg}
	if cfg.Gateway4.IsValid() {
		l.gwMAC = MACFor(cfg.Gateway4)
	} else {
		l.gwMAC = MACFor(cfg.Gateway6)
	}
	if len(cfg.GuestMAC) == 6 {
		var m [6]byte
		copy(m[:], cfg.GuestMAC)
		l.guest.Store(&m)
	}
	return l
}

// Run sends router advertisements (IPv6 only): one at once, then every
// AdvertInterval, until stop is closed. tun.Endpoint runs it while the
// endpoint is attached.
func (l *Link) Run(stop <-chan struct{}, write func([]byte)) {
	if !l.cfg.Prefix6.IsValid() {
		return
	}
	every := l.cfg.AdvertInterval
	if every <= 0 {
		every = 5 * time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		write(l.RouterAdvert())
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// MACFor is the MAC address slirp4netns (libslirp) answers for a in
// address resolution: 52:55 and the IPv4 address, or 52:56 and the low
// four bytes of the IPv6 address.
func MACFor(a netip.Addr) [6]byte {
	m := [6]byte{0x52, 0x55}
	b := a.AsSlice()
	if a.Is6() {
		m[1] = 0x56
	}
	if len(b) >= 4 {
		copy(m[2:], b[len(b)-4:])
	}
	return m
}

// GuestMAC returns the sandbox's MAC address as last learned, if any.
func (l *Link) GuestMAC() (net.HardwareAddr, bool) {
	m := l.guest.Load()
	if m == nil {
		return nil, false
	}
	return net.HardwareAddr(m[:]), true
}

var broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Header implements tun.Link.
func (l *Link) Header(proto tcpip.NetworkProtocolNumber) [header.EthernetMinimumSize]byte {
	var h [header.EthernetMinimumSize]byte
	dst := broadcast
	if m := l.guest.Load(); m != nil {
		dst = *m
	}
	copy(h[0:6], dst[:])
	src := l.gwMAC
	if proto == header.IPv6ProtocolNumber && l.cfg.Gateway6.IsValid() {
		src = MACFor(l.cfg.Gateway6)
	}
	copy(h[6:12], src[:])
	binary.BigEndian.PutUint16(h[12:], uint16(proto))
	return h
}

// Input implements tun.Link.
func (l *Link) Input(frame []byte, size int, reply func([]byte)) bool {
	if len(frame) < header.EthernetMinimumSize {
		return true
	}
	l.learn(frame[6:12])
	switch binary.BigEndian.Uint16(frame[12:]) {
	case uint16(header.ARPProtocolNumber):
		if r := l.arp(frame); r != nil {
			reply(r)
		}
		return true
	case uint16(header.IPv6ProtocolNumber):
		return l.ndp(frame, reply)
	}
	return false
}

// learn records a unicast source address as the guest's.
func (l *Link) learn(src []byte) {
	if src[0]&1 != 0 {
		return
	}
	if m := l.guest.Load(); m != nil && string(m[:]) == string(src) {
		return
	}
	var m [6]byte
	copy(m[:], src)
	l.guest.Store(&m)
}

// arp answers a request for the gateway or DNS address; others are ignored,
// as slirp4netns ignores them.
func (l *Link) arp(frame []byte) []byte {
	req := header.ARP(frame[header.EthernetMinimumSize:])
	if len(req) < header.ARPSize || !req.IsValid() || req.Op() != header.ARPRequest || !l.cfg.Gateway4.IsValid() {
		return nil
	}
	target, _ := netip.AddrFromSlice(req.ProtocolAddressTarget())
	if target != l.cfg.Gateway4 && target != l.cfg.DNS4 {
		return nil
	}
	mac := MACFor(target)
	out := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	copy(out[0:6], req.HardwareAddressSender())
	copy(out[6:12], mac[:])
	binary.BigEndian.PutUint16(out[12:], uint16(header.ARPProtocolNumber))
	rep := header.ARP(out[header.EthernetMinimumSize:])
	rep.SetIPv4OverEthernet()
	rep.SetOp(header.ARPReply)
	copy(rep.HardwareAddressSender(), mac[:])
	copy(rep.ProtocolAddressSender(), req.ProtocolAddressTarget())
	copy(rep.HardwareAddressTarget(), req.HardwareAddressSender())
	copy(rep.ProtocolAddressTarget(), req.ProtocolAddressSender())
	return out
}
