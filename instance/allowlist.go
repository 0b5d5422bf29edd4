package instance

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/tunstack/tunstack/netfilter/fqdn"
)

// startAllowlist installs the --allow-host policy: deny-by-default egress
// with the listed names and addresses allowed, learned from the DNS
// relay's answers. It runs after --rules are loaded, so the policy's
// jumps head INPUT and FORWARD.
func (in *Instance) startAllowlist() error {
	if len(in.cfg.AllowHosts) == 0 {
		return nil
	}
	var dnsAddrs []netip.Addr
	for _, n := range []netip.Addr{in.cfg.V4.DNS, in.cfg.V6.DNS} {
		if n.IsValid() {
			dnsAddrs = append(dnsAddrs, n)
		}
	}
	cfg := fqdn.Config{
		Patterns:      in.cfg.AllowHosts,
		DNS:           dnsAddrs,
		HostInterface: HostInterface,
		MinTTL:        in.cfg.AllowHostMinTTL,
		Logger:        in.log.With("component", "allow-host"),
		Owner:         in.flowOwner,
	}
	if in.cfg.AuditPath != "" {
		f, err := os.OpenFile(in.cfg.AuditPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--audit: %w", err)
		}
		in.audit, cfg.Audit = f, f
	}
	p, err := fqdn.New(in.Firewall, cfg)
	if err != nil {
		return err
	}
	in.Allowlist = p
	in.Gateway.DNSRelay().SetFilter(p.FilterResponse)
	return nil
}

// flowOwner names the sandbox process holding the socket of a flow from
// src to dst, as ss -p finds it.
func (in *Instance) flowOwner(proto string, src, dst netip.AddrPort) (int, string) {
	if proto == "icmp" || proto == "icmpv6" {
		// Ping sockets list no ports; the flow's identity is lost here,
		// so the sandbox's /proc is not worth scanning.
		return 0, ""
	}
	pid := in.sandboxPID()
	if pid == 0 {
		return 0, ""
	}
	idx, err := in.procIndex(pid, true)
	if err != nil {
		return 0, ""
	}
	if _, procs := idx.Lookup(proto, src, dst); len(procs) > 0 {
		return procs[0].PID, procs[0].Command
	}
	return 0, ""
}

// allowlist returns the instance's policy, or an error naming the flag
// that creates one.
func (in *Instance) allowlist() (*fqdn.Policy, error) {
	if in.Allowlist == nil {
		return nil, fmt.Errorf("instance %s has no allowlist (start it with --allow-host)", in.cfg.Name)
	}
	return in.Allowlist, nil
}

// closeAllowlist stops the policy's logging and closes the audit file.
func (in *Instance) closeAllowlist() error {
	var errs []error
	if in.Allowlist != nil {
		errs = append(errs, in.Allowlist.Close())
	}
	if in.audit != nil {
		errs = append(errs, in.audit.Close())
	}
	return errors.Join(errs...)
}

// AllowHosts implements control.AllowlistBackend.
func (b backend) AllowHosts() ([]string, error) {
	p, err := b.in.allowlist()
	if err != nil {
		return nil, err
	}
	return patternStrings(p.Patterns()), nil
}

// ChangeAllowHost implements control.AllowlistBackend.
func (b backend) ChangeAllowHost(pattern string, allow bool) error {
	p, err := b.in.allowlist()
	if err != nil {
		return err
	}
	pat, err := fqdn.ParsePattern(pattern)
	if err != nil {
		return err
	}
	if allow {
		return p.Allow(pat)
	}
	return p.Deny(pat)
}

func patternStrings(ps []fqdn.Pattern) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
