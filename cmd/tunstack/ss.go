package main

import (
	"fmt"

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
		side   string
	)
	cmd := &cobra.Command{
		Use:   "ss [flags]",
		Short: "List the sockets of a running instance's stack and sandbox, like ss",
		Long: `List the TCP and UDP sockets of an instance, in ss's layout: the
userspace stack's own and those of the sandbox's network namespace, in a
first column Side ("stack" or "sandbox").

The sandbox side is what ss run inside the namespace shows: its
listeners, its connections, their queues (a listener's Send-Q is its
backlog), read as ss reads them (sock_diag) through the sandbox's init. For
a namespace tunstack did not create ("tunstack attach", the slirp4netns
mode), which has no init, it is read from the /proc/PID/net tables of the
namespace's process instead; there, unlike ss, a listener's Send-Q shows
0 and IPV6_V6ONLY is guessed from an IPv4 socket on the same port, the
tables carrying neither.

A flow relayed for the sandbox shows on both sides: on the stack's, its
local address is the destination the sandbox connected to and its peer the
sandbox's socket (the mirror of the sandbox side's row).

-p names the process holding the socket (for the stack's side: the
sandbox process owning the flow's other end), found as ss -p finds it.
Run as root, tunstack confines itself to user nobody and cannot see root's
processes' descriptors: names show with --no-sandbox on "tunstack run".

--side stack prints the stack's sockets alone, without the Side column
(the layout of earlier versions); --side sandbox the sandbox's alone, as
ss inside it would.

Like ss, without -l or -a only connected sockets are shown (no listening,
unconnected, TIME-WAIT or SYN-RECV ones).`,
		Example: `  tunstack ss -tlnp                  # what listens, in the sandbox and the stack
  tunstack ss -tln --side sandbox     # as "ss -tln" inside the sandbox
  tunstack ss -tuna --name web
  tunstack ss -ti --side stack --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch side {
			case control.SideStack, control.SideSandbox, control.SideAll:
			default:
				return fmt.Errorf("bad --side %q: want %s, %s or %s", side, control.SideStack, control.SideSandbox, control.SideAll)
			}
			o.ShowSide = side == control.SideAll
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
			apiSocks, err := c.Sockets(cmd.Context(), control.SocketQuery{Processes: o.Processes, TCPInfo: o.Info || asJSON, Side: side})
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
	f.BoolVarP(&o.Processes, "processes", "p", false, "show the process holding each socket (stack side: the sandbox process owning the flow)")
	f.BoolVarP(&o.Extended, "extended", "e", false, "show the sandbox socket's inode")
	f.StringVar(&side, "side", control.SideAll, "sockets of the stack, the sandbox, or all (stack, sandbox, all)")
	f.BoolVarP(&o.Info, "info", "i", false, "show TCP internals (rtt, cwnd, retransmits)")
	f.BoolVarP(&o.NoHeader, "no-header", "H", false, "leave out the header line")
	f.BoolVarP(&v4, "ipv4", "4", false, "only IPv4 sockets")
	f.BoolVarP(&v6, "ipv6", "6", false, "only IPv6 sockets")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
