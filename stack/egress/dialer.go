package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// LoopbackDialer dials only loopback addresses and refuses every other
// destination with ECONNREFUSED. Tests and fuzz targets give it to a stack
// whose egress is live, so that nothing they generate can leave the
// machine.
type LoopbackDialer struct {
	net.Dialer
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
	return d.Dialer.DialContext(ctx, network, address)
}
