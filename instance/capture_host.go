package instance

import (
	"fmt"
	"math"
	"sync"

	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack/capture"
)

// HostCaptureInterface is the -i value of "tunstack tcpdump" for the
// host side of the gateway (the firewall's HostInterface).
const HostCaptureInterface = HostInterface

// AnyCaptureInterface is the -i value of "tunstack tcpdump" for every
// interface of the stack, which is tun0: its packets are streamed as
// LINKTYPE_LINUX_SLL2, with tun0's index and each packet's direction, as
// tcpdump -i any streams them. The host tap is not an interface of the
// stack ("tunstack ip link" does not list it) and is not included.
const AnyCaptureInterface = "any"

// hostTapPriority puts the host tap after the iptables tables and after
// every other Go hook of its hook: it sees what was finally accepted.
const hostTapPriority = math.MaxInt

// hostCapture is the tap behind "tcpdump -i host": the packets as they
// cross the gateway between the sandbox and the host side, after the
// firewall's decisions. Precisely, a packet is captured when the filter
// table of its hook has accepted it:
//
//   - sandbox → host side (direction In): at the end of INPUT (to the
//     stack's own addresses) or FORWARD (any other address), so after
//     PREROUTING: a DNATed packet shows its new destination;
//   - host side → sandbox (direction Out): at the end of OUTPUT (the
//     stack's own replies) or FORWARD (replies of relayed flows), so
//     before POSTROUTING: a reply to a DNATed flow still shows the
//     address and port it came from, before the reverse translation.
//
// A packet dropped or rejected by a rule (or a Go hook) appears on tun0
// but not on host. The netfilter hooks are registered only while a
// capture is open; with none, the firewall runs as if the tap did not
// exist.
type hostCapture struct {
	fw  *netfilter.Firewall
	tap *capture.Endpoint

	mu sync.Mutex // guards remove
	// +checklocks:mu
	remove []func() // the registered hooks; nil when none
}

func newHostCapture(fw *netfilter.Firewall) *hostCapture {
	h := &hostCapture{fw: fw, tap: capture.NewEndpoint(nil)}
	h.tap.SetOnIdle(h.idle)
	return h
}

// Subscribe opens a capture on the host side, registering the hooks if
// it is the first.
func (h *hostCapture) Subscribe(f *capture.Filter, snapLen, queue int) (*capture.Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.remove == nil {
		if err := h.installLocked(); err != nil {
			return nil, err
		}
	}
	return h.tap.Subscribe(f, snapLen, queue), nil
}

// active reports whether the hooks are registered.
func (h *hostCapture) active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.remove != nil
}

func (h *hostCapture) installLocked() error {
	for _, hk := range []netfilter.Hook{netfilter.Input, netfilter.Forward, netfilter.Output} {
		rm, err := h.fw.AddHook(hk, hostTapPriority, h.see)
		if err != nil {
			h.removeLocked()
			return fmt.Errorf("capture on %s: %w", HostCaptureInterface, err)
		}
		h.remove = append(h.remove, rm)
	}
	return nil
}

func (h *hostCapture) removeLocked() {
	for _, rm := range h.remove {
		rm()
	}
	h.remove = nil
}

// idle runs when the tap's last subscription closed; a Subscribe may
// have come in between, so it checks again under mu.
func (h *hostCapture) idle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tap.Subscribers() == 0 {
		h.removeLocked()
	}
}

// see is the hook function: it copies the packet if a capture listens
// and never changes the packet's fate.
func (h *hostCapture) see(p *netfilter.Packet) netfilter.Verdict {
	dir := capture.Out
	switch p.Hook {
	case netfilter.Input:
		dir = capture.In
	case netfilter.Forward:
		// Sandbox egress leaves by the host interface; replies come in
		// by it.
		if p.InInterface != HostInterface {
			dir = capture.In
		}
	}
	h.tap.OfferPacket(p.Buffer(), dir)
	return netfilter.Continue
}

// hostCap returns the instance's host-side tap, creating it on first use.
func (in *Instance) hostCap() (*hostCapture, error) {
	in.hostCapOnce.Do(func() {
		if in.Firewall != nil {
			in.hostCapture = newHostCapture(in.Firewall)
		}
	})
	if in.hostCapture == nil {
		return nil, fmt.Errorf("capture: no interface %q (the instance has no firewall)", HostCaptureInterface)
	}
	return in.hostCapture, nil
}
