package instance

import (
	"fmt"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/netfilter"
)

// HostInterface is the interface name the firewall gives the host side
// of the gateway: FORWARD rules match sandbox egress with -o host and
// the replies with -i host.
const HostInterface = "host"

var _ control.FirewallBackend = backend{}

// startFirewall creates the instance's firewall on its stack (gateway
// mode: the stack's own addresses are INPUT/OUTPUT, all else FORWARD)
// and loads cfg.Rules, all families in one commit, before the command
// starts.
func (in *Instance) startFirewall() error {
	fw, err := netfilter.New(in.Stack.GVisor(), netfilter.Config{
		Gateway: true, HostInterface: HostInterface, Logger: in.log.With("component", "netfilter"),
	})
	if err != nil {
		return fmt.Errorf("netfilter: %w", err)
	}
	in.Firewall = fw
	if len(in.cfg.Rules) == 0 {
		return nil
	}
	if err := fw.RestoreAll(in.cfg.Rules, netfilter.RestoreOptions{}); err != nil {
		return fmt.Errorf("--rules: %w", err)
	}
	return nil
}

func (b backend) firewall() (*netfilter.Firewall, error) {
	if b.in.Firewall == nil {
		return nil, fmt.Errorf("the instance has no firewall")
	}
	return b.in.Firewall, nil
}

// IPTables implements control.FirewallBackend.
func (b backend) IPTables(f netfilter.Family, args []string) (string, error) {
	fw, err := b.firewall()
	if err != nil {
		return "", err
	}
	return fw.Exec(f, args)
}

// IPTablesSave implements control.FirewallBackend.
func (b backend) IPTablesSave(f netfilter.Family, counters bool) (string, error) {
	fw, err := b.firewall()
	if err != nil {
		return "", err
	}
	return fw.Save(f, counters), nil
}

// IPTablesRestore implements control.FirewallBackend.
func (b backend) IPTablesRestore(f netfilter.Family, text string, test bool, o netfilter.RestoreOptions) error {
	fw, err := b.firewall()
	if err != nil {
		return err
	}
	if test {
		return fw.Validate(f, text)
	}
	return fw.Restore(f, text, o)
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
func (b backend) Conntrack() ([]netfilter.Flow, error) {
	fw, err := b.firewall()
	if err != nil {
		return nil, err
	}
	return fw.Conntrack(), nil
}
