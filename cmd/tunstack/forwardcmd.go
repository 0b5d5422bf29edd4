package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newForwardCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "forward add|list|remove",
		Short: "Add, list and remove a running instance's port forwards",
		Long: `Port forwards carry connections from a host port (or a host unix socket)
to a port in the sandbox. The server in the sandbox sees the real client's
address and port; a client on the host's loopback or a unix socket appears
as the gateway address (10.0.2.2 / fd00::2).

SPEC is [HOSTIP:]HOSTPORT:SANDBOXPORT[/tcp|/udp], a range
[HOSTIP:]LO-HI:LO-HI, or /PATH.sock:SANDBOXPORT. Without HOSTIP the forward
listens on all IPv4 and IPv6 addresses, as docker -p does.`,
		Example: `  tunstack forward add 8080:80
  tunstack forward add 127.0.0.1:5353:53/udp '[::1]:8443:443'
  tunstack forward add /run/user/1000/app.sock:8080
  tunstack forward list
  tunstack forward remove 8080:80`,
	}
	cmd.PersistentFlags().StringVar(&name, "name", "", "instance name (default: the only running instance)")
	add := &cobra.Command{
		Use: "add SPEC...", Short: "Add forwards (all or none)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			infos, err := c.AddForwards(cmd.Context(), args)
			if err != nil {
				return err
			}
			for _, in := range infos {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\tlistening on %s\n", in.ID, strings.Join(in.Listen, ", "))
			}
			return nil
		},
	}
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List forwards", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			infos, err := c.Forwards(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), infos)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "FORWARD\tLISTEN\tACTIVE\tTOTAL\tSPLICED")
			for _, in := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", in.ID, strings.Join(in.Listen, ","), in.Active, in.Total, in.Spliced)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	remove := &cobra.Command{
		Use: "remove SPEC...", Aliases: []string{"rm"}, Short: "Remove forwards", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, id := range args {
				if err := c.RemoveForward(cmd.Context(), id); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}
