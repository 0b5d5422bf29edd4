package main

import (
	"fmt"
	"gvisor.dev/gvisor/pkg/tcpip"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"strings"

	"github.com/tunstack/tunstack/sandbox"
	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/dnsrelay"
	"github.com/tunstack/tunstack/stack/gateway"
	"github.com/tunstack/tunstack/tun"
)

// runSandbox starts the sandbox, serves it until the command exits, and
// returns the command's exit status.
func runSandbox(o *runOptions, command []string, log *slog.Logger) (int, error) {
	p, err := o.plan()
	if err != nil {
		return 0, err
	}
	if len(p.upstreams) == 0 {
		ups, err := dnsrelay.HostUpstreams("/etc/resolv.conf")
		if err != nil {
			log.Warn("DNS: cannot read the host's resolvers; queries get SERVFAIL", "err", err)
		}
		p.upstreams = ups
	}
	sbCfg := sandbox.Config{
		Command: command, Offload: p.offload, MTU: p.mtu, TxQueueLen: o.txQueueLen,
		Addr4: netip.PrefixFrom(p.v4.Sandbox, p.v4.Network.Bits()), Gateway4: p.v4.Gateway,
		ResolvConf: sandboxResolvConf(p),
		Stdin:      os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	}
	if p.v6.Network.IsValid() {
		sbCfg.Addr6 = netip.PrefixFrom(p.v6.Sandbox, p.v6.Network.Bits())
		sbCfg.Gateway6 = p.v6.Gateway
	}
	sb, err := sandbox.Start(sbCfg)
	if err != nil {
		return 0, err
	}
	for _, n := range sb.Notes {
		log.Warn(n)
	}
	srv, err := serve(sb.Device, p, o, log)
	if err != nil {
		sb.Device.Close()
		sb.Kill()
		sb.Wait()
		return 0, err
	}
	defer srv.close()
	stop := forwardSignals(sb)
	defer stop()
	if err := sb.Release(); err != nil {
		sb.Kill()
	}
	return sb.Wait()
}

// server is the stack side of a running instance.
type server struct {
	st  *stack.Stack
	gw  *gateway.Gateway
	ep  *tun.Endpoint
	log *slog.Logger
}

func serve(dev *tun.Device, p *plan, o *runOptions, log *slog.Logger) (*server, error) {
	ep, err := tun.NewEndpoint(dev, uint32(p.mtu), log)
	if err != nil {
		return nil, err
	}
	st, err := stack.New(stack.Options{Logger: log, NoLocalDelivery: true})
	if err != nil {
		return nil, err
	}
	nic, err := st.AddNIC(stack.NICConfig{Name: dev.Name, Endpoint: ep, Promiscuous: true, Spoofing: true})
	if err != nil {
		st.Close()
		return nil, err
	}
	gw, err := gateway.Start(st, nic, gateway.Config{
		V4: p.v4, V6: p.v6, DisableHostLoopback: o.disableHostLoopback,
		DNSUpstreams: p.upstreams, Logger: log,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &server{st: st, gw: gw, ep: ep, log: log}, nil
}

func (s *server) close() {
	s.gw.Close()
	st := s.st.GVisor().Stats()
	s.log.Debug("stack counters", "ip_rx", st.IP.PacketsReceived.Value(), "ip_malformed", st.IP.MalformedPacketsReceived.Value(),
		"ip_invalid_dst", st.IP.InvalidDestinationAddressesReceived.Value(), "ip_delivered", st.IP.PacketsDelivered.Value(),
		"tcp_valid", st.TCP.ValidSegmentsReceived.Value(), "tcp_invalid", st.TCP.InvalidSegmentsReceived.Value(),
		"tcp_csum_err", st.TCP.ChecksumErrors.Value(),
		"nic_malformed_l4", st.NICs.MalformedL4RcvdPackets.Value(), "dropped", st.DroppedPackets.Value())
	dumpStats(s.log, "ip", st.IP)
	dumpStats(s.log, "nic", st.NICs)
	s.st.Close()
	c := &s.ep.Stats
	s.log.Debug("tun counters", "dev", s.ep.Device().Name, "offload", s.ep.Device().Offload,
		"rx_packets", c.RxPackets.Load(), "rx_gso", c.RxGSO.Load(), "rx_dropped", c.RxDropped.Load(), "rx_errors", c.RxErrors.Load(),
		"tx_packets", c.TxPackets.Load(), "tx_gso", c.TxGSO.Load(), "tx_errors", c.TxErrors.Load())
}

// sandboxResolvConf points the sandbox at the DNS relay and keeps the
// host's search domains and options.
func sandboxResolvConf(p *plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by tunstack: the DNS relay on the gateway\nnameserver %s\n", p.v4.DNS)
	if p.v6.Network.IsValid() {
		fmt.Fprintf(&b, "nameserver %s\n", p.v6.DNS)
	}
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && (f[0] == "search" || f[0] == "domain" || f[0] == "options") {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

func dumpStats(log *slog.Logger, prefix string, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		if c, ok := f.Interface().(*tcpip.StatCounter); ok && c != nil && c.Value() != 0 {
			log.Debug("stat", "name", prefix+"."+rv.Type().Field(i).Name, "value", c.Value())
		}
	}
}
