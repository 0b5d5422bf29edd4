package instance

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/stack/capture"
	"github.com/tunstack/tunstack/stack/forward"
	"github.com/tunstack/tunstack/stack/views"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// backend serves an instance's control socket.
type backend struct{ in *Instance }

var _ control.Backend = backend{}

func (in *Instance) sandboxPID() int {
	if in.Sandbox == nil {
		return 0
	}
	return in.Sandbox.Pid()
}

// Info implements control.Backend.
func (b backend) Info() control.Info {
	in := b.in
	info := control.Info{
		Name: in.cfg.Name, PID: os.Getpid(), Kind: "run", Command: in.cfg.Command,
		SandboxPID: in.sandboxPID(), Started: in.started, Forwards: APIForwards(in.Forwards.List()),
		Socket: in.ControlPath(), Limits: in.limitStats(), Goroutines: runtime.NumGoroutine(),
	}
	if in.Allowlist != nil {
		info.AllowHosts = patternStrings(in.Allowlist.Patterns())
	}
	if in.Endpoint != nil {
		info.Interface = in.Endpoint.Device().Name
	}
	for _, a := range []struct {
		net         netip.Prefix
		sb, gw, dns netip.Addr
	}{
		{in.cfg.V4.Network, in.cfg.V4.Sandbox, in.cfg.V4.Gateway, in.cfg.V4.DNS},
		{in.cfg.V6.Network, in.cfg.V6.Sandbox, in.cfg.V6.Gateway, in.cfg.V6.DNS},
	} {
		if !a.net.IsValid() {
			continue
		}
		if in.kind == "slirp4netns" && a.sb.Is6() {
			// A TAP sandbox takes its IPv6 address by SLAAC: only the
			// prefix is known.
			info.Addresses = append(info.Addresses, a.net)
		} else {
			info.Addresses = append(info.Addresses, netip.PrefixFrom(a.sb, a.net.Bits()))
		}
		info.Gateways = append(info.Gateways, a.gw)
		info.DNS = append(info.DNS, a.dns)
	}
	if in.kind != "" {
		info.Kind = in.kind
	}
	if in.Firewall != nil {
		info.Firewall = APIFirewallStats(in.Firewall.Stats())
	}
	return info
}

// Sockets implements control.Backend.
func (b backend) Sockets(ctx context.Context, q control.SocketQuery) ([]control.Socket, error) {
	return APISockets(b.sockets(q)), nil
}

func (b backend) sockets(q control.SocketQuery) []views.Socket {
	var socks []views.Socket
	stackSide, sandboxSide := q.Side != control.SideSandbox, q.Side == control.SideSandbox || q.Side == control.SideAll
	if stackSide {
		socks = views.SocketsWithBacklog(b.in.Stack.GVisor(), q.TCPInfo, b.in.Stack.Backlog)
	}
	pid := b.in.sandboxPID()
	if pid == 0 || !(q.Processes || sandboxSide) {
		return socks
	}
	idx, err := b.in.procIndex(pid, q.Processes)
	if err != nil {
		// The sandbox may be exiting; the stack's sockets are still
		// worth showing.
		b.in.log.Debug("ss: cannot read the sandbox's sockets", "pid", pid, "err", err)
		return socks
	}
	if q.Processes && stackSide {
		idx.Annotate(socks)
	}
	if sandboxSide {
		socks = append(socks, idx.Sockets()...)
	}
	return socks
}

// procIndex indexes the sandbox's sockets (those of pid's namespace) and,
// with processes, their holders. The sockets come from sock_diag, as ss's
// do, over a socket the sandbox's init made in the namespace (so a
// listener's backlog and IPV6_V6ONLY are read); without an init (an
// attached namespace) or should that fail, from the namespace's /proc
// tables, which lack both. Where this process may not read the holders'
// /proc entries (root's sandbox, to tunstack confined to nobody), the
// sandbox's init names them, with the pids it sees.
func (in *Instance) procIndex(pid int, processes bool) (*views.ProcIndex, error) {
	idx, err := in.diagIndex(pid, processes)
	if idx == nil {
		if err != nil {
			in.log.Debug("ss: sock_diag in the sandbox failed; reading /proc", "pid", pid, "err", err)
		}
		idx, err = views.NewProcIndex("/proc", pid, processes)
	}
	if err != nil || !processes || idx.ProcessErr() == nil {
		return idx, err
	}
	if in.Sandbox == nil {
		return idx, nil
	}
	holders, herr := in.Sandbox.SocketHolders()
	if herr != nil {
		in.log.Debug("ss -p: cannot index sandbox processes", "pid", pid, "err", idx.ProcessErr(), "init", herr)
		return idx, nil
	}
	h := make(map[uint64][]views.Process, len(holders))
	for ino, hs := range holders {
		for _, p := range hs {
			h[ino] = append(h[ino], views.Process{PID: p.PID, Command: p.Command, FD: p.FD})
		}
	}
	idx.SetHolders(h)
	return idx, nil
}

// diagIndex indexes the sandbox's sockets from a sock_diag dump in its
// namespace; nil (and no error) when the sandbox has no init to make the
// socket.
func (in *Instance) diagIndex(pid int, processes bool) (*views.ProcIndex, error) {
	if in.Sandbox == nil || !in.Sandbox.HasInner() {
		return nil, nil
	}
	var socks []views.Socket
	err := in.Sandbox.WithSockDiag(func(fd int) (err error) {
		socks, err = views.DiagSockets(fd)
		return err
	})
	if err != nil {
		return nil, err
	}
	return views.NewSocketIndex(socks, "/proc", pid, processes), nil
}

// Links implements control.Backend.
func (b backend) Links() []control.Link {
	in := b.in
	return APILinks(views.Links(in.Stack.GVisor(), func(id tcpip.NICID) views.LinkExtra {
		if id != in.NIC || in.Endpoint == nil {
			return views.LinkExtra{}
		}
		offload := "off"
		if in.Endpoint.Device().Offload {
			offload = "vnet_hdr tso"
		}
		c := &in.Endpoint.Stats
		// Counted from the stack's side: what it received from the
		// sandbox is RX, as on the host end of a veth.
		return views.LinkExtra{
			Offload: offload, TxQueueLen: in.cfg.TxQueueLen,
			Stats: &views.LinkStats{
				RxBytes: c.RxBytes.Load(), RxPackets: c.RxPackets.Load(), RxErrors: c.RxErrors.Load(),
				RxDropped: c.RxDropped.Load(), RxGSO: c.RxGSO.Load(),
				TxBytes: c.TxBytes.Load(), TxPackets: c.TxPackets.Load(), TxErrors: c.TxErrors.Load(),
				TxGSO: c.TxGSO.Load(),
			},
		}
	}))
}

// Routes implements control.Backend.
func (b backend) Routes() []control.Route { return APIRoutes(views.Routes(b.in.Stack.GVisor())) }

// Capture implements control.Backend.
func (b backend) Capture(req control.CaptureRequest) (control.CaptureStream, error) {
	name := ""
	if b.in.Endpoint != nil {
		name = b.in.Endpoint.Device().Name
	}
	host := req.Interface == HostCaptureInterface
	if req.Interface != "" && req.Interface != name && req.Interface != AnyCaptureInterface && !host {
		return nil, fmt.Errorf("capture: no interface %q (the instance has %s and %s)", req.Interface, name, HostCaptureInterface)
	}
	f, err := capture.ParseFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	if host {
		hc, err := b.in.hostCap()
		if err != nil {
			return nil, err
		}
		sub, err := hc.Subscribe(f, req.SnapLen, 0)
		if err != nil {
			return nil, err // not a nil *Subscription in a non-nil interface
		}
		return sub, nil
	}
	sub := b.in.Capture.Subscribe(f, req.SnapLen, 0)
	if req.Interface == AnyCaptureInterface {
		// Like tcpdump -i any: Linux cooked v2, with tun0's index as
		// "tunstack ip link" lists it (the stack's NIC).
		sub.Cooked(uint32(b.in.NIC))
	}
	return sub, nil
}

// Forwards implements control.Backend.
func (b backend) Forwards() []control.Forward { return APIForwards(b.in.Forwards.List()) }

// AddForwards implements control.Backend: a spec that does not parse is a
// bad request, one that cannot start a conflict.
func (b backend) AddForwards(strs []string) ([]control.Forward, error) {
	var specs []forward.Spec
	for _, str := range strs {
		sp, err := forward.ParseSpec(str)
		if err != nil {
			return nil, &control.RequestError{Err: err}
		}
		specs = append(specs, sp...)
	}
	infos, err := b.in.Forwards.Add(specs)
	if err != nil {
		return nil, err
	}
	return APIForwards(infos), nil
}

// RemoveForward implements control.Backend.
func (b backend) RemoveForward(id string) error { return b.in.Forwards.Remove(id) }
