package instance

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/gateway"
)

// HostInterface is the interface name the firewall gives the host side
// of the gateway: FORWARD rules match sandbox egress with -o host and
// the replies with -i host.
const HostInterface = "host"

var _ control.FirewallBackend = backend{}

// startFirewall creates the instance's firewall on its stack (gateway
// mode: the stack's own addresses are INPUT/OUTPUT, all else FORWARD)
// and loads cfg.Rules, all families in one commit, before the command
// starts. link is tun0's firewall stage (fragment reassembly).
func (in *Instance) startFirewall(link *netfilter.LinkEndpoint) error {
	fw, err := netfilter.New(in.Stack, netfilter.Config{
		Gateway: true, HostInterface: HostInterface, Logger: in.log.With("component", "netfilter"),
		IsLocal: in.isOwnAddress, MaxFlows: in.cfg.ConntrackMax,
	})
	if err != nil {
		return fmt.Errorf("netfilter: %w", err)
	}
	in.Firewall = fw
	fw.AttachLink(link)
	if len(in.cfg.Rules) == 0 {
		return nil
	}
	if err := fw.RestoreAll(in.cfg.Rules, netfilter.RestoreOptions{}); err != nil {
		return fmt.Errorf("--rules: %w", err)
	}
	return nil
}

// isOwnAddress reports whether a is one of the gateway's own addresses
// (gateway and DNS of each family). The NIC is promiscuous, so gVisor
// counts every address a relayed connection is bound to as local; asking
// it would send a flow's packets after the SYN to INPUT instead of FORWARD.
func (in *Instance) isOwnAddress(a tcpip.Address) bool {
	ip := stack.FromAddr(a)
	for _, n := range []gateway.Addresses{in.cfg.V4, in.cfg.V6} {
		if n.Network.IsValid() && (ip == n.Gateway || ip == n.DNS) {
			return true
		}
	}
	return false
}

func (b backend) firewall() (*netfilter.Firewall, error) {
	if b.in.Firewall == nil {
		return nil, fmt.Errorf("the instance has no firewall")
	}
	return b.in.Firewall, nil
}

// IPTables implements control.FirewallBackend.
func (b backend) IPTables(family int, args []string) (string, error) {
	fw, err := b.firewall()
	if err != nil {
		return "", err
	}
	out, err := fw.Exec(NetfilterFamily(family), args)
	if err != nil {
		return out, &control.StatusError{Err: err, Status: netfilter.ExitCode(err)}
	}
	return out, nil
}

// IPTablesSave implements control.FirewallBackend.
func (b backend) IPTablesSave(family int, counters bool) (string, error) {
	fw, err := b.firewall()
	if err != nil {
		return "", err
	}
	return fw.Save(NetfilterFamily(family), counters), nil
}

// IPTablesRestore implements control.FirewallBackend.
func (b backend) IPTablesRestore(req control.IPTablesRestoreRequest) error {
	fw, err := b.firewall()
	if err != nil {
		return err
	}
	f := NetfilterFamily(req.Family)
	if req.Test {
		return fw.Validate(f, req.Text)
	}
	return fw.Restore(f, req.Text, netfilter.RestoreOptions{NoFlush: req.NoFlush, Counters: req.Counters})
}

// IPSet implements control.FirewallBackend.
func (b backend) IPSet(args []string) (string, error) {
	fw, err := b.firewall()
	if err != nil {
		return "", err
	}
	return fw.IPSet(args)
}

// Conntrack implements control.FirewallBackend.
func (b backend) Conntrack() ([]control.Flow, error) {
	fw, err := b.firewall()
	if err != nil {
		return nil, err
	}
	flows := fw.Conntrack()
	out := make([]control.Flow, 0, len(flows))
	for _, f := range flows {
		out = append(out, APIFlow(f))
	}
	return out, nil
}
