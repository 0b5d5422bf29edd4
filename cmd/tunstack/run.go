package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tunstack/tunstack/instance"
	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/procs"
	"github.com/tunstack/tunstack/sandbox"
	"github.com/tunstack/tunstack/stack/forward"
	"github.com/tunstack/tunstack/stack/gateway"
	"github.com/tunstack/tunstack/tun"
)

const runLong = `Run COMMAND in a new network namespace whose only interface besides lo is
tun0, a TUN device served by tunstack's userspace stack. As an unprivileged
user a new user namespace maps you to root inside (/dev/net/tun must be
usable: mode 0666). As root, the command runs in a user namespace that maps
root to root: it keeps root's file access but holds capabilities only over
the sandbox's own namespaces (it can configure tun0, it cannot enter the
host's namespaces); --host-caps keeps root's host capabilities instead.

The command runs in a new PID namespace, as the only child of an init that
forwards signals and reaps; when the command exits, everything it left
running in the sandbox is killed. --no-pidns runs it in tunstack's PID
namespace (what it leaves running then outlives it).

TCP and UDP to any address are terminated in the stack and redialled from
host sockets, so the command sees what the host sees: a closed port is
refused at once, an unreachable network reports ICMP unreachable, a silent
host times out. 10.0.2.2 (fd00::2) reaches the host's loopback; 10.0.2.3
(fd00::3) relays DNS to the host's resolvers; ping works through the host's
ICMP datagram sockets (net.ipv4.ping_group_range).

The command gets the terminal, stdin, stdout and stderr as they are, and
the signals tunstack receives (INT, TERM, HUP, QUIT, USR1, USR2). It starts
only once the network is up. tunstack exits with its status.`

// runOptions are the flags of "tunstack run".
type runOptions struct {
	cidr, cidr6         string
	noIPv6              bool
	mtu                 int
	txQueueLen          int
	queues              int
	offload             string
	disableHostLoopback bool
	dnsUpstreams        []string
	name                string
	publish             []string
	pcap                string
	rules, rules6       string
	allow               allowOptions
	limits              limitOptions
	conntrackMax        int
	procs               int
	hostCaps, noPIDNS   bool
	forwardPath         string
	harden              hardenFlags
}

func newRunCmd(g *globalFlags) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a command in a sandboxed network namespace",
		Long:  runLong,
		Example: `  tunstack run -- curl http://10.0.2.2:8080/
  tunstack run --disable-host-loopback -- ping -c1 198.18.0.1
  tunstack run --mtu 1500 --dns-upstream 127.0.0.1:5353 -- bash
  tunstack run --cidr 10.9.0.0/24 -- ip addr
  tunstack run --rules firewall.v4 -- curl http://10.0.2.2:8080/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			code, err := runSandbox(o, args, log)
			if err != nil {
				if errors.Is(err, sandbox.ErrNotFound) {
					fmt.Fprintf(os.Stderr, "tunstack: %v\n", err)
					return exitError{127}
				}
				if errors.Is(err, sandbox.ErrNotExecutable) {
					fmt.Fprintf(os.Stderr, "tunstack: %v\n", err)
					return exitError{126}
				}
				return err
			}
			return exitError{code}
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	o.addFlags(f)
	f.BoolVar(&o.hostCaps, "host-caps", false, "as root, run the command without a user namespace, keeping root's capabilities over the host (it can then leave its network namespace)")
	f.BoolVar(&o.noPIDNS, "no-pidns", false, "run the command in tunstack's PID namespace: it sees host processes, and what it leaves running outlives it")
	f.StringVar(&o.forwardPath, "forward-path", string(forward.PathAuto), "how TCP forwards (-p) reach the sandbox: auto (splice host-loopback and unix-socket clients kernel to kernel while no firewall rule is loaded; the stack otherwise), stack (always through the stack, tun0 and the firewall) or splice (every client, firewall or not)")
	return cmd
}

// addFlags adds the network flags run and attach share.
func (o *runOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.cidr, "cidr", gateway.DefaultCIDR.String(), "IPv4 network of the sandbox (sandbox .100, gateway .2, DNS .3)")
	f.StringVar(&o.cidr6, "cidr6", gateway.DefaultCIDR6.String(), "IPv6 network of the sandbox (::100, ::2, ::3)")
	f.BoolVar(&o.noIPv6, "no-ipv6", false, "configure no IPv6 in the sandbox")
	f.IntVar(&o.mtu, "mtu", sandbox.MaxMTU, fmt.Sprintf("MTU of tun0 (%d..%d)", sandbox.MinMTU, sandbox.MaxMTU))
	f.IntVar(&o.txQueueLen, "txqueuelen", sandbox.DefaultTxQueueLen, "transmit queue length of tun0")
	f.IntVar(&o.queues, "queues", 1, fmt.Sprintf("TUN queues, each read by its own goroutine (1..%d; more than 1 helps only with spare cores)", sandbox.MaxQueues))
	f.StringVar(&o.offload, "offload", "auto", "TUN offloads (virtio-net header, TSO): auto, on or off")
	f.BoolVar(&o.disableHostLoopback, "disable-host-loopback", false, "refuse connections to the gateway instead of reaching the host's loopback")
	f.StringArrayVar(&o.dnsUpstreams, "dns-upstream", nil, "DNS resolver ADDR[:PORT] to relay to (repeatable; default: the host's /etc/resolv.conf)")
	addInstanceFlags(f, &o.name, &o.publish, &o.pcap)
	f.StringVar(&o.rules, "rules", "", "load an iptables-save FILE (IPv4) into the firewall before the command starts")
	f.StringVar(&o.rules6, "rules6", "", "load an ip6tables-save FILE (IPv6) into the firewall before the command starts")
	o.allow.addFlags(f)
	o.limits.addFlags(f)
	f.IntVar(&o.conntrackMax, "conntrack-max", netfilter.DefaultMaxFlows, "most tracked connections (nf_conntrack_max); past it unreplied ones are evicted, then new ones go untracked")
	o.harden.add(f)
	f.IntVar(&o.procs, "procs", 0, "OS threads running Go code at once (GOMAXPROCS) for the stack; 0 = adaptive: 1 while tun0 moves under 32 MiB/s (small flows hand off on one thread), all CPUs for bulk")
}

// applyProcs sets GOMAXPROCS from --procs before the stack exists: gVisor
// sizes its TCP processor pool by GOMAXPROCS when the stack is created.
// The sandboxed command does not inherit it (it is not an environment
// variable).
func (o *runOptions) applyProcs() error {
	if o.procs < 0 || o.procs > 1024 {
		return fmt.Errorf("--procs %d: must be between 0 and 1024", o.procs)
	}
	if o.procs > 0 {
		runtime.GOMAXPROCS(o.procs)
	}
	return nil
}

// governProcs starts a procs.Governor for --procs 0, once the stack exists
// (so gVisor has one TCP processor per CPU for when load comes). stop ends
// it and waits for it.
func (o *runOptions) governProcs(in *instance.Instance, log *slog.Logger) (stop func()) {
	if o.procs != 0 {
		return func() {}
	}
	return startGovernor(in, log)
}

// startGovernor runs a procs.Governor on the byte counters of in's TUN
// device until stop, which waits for it.
func startGovernor(in *instance.Instance, log *slog.Logger) (stop func()) {
	if in.Endpoint == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st := &in.Endpoint.Stats
		bytes := func() uint64 { return st.RxBytes.Load() + st.TxBytes.Load() }
		procs.Governor{Bytes: bytes, Logger: log}.Run(ctx)
	}()
	return func() { cancel(); <-done }
}

// loadRules reads and validates --rules and --rules6: a bad file fails
// here, naming its line, before anything starts.
func (o *runOptions) loadRules(c *instance.Config) error {
	for _, r := range []struct {
		flag, path string
		fam        netfilter.Family
	}{{"--rules", o.rules, netfilter.IPv4}, {"--rules6", o.rules6, netfilter.IPv6}} {
		if r.path == "" {
			continue
		}
		data, err := os.ReadFile(r.path)
		if err != nil {
			return fmt.Errorf("%s: %w", r.flag, err)
		}
		if err := netfilter.Validate(r.fam, string(data)); err != nil {
			return fmt.Errorf("%s %s: %w", r.flag, r.path, err)
		}
		if c.Rules == nil {
			c.Rules = map[netfilter.Family]string{}
		}
		c.Rules[r.fam] = string(data)
	}
	return nil
}

// config turns the flags into an instance configuration.
func (o *runOptions) config(command []string, log *slog.Logger) (instance.Config, error) {
	c := instance.Config{
		Command: command, MTU: o.mtu, TxQueueLen: o.txQueueLen, Queues: o.queues,
		DisableHostLoopback: o.disableHostLoopback, Logger: log,
		HostCaps: o.hostCaps, NoPIDNS: o.noPIDNS,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Confine: o.harden.options(true),
	}
	// The flags as given: an explicit --queues 0 is refused, not defaulted.
	if err := c.Device().Validate(); err != nil {
		return c, fmt.Errorf("tun0: %w", err)
	}
	var err error
	if c.Offload, err = tun.ParseOffloadMode(o.offload); err != nil {
		return c, fmt.Errorf("--offload: %w", err)
	}
	if c.V4, err = parseNetwork("--cidr", o.cidr, false); err != nil {
		return c, err
	}
	if !o.noIPv6 {
		if c.V6, err = parseNetwork("--cidr6", o.cidr6, true); err != nil {
			return c, err
		}
	}
	if err := o.extrasConfig(&c); err != nil {
		return c, err
	}
	if c.ForwardPath, err = forward.ParsePath(o.forwardPath); err != nil {
		return c, fmt.Errorf("--forward-path: %w", err)
	}
	if err := o.loadRules(&c); err != nil {
		return c, err
	}
	if err := o.allow.apply(&c); err != nil {
		return c, err
	}
	if c.Limits, err = o.limits.limits(); err != nil {
		return c, err
	}
	if o.conntrackMax < 1 {
		return c, fmt.Errorf("--conntrack-max %d: must be at least 1", o.conntrackMax)
	}
	c.ConntrackMax = o.conntrackMax
	for _, s := range o.dnsUpstreams {
		ap, err := parseUpstream(s)
		if err != nil {
			return c, err
		}
		c.DNSUpstreams = append(c.DNSUpstreams, ap)
	}
	return c, nil
}

// runSandbox starts the instance, runs the command and returns its status.
func runSandbox(o *runOptions, command []string, log *slog.Logger) (int, error) {
	cfg, err := o.config(command, log)
	if err != nil {
		return 0, err
	}
	if err := o.applyProcs(); err != nil {
		return 0, err
	}
	in, err := instance.Start(cfg)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	defer o.governProcs(in, log)()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	return in.Run(sigs)
}

func parseNetwork(flag, s string, v6 bool) (gateway.Addresses, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return gateway.Addresses{}, fmt.Errorf("%s %q: %v", flag, s, err)
	}
	if pfx.Addr().Is6() != v6 {
		return gateway.Addresses{}, fmt.Errorf("%s %q: wrong address family", flag, s)
	}
	a, err := gateway.AddressesFor(pfx)
	if err != nil {
		return gateway.Addresses{}, fmt.Errorf("%s: %w", flag, err)
	}
	return a, nil
}

func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--dns-upstream %q: want ADDR or ADDR:PORT", s)
	}
	return netip.AddrPortFrom(a, 53), nil
}

// forwardedSignals are relayed to the command.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
