package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/tunstack/tunstack/stack/hostsock"
)

// LoopbackDialer dials only loopback addresses and refuses every other
// destination with ECONNREFUSED. Tests and fuzz targets give it to a stack
// whose egress is live, so that nothing they generate can leave the
// machine.
type LoopbackDialer struct {
	net.Dialer
	// TCP, if set, dials the TCP connections that pass (a
	// hostsock.Poller, to test the path egress takes by default) instead
	// of the embedded net.Dialer.
	TCP Dialer
}

// DialContext implements Dialer.
func (d *LoopbackDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().IsLoopback() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%s is not a loopback address: %w", host, syscall.ECONNREFUSED)}
	}
	if d.TCP != nil && strings.HasPrefix(network, "tcp") {
		return d.TCP.DialContext(ctx, network, address)
	}
	return d.Dialer.DialContext(ctx, network, address)
}

// hostDialer is the default Dialer: TCP through a hostsock.Poller, UDP
// through net.Dialer.
type hostDialer struct {
	net.Dialer
	tcp *hostsock.Poller
}

// DialContext implements Dialer.
func (d *hostDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if strings.HasPrefix(network, "tcp") {
		return d.tcp.DialContext(ctx, network, address)
	}
	return d.Dialer.DialContext(ctx, network, address)
}
