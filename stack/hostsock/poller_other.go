//go:build !linux

package hostsock

import (
	"context"
	"errors"
	"net"
)

// Poller is Linux-only; NewPoller fails elsewhere.
type Poller struct{}

// NewPoller returns errors.ErrUnsupported outside Linux.
func NewPoller() (*Poller, error) {
	return nil, errors.ErrUnsupported
}

// Close does nothing.
func (p *Poller) Close() error { return nil }

// DialContext fails with errors.ErrUnsupported.
func (p *Poller) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, &net.OpError{Op: "dial", Net: network, Err: errors.ErrUnsupported}
}
