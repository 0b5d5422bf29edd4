package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tunstack/tunstack/instance"
	"github.com/tunstack/tunstack/netfilter/fqdn"
)

// allowOptions are the egress allowlist flags of run and attach.
type allowOptions struct {
	hosts  []string
	minTTL time.Duration
	audit  string
}

func (o *allowOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&o.hosts, "allow-host", nil, "allow egress only to PATTERN[,PATTERN...] (repeatable): NAME, *.DOMAIN, ADDR or ADDR/LEN, each with an optional :PORT or :LO-HI ([V6ADDR]:PORT); everything else is rejected")
	f.DurationVar(&o.minTTL, "allow-host-min-ttl", fqdn.DefaultMinTTL, "with --allow-host: shortest time an address learned from DNS stays allowed")
	f.StringVar(&o.audit, "audit", "", "with --allow-host: append every allow/deny decision to FILE as JSON lines")
}

// apply parses the patterns into c; a bad pattern fails naming it.
func (o *allowOptions) apply(c *instance.Config) error {
	for _, h := range o.hosts {
		ps, err := fqdn.ParsePatterns(h)
		if err != nil {
			return fmt.Errorf("--allow-host: %w", err)
		}
		c.AllowHosts = append(c.AllowHosts, ps...)
	}
	if len(c.AllowHosts) == 0 {
		if o.audit != "" {
			return fmt.Errorf("--audit needs --allow-host")
		}
		return nil
	}
	c.AllowHostMinTTL = o.minTTL
	if o.minTTL == 0 {
		c.AllowHostMinTTL = -1 // no floor
	}
	c.AuditPath = o.audit
	return nil
}

// newAllowCmds returns "tunstack allow" and "tunstack deny", which change
// a running instance's --allow-host list.
func newAllowCmds() []*cobra.Command {
	mk := func(use string, allow bool, short, example string) *cobra.Command {
		var name string
		cmd := &cobra.Command{
			Use:     use + " [--name NAME] [PATTERN...]",
			Short:   short,
			Example: example,
			Long: short + `. PATTERN is an --allow-host pattern (NAME, *.DOMAIN, ADDR or
ADDR/LEN, with an optional :PORT or :LO-HI). The instance must have been
started with --allow-host. Without a PATTERN, the list is printed.
Denying a pattern forgets every address learned from DNS so far (they are
learned again at the next lookup of a name still allowed); established
connections go on.`,
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := connect(cmd.Context(), name)
				if err != nil {
					return err
				}
				defer c.Close()
				ps, err := c.AllowHosts(cmd.Context())
				for _, a := range args {
					if err != nil {
						break
					}
					for _, p := range strings.Split(a, ",") {
						if ps, err = c.ChangeAllowHost(cmd.Context(), p, allow); err != nil {
							break
						}
					}
				}
				if err != nil {
					return commandFailed(cmd, err)
				}
				for _, p := range ps {
					fmt.Fprintln(cmd.OutOrStdout(), p)
				}
				return nil
			},
		}
		cmd.Flags().StringVar(&name, "name", "", "instance name (default: the only running instance)")
		return cmd
	}
	return []*cobra.Command{
		mk("allow", true, "Add patterns to a running instance's egress allowlist",
			"  tunstack allow --name ci '*.pkg.test' 198.18.0.0/15:443"),
		mk("deny", false, "Remove patterns from a running instance's egress allowlist",
			"  tunstack deny --name ci '*.pkg.test'"),
	}
}
