// Package instance is one running tunstack: a sandbox (or an attached
// namespace), the stack serving its TUN device, and the gateway services.
// The command line creates one per "tunstack run"; the control plane and
// the views read and change it while it runs.
package instance

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tunstack/tunstack/harden"
	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/netfilter/fqdn"
	"github.com/tunstack/tunstack/sandbox"
	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/capture"
	"github.com/tunstack/tunstack/stack/dnsrelay"
	"github.com/tunstack/tunstack/stack/egress"
	"github.com/tunstack/tunstack/stack/forward"
	"github.com/tunstack/tunstack/stack/gateway"
	"github.com/tunstack/tunstack/tun"
	"github.com/tunstack/tunstack/tun/ethlink"
)

// Config describes an instance.
type Config struct {
	// Name identifies the instance to the control plane.
	Name string
	// Command is run in the sandbox.
	Command []string
	// V4 and V6 are the sandbox networks (a zero V6.Network disables IPv6).
	V4, V6 gateway.Addresses
	// MTU of tun0 (sandbox.MinMTU..sandbox.MaxMTU).
	MTU int
	// TxQueueLen of tun0.
	TxQueueLen int
	// Queues of tun0 (IFF_MULTI_QUEUE above 1).
	Queues int
	// Offload selects the TUN path.
	Offload tun.OffloadMode
	// DisableHostLoopback refuses the gateway address.
	DisableHostLoopback bool
	// DNSUpstreams; empty means the host's /etc/resolv.conf.
	DNSUpstreams []netip.AddrPort
	// Dialer, if set, makes the host side of the sandbox's connections
	// (slirp4netns's --outbound-addr); nil dials from the kernel's choice.
	Dialer egress.Dialer
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Stdin, Stdout, Stderr are the command's.
	Stdin, Stdout, Stderr *os.File
	// Forwards are the host → sandbox port forwards to start.
	Forwards []forward.Spec
	// ForwardPath is how forwarded TCP connections reach the sandbox
	// (forward.PathAuto when empty; see forward.Path).
	ForwardPath forward.Path
	// PcapPath, if set, records every packet on tun0 from the start
	// ("-" is standard output).
	PcapPath string
	// ControlDir is where the control socket NAME.sock is served; empty
	// serves none.
	ControlDir string
	// HostCaps (root only) leaves the command root's host capabilities
	// (no user namespace); see sandbox.Config.
	HostCaps bool
	// NoPIDNS runs the command without a PID namespace of its own.
	NoPIDNS bool
	// Rules are iptables-save texts (IPv4, IPv6) loaded into the
	// firewall, in one atomic commit, before the command starts.
	Rules map[netfilter.Family]string
	// AllowHosts, when not empty, makes the sandbox's egress
	// deny-by-default but for these patterns (--allow-host; package
	// netfilter/fqdn).
	AllowHosts []fqdn.Pattern
	// AllowHostMinTTL is the floor of a learned address's lifetime (0:
	// fqdn.DefaultMinTTL; negative: none).
	AllowHostMinTTL time.Duration
	// AuditPath, if set, is a file that receives every allowlist
	// decision as a JSON line (appended to).
	AuditPath string
	// Limits cap the flows the sandbox can open. A zero HostFDs is
	// computed at start from RLIMIT_NOFILE (see FDReserve).
	Limits gateway.Limits
	// ConntrackMax bounds the firewall's connection tracking (0: the
	// default, netfilter.DefaultMaxFlows).
	ConntrackMax int
	// Confine, if not nil, confines this process once the instance is
	// set up (package harden); it cannot be undone, so library users that
	// share their process leave it nil.
	Confine *harden.Options
}

// Instance is a running sandbox and its stack.
type Instance struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	// Sandbox is the namespace and the command.
	Sandbox *sandbox.Sandbox
	// Stack serves tun0.
	Stack *stack.Stack
	// NIC is tun0's NIC in Stack.
	NIC stack.NICID
	// Endpoint is tun0's link endpoint.
	Endpoint *tun.Endpoint
	// Gateway runs the egress, DNS and ping relays.
	Gateway *gateway.Gateway
	// Capture taps tun0 for tcpdump and --pcap.
	Capture *capture.Endpoint
	// Forwards are the port forwards.
	Forwards *forward.Manager
	// Firewall is the stack's iptables (gateway mode).
	Firewall *netfilter.Firewall
	// Allowlist is the --allow-host policy (nil without one).
	Allowlist *fqdn.Policy

	extras
}

// tunWriteQueue is the TUN NIC's write queue in packets (gVisor's usual
// FIFO length; a packet is at most 64 KiB with offloads).
const tunWriteQueue = 1000

// Start creates the sandbox and serves its network. The command does not
// run until Run.
func Start(cfg Config) (*Instance, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	in := &Instance{cfg: cfg, log: cfg.Logger, started: time.Now()}
	in.setDNS()
	sb, err := sandbox.Start(in.sandboxConfig())
	if err != nil {
		return nil, err
	}
	in.Sandbox = sb
	for _, n := range sb.Notes {
		in.log.Warn(n)
	}
	if err := in.serve(sb.Device); err != nil {
		sb.Kill()
		sb.Wait()
		return nil, err
	}
	return in, nil
}

func (in *Instance) sandboxConfig() sandbox.Config {
	c := in.cfg
	return sandbox.Config{
		Command: c.Command, Device: c.Device(),
		ResolvConf: in.resolvConf(), HidePaths: in.hidePaths(),
		Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr,
		HostCaps: c.HostCaps, NoPIDNS: c.NoPIDNS,
	}
}

// Device is the device the configuration asks for: tun0 with the
// sandbox's addresses and default routes. sandbox.Start and
// sandbox.Attach validate it; a command line checks its flags with
// Device().Validate().
func (c Config) Device() sandbox.DeviceConfig {
	d := sandbox.DeviceConfig{
		Offload: c.Offload, MTU: c.MTU, TxQueueLen: c.TxQueueLen, Queues: c.Queues,
		Addr4: netip.PrefixFrom(c.V4.Sandbox, c.V4.Network.Bits()), Gateway4: c.V4.Gateway,
	}
	if c.V6.Network.IsValid() {
		d.Addr6 = netip.PrefixFrom(c.V6.Sandbox, c.V6.Network.Bits())
		d.Gateway6 = c.V6.Gateway
	}
	return d
}

func (in *Instance) serve(dev *tun.Device) error {
	ep, err := tun.NewEndpoint(dev, uint32(in.cfg.MTU), in.log)
	if err != nil {
		dev.Close()
		return err
	}
	if dev.TAP {
		ep.SetLink(in.ethLink(dev))
	}
	// A promiscuous NIC needs NoLocalDelivery (see stack.Options).
	st, err := stack.New(stack.Options{Logger: in.log, NoLocalDelivery: true})
	if err != nil {
		dev.Close()
		return err
	}
	// The capture tap wraps the device: it costs an atomic load per
	// batch while nobody listens, and --pcap sees the very first packet.
	tap := capture.NewEndpoint(ep)
	if err := in.startPcap(tap); err != nil {
		st.Close()
		dev.Close()
		return err
	}
	// The firewall's stage sits above the tap (capture sees fragments as
	// they came) and reassembles them once rules are loaded.
	// NoPrefixRoute: the gateway routes everything through this NIC with
	// default routes, so on-link routes would only clutter the route view.
	// WriteQueue: TUN writes are syscalls, and one made under a gVisor
	// endpoint lock stalls a one-P process for ~10 ms (stack.NICConfig).
	fwLink := netfilter.NewLinkEndpoint(tap)
	nic, err := st.AddNIC(stack.NICConfig{Name: dev.Name, Endpoint: fwLink, Promiscuous: true, Spoofing: true, Disabled: true, NoPrefixRoute: true, WriteQueue: tunWriteQueue})
	if err != nil {
		in.closeExtras()
		st.Close()
		dev.Close()
		return err
	}
	limits := in.cfg.Limits
	if limits.HostFDs == 0 {
		limits.HostFDs = hostFDBudget(in.log)
	}
	gw, err := gateway.Start(st, nic, gateway.Config{
		// The host side's source (slirp4netns's --outbound-addr).
		Dialer: in.cfg.Dialer,

		V4: in.cfg.V4, V6: in.cfg.V6, DisableHostLoopback: in.cfg.DisableHostLoopback,
		DNSUpstreams: in.cfg.DNSUpstreams, Logger: in.log, Limits: limits,
	})
	if err != nil {
		in.closeExtras()
		st.Close()
		return err
	}
	in.Stack, in.NIC, in.Endpoint, in.Gateway, in.Capture = st, nic, ep, gw, tap
	if err := in.startFirewall(fwLink); err != nil {
		in.Close()
		return err
	}
	if err := in.startAllowlist(); err != nil {
		in.Close()
		return err
	}
	if err := in.startExtras(); err != nil {
		in.Close()
		return err
	}
	// Everything that needs privilege is open: the device, the control
	// socket, the forwards, the pcap file.
	if err := in.confine(); err != nil {
		in.Close()
		return err
	}
	return nil
}

// confine applies cfg.Confine.
func (in *Instance) confine() error {
	if in.cfg.Confine == nil {
		return nil
	}
	o := *in.cfg.Confine
	o.Logger = in.log
	if p := in.ControlPath(); p != "" {
		o.RemoveAtExit = append(o.RemoveAtExit, p)
	}
	for _, f := range in.cfg.Forwards {
		if f.HostPath != "" {
			o.RemoveAtExit = append(o.RemoveAtExit, f.HostPath)
		}
	}
	return harden.Apply(o)
}

// Run lets the command start and waits for it; it returns the command's
// exit status (128+N when killed by signal N). signals, if not nil, are
// forwarded to the command while it runs.
func (in *Instance) Run(signals <-chan os.Signal) (int, error) {
	done := make(chan struct{})
	defer close(done)
	if signals != nil {
		go func() {
			for {
				select {
				case s := <-signals:
					in.Sandbox.Signal(s)
				case <-done:
					return
				}
			}
		}()
	}
	if err := in.Sandbox.Release(); err != nil {
		in.Sandbox.Kill()
	}
	return in.Sandbox.Wait()
}

// ethLink answers a TAP device's link layer for the gateway's addresses.
func (in *Instance) ethLink(dev *tun.Device) *ethlink.Link {
	c := in.cfg
	lc := ethlink.Config{MTU: c.MTU}
	if c.V4.Network.IsValid() {
		lc.Gateway4, lc.DNS4 = c.V4.Gateway, c.V4.DNS
	}
	if c.V6.Network.IsValid() {
		lc.Prefix6, lc.Gateway6, lc.DNS6 = c.V6.Network, c.V6.Gateway, c.V6.DNS
	}
	if mac, err := dev.HardwareAddr(); err == nil {
		lc.GuestMAC = mac
	} else {
		in.log.Debug("TAP: sandbox MAC unknown until it sends a frame", "err", err)
	}
	return ethlink.New(lc)
}

// Close stops the relays and the stack; the TUN device goes with it.
func (in *Instance) Close() error {
	var errs []error
	errs = append(errs, in.closeExtras())
	errs = append(errs, in.closeAllowlist())
	if in.Gateway != nil {
		errs = append(errs, in.Gateway.Close())
	}
	if in.Stack != nil {
		in.logCounters()
		errs = append(errs, in.Stack.Close())
	}
	return errors.Join(errs...)
}

// Config returns the instance's configuration.
func (in *Instance) Config() Config { return in.cfg }

// Started returns when the instance started.
func (in *Instance) Started() time.Time { return in.started }

func (in *Instance) logCounters() {
	c := &in.Endpoint.Stats
	in.log.Debug("tun counters", "dev", in.Endpoint.Device().Name, "offload", in.Endpoint.Device().Offload,
		"rx_packets", c.RxPackets.Load(), "rx_gso", c.RxGSO.Load(), "rx_dropped", c.RxDropped.Load(), "rx_errors", c.RxErrors.Load(),
		"tx_packets", c.TxPackets.Load(), "tx_gso", c.TxGSO.Load(), "tx_errors", c.TxErrors.Load())
}

// resolvConf points the sandbox at the DNS relay and keeps the host's
// search domains and options.
func (in *Instance) resolvConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by tunstack: the DNS relay on the gateway\nnameserver %s\n", in.cfg.V4.DNS)
	if in.cfg.V6.Network.IsValid() {
		fmt.Fprintf(&b, "nameserver %s\n", in.cfg.V6.DNS)
	}
	if rc, err := dnsrelay.ReadResolvConf("/etc/resolv.conf"); err == nil {
		for _, line := range rc.ResolverLines {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
