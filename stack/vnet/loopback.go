package vnet

import (
	"fmt"
	"net/netip"

	"github.com/tunstack/tunstack/stack"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
)

// NewLoopback returns a stack whose only NIC is a loopback interface
// ("lo") with 127.0.0.1/8 and ::1/128, like a host's own loopback. Close
// it when done.
func NewLoopback(opts stack.Options) (*stack.Stack, error) {
	s, err := stack.New(opts)
	if err != nil {
		return nil, err
	}
	addrs := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}
	// AddNIC adds the on-link route to 127.0.0.0/8.
	if _, err := s.AddNIC(stack.NICConfig{Name: "lo", Endpoint: loopback.New(), Addresses: addrs}); err != nil {
		s.Close()
		return nil, fmt.Errorf("vnet: loopback: %w", err)
	}
	return s, nil
}
