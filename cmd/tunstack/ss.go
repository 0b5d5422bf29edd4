package main

import (
	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/instance"
	"github.com/tunstack/tunstack/stack/views"
)

func newSsCmd() *cobra.Command {
	var (
		o      views.SSOptions
		name   string
		v4, v6 bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "ss [flags]",
		Short: "List the sockets of a running instance's stack, like ss",
		Long: `List the TCP and UDP sockets of an instance's userspace stack, in ss's
layout. A flow relayed for the sandbox shows the stack's end: its local
address is the destination the sandbox connected to and its peer the
sandbox's socket (the mirror of what ss shows inside the sandbox). -p names
the sandbox process owning that socket, found as ss -p finds it.

Like ss, without -l or -a only non-listening sockets are shown.`,
		Example: `  tunstack ss -tnp
  tunstack ss -tuna --name web
  tunstack ss -ti --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if v4 && !v6 {
				o.Family = 4
			} else if v6 && !v4 {
				o.Family = 6
			}
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			apiSocks, err := c.Sockets(cmd.Context(), control.SocketQuery{Processes: o.Processes, TCPInfo: o.Info || asJSON})
			if err != nil {
				return err
			}
			socks := o.Filter(instance.ViewSockets(apiSocks))
			if asJSON {
				if socks == nil {
					socks = []views.Socket{}
				}
				return writeJSON(cmd.OutOrStdout(), socks)
			}
			if !o.Numeric {
				o.ServiceName = serviceNames()
			}
			return views.WriteSS(cmd.OutOrStdout(), socks, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "instance name (default: the only running instance)")
	f.BoolVarP(&o.TCP, "tcp", "t", false, "TCP sockets")
	f.BoolVarP(&o.UDP, "udp", "u", false, "UDP sockets")
	f.BoolVarP(&o.Listening, "listening", "l", false, "only listening sockets")
	f.BoolVarP(&o.All, "all", "a", false, "listening and non-listening sockets")
	f.BoolVarP(&o.Numeric, "numeric", "n", false, "do not name services")
	f.BoolVarP(&o.Processes, "processes", "p", false, "show the sandbox process owning each flow")
	f.BoolVarP(&o.Extended, "extended", "e", false, "show the sandbox socket's inode")
	f.BoolVarP(&o.Info, "info", "i", false, "show TCP internals (rtt, cwnd, retransmits)")
	f.BoolVarP(&v4, "ipv4", "4", false, "only IPv4 sockets")
	f.BoolVarP(&v6, "ipv6", "6", false, "only IPv6 sockets")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
