package main

import (
	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/instance"
	"github.com/tunstack/tunstack/stack/views"
)

type ipFlags struct {
	name   string
	stats  bool
	v4, v6 bool
	asJSON bool
}

func (f *ipFlags) options() views.IPOptions {
	o := views.IPOptions{Stats: f.stats}
	if f.v4 && !f.v6 {
		o.Family = 4
	} else if f.v6 && !f.v4 {
		o.Family = 6
	}
	return o
}

func newIPCmd() *cobra.Command {
	fl := &ipFlags{}
	cmd := &cobra.Command{
		Use:   "ip [flags] addr|link|route",
		Short: "Show a running instance's interfaces, addresses and routes, like ip",
		Long: `Show the userspace stack's side of the sandbox's network in ip's layout: its
interface (tun0, with the offload mode), the stack's own addresses on it (the
gateway and DNS addresses), counters with -s, and its route table.`,
		Example: `  tunstack ip addr
  tunstack ip -s link
  tunstack ip -6 route
  tunstack ip link --json`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&fl.name, "name", "", "instance name (default: the only running instance)")
	pf.BoolVarP(&fl.stats, "stats", "s", false, "show counters")
	pf.BoolVarP(&fl.v4, "ipv4", "4", false, "IPv4 only")
	pf.BoolVarP(&fl.v6, "ipv6", "6", false, "IPv6 only")
	pf.BoolVar(&fl.asJSON, "json", false, "print JSON")
	linkLike := func(use string, aliases []string, short string, addrs bool) *cobra.Command {
		return &cobra.Command{
			Use: use, Aliases: aliases, Short: short, Args: cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := connect(cmd.Context(), fl.name)
				if err != nil {
					return err
				}
				defer c.Close()
				links, err := c.Links(cmd.Context())
				if err != nil {
					return err
				}
				if fl.asJSON {
					return writeJSON(cmd.OutOrStdout(), links)
				}
				if addrs {
					return views.WriteAddrs(cmd.OutOrStdout(), instance.ViewLinks(links), fl.options())
				}
				return views.WriteLinks(cmd.OutOrStdout(), instance.ViewLinks(links), fl.options())
			},
		}
	}
	route := &cobra.Command{
		Use: "route", Aliases: []string{"r", "ro", "rou"}, Short: "Show the route table", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), fl.name)
			if err != nil {
				return err
			}
			defer c.Close()
			routes, err := c.Routes(cmd.Context())
			if err != nil {
				return err
			}
			if fl.asJSON {
				return writeJSON(cmd.OutOrStdout(), routes)
			}
			return views.WriteRoutes(cmd.OutOrStdout(), instance.ViewRoutes(routes), fl.options())
		},
	}
	cmd.AddCommand(
		linkLike("addr", []string{"a", "address"}, "Show interfaces with their addresses", true),
		linkLike("link", []string{"l"}, "Show interfaces", false),
		route,
	)
	return cmd
}
