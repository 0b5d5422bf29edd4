package instance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/tunstack/tunstack/sandbox"
	"github.com/tunstack/tunstack/stack/dnsrelay"
)

// AttachTarget names the existing namespace an attached instance serves.
type AttachTarget struct {
	// PID is a process in the namespace (0: use NetNS).
	PID int
	// NetNS and UserNS are namespace paths, used when PID is 0.
	NetNS, UserNS string
	// TAP, if set, serves an Ethernet TAP device of this name (opened,
	// or created when missing) instead of creating tun0: slirp4netns's
	// model. IPv6 is then configured by router advertisements (SLAAC).
	TAP string
	// Unconfigured leaves the TAP device's addresses, routes and MTU to
	// its creator (rootlesskit configures tap0 itself).
	Unconfigured bool
	// MAC, if set, is given to the TAP device.
	MAC string
}

// Attach serves an existing network namespace: it creates and configures
// tun0 there and serves it like Start does for a new sandbox. cfg.Command
// is ignored.
func Attach(cfg Config, target AttachTarget) (*Instance, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	in := &Instance{cfg: cfg, log: cfg.Logger, started: time.Now()}
	in.kind = "attach"
	in.setDNS()
	ac := sandbox.AttachConfig{PID: target.PID, NetNS: target.NetNS, UserNS: target.UserNS, Device: cfg.Device()}
	if target.TAP != "" {
		in.kind = "slirp4netns"
		d := &ac.Device
		// IPv6 on a TAP device comes from router advertisements.
		d.Addr6, d.Gateway6 = netip.Prefix{}, netip.Addr{}
		d.TAP, d.Name, d.Unconfigured, d.MAC = true, target.TAP, target.Unconfigured, target.MAC
	}
	sb, err := sandbox.Attach(ac)
	if err != nil {
		return nil, err
	}
	in.Sandbox = sb
	if target.PID > 0 {
		in.cfg.Command = []string{fmt.Sprintf("pid %d", target.PID)}
	} else {
		in.cfg.Command = []string{target.NetNS}
	}
	if err := in.serve(sb.Device); err != nil {
		return nil, err
	}
	return in, nil
}

// Wait blocks until an attached namespace goes away or ctx is done.
func (in *Instance) Wait(ctx context.Context) {
	in.Sandbox.WaitGone(ctx.Done())
}

// setDNS defaults the DNS relay's upstreams to the host's resolvers.
func (in *Instance) setDNS() {
	if len(in.cfg.DNSUpstreams) > 0 {
		return
	}
	ups, err := dnsrelay.HostUpstreams("/etc/resolv.conf")
	if err != nil {
		in.log.Warn("DNS: cannot read the host's resolvers; queries get SERVFAIL", "err", err)
	}
	in.cfg.DNSUpstreams = ups
}
