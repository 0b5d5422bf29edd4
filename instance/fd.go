package instance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/stack"
)

var _ control.FDBackend = backend{}

// fdDialTimeout bounds a handover's connect.
const fdDialTimeout = 30 * time.Second

// FD implements control.FDBackend: sockets on the stack, as seen from the
// gateway. connect dials from the gateway address (an empty host is the
// sandbox); listen listens on the gateway address by default, so the
// sandbox reaches it at 10.0.2.2:PORT (instead of the host's loopback);
// udp binds to the gateway address and connects to addr if given.
func (b backend) FD(ctx context.Context, req control.FDRequest) (*os.File, control.FDInfo, error) {
	in := b.in
	if in.Stack == nil {
		return nil, control.FDInfo{}, fmt.Errorf("the instance has no stack")
	}
	switch req.Op {
	case control.FDConnect:
		raddr, err := in.fdAddr(req.Addr, true)
		if err != nil {
			return nil, control.FDInfo{}, err
		}
		d := stack.Dialer{Stack: in.Stack, Timeout: fdDialTimeout, LocalAddr: netip.AddrPortFrom(in.fdGateway(raddr.Addr()), 0)}
		c, err := d.DialContext(ctx, "tcp", raddr.String())
		if err != nil {
			return nil, control.FDInfo{}, err
		}
		info := control.FDInfo{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}
		f, err := c.(*stack.TCPConn).File()
		if err != nil {
			c.Close()
			return nil, control.FDInfo{}, err
		}
		return f, info, nil
	case control.FDListen:
		laddr, err := in.fdAddr(req.Addr, false)
		if err != nil {
			return nil, control.FDInfo{}, err
		}
		l, err := in.Stack.ListenTCP(laddr)
		if err != nil {
			return nil, control.FDInfo{}, err
		}
		info := control.FDInfo{Local: l.Addr().String()}
		f, err := l.File()
		if err != nil {
			l.Close()
			return nil, control.FDInfo{}, err
		}
		return f, info, nil
	case control.FDUDP:
		var c *stack.UDPConn
		var err error
		if req.Addr != "" {
			raddr, aerr := in.fdAddr(req.Addr, true)
			if aerr != nil {
				return nil, control.FDInfo{}, aerr
			}
			laddr := netip.AddrPortFrom(in.fdGateway(raddr.Addr()), 0)
			if req.Bind != "" {
				if laddr, err = in.fdAddr(req.Bind, false); err != nil {
					return nil, control.FDInfo{}, err
				}
			}
			c, err = in.Stack.DialUDP(laddr, raddr)
		} else {
			if req.Bind == "" {
				return nil, control.FDInfo{}, &control.RequestError{Err: fmt.Errorf("udp: give addr (connect) or bind")}
			}
			laddr, aerr := in.fdAddr(req.Bind, false)
			if aerr != nil {
				return nil, control.FDInfo{}, aerr
			}
			c, err = in.Stack.ListenUDP(laddr)
		}
		if err != nil {
			return nil, control.FDInfo{}, err
		}
		info := control.FDInfo{Local: c.LocalAddr().String()}
		if ra := c.RemoteAddr(); ra != nil {
			info.Remote = ra.String()
		}
		f, err := c.File()
		if err != nil {
			c.Close()
			return nil, control.FDInfo{}, err
		}
		return f, info, nil
	}
	return nil, control.FDInfo{}, &control.RequestError{Err: fmt.Errorf("op %q: unknown", req.Op)}
}

// fdAddr parses HOST:PORT. An empty host is the sandbox's IPv4 address
// (remote) or the gateway's (local); a remote port must not be 0.
func (in *Instance) fdAddr(s string, remote bool) (netip.AddrPort, error) {
	bad := func(err error) (netip.AddrPort, error) {
		return netip.AddrPort{}, &control.RequestError{Err: fmt.Errorf("address %q: %w", s, err)}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bad(err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return bad(fmt.Errorf("port %q is not a number from 0 to 65535", port))
	}
	if remote && p == 0 {
		return bad(fmt.Errorf("port 0"))
	}
	var a netip.Addr
	switch {
	case host == "" && remote:
		a = in.cfg.V4.Sandbox
	case host == "":
		a = in.cfg.V4.Gateway
	default:
		if a, err = netip.ParseAddr(host); err != nil {
			return bad(fmt.Errorf("host %q is not an IP address", host))
		}
		if a.Zone() != "" {
			return bad(fmt.Errorf("zones are not supported"))
		}
	}
	if !a.IsValid() {
		return bad(fmt.Errorf("the instance has no such network"))
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

// fdGateway is the gateway address of dst's family (the source of
// handed-over connections).
func (in *Instance) fdGateway(dst netip.Addr) netip.Addr {
	if dst.Is6() && in.cfg.V6.Gateway.IsValid() {
		return in.cfg.V6.Gateway
	}
	if dst.Is4() {
		return in.cfg.V4.Gateway
	}
	return netip.Addr{}
}
