package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/control"
)

func newPsCmd() *cobra.Command {
	var asJSON, stats bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List running tunstack instances",
		Long: `List the running instances (tunstack run and tunstack attach) that serve a
control socket in ` + "`" + `$XDG_RUNTIME_DIR/tunstack` + "`" + ` (/run/tunstack as root;
TUNSTACK_CONTROL_DIR overrides it). Sockets of instances that died without
cleaning up are removed. With -s, each instance's resource caps follow: the
cap, how many are in use, and how many flows were turned away at it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			infos, err := control.List(cmd.Context(), control.Dir())
			if asJSON {
				if infos == nil {
					infos = []control.Info{}
				}
				if jerr := writeJSON(cmd.OutOrStdout(), infos); jerr != nil {
					return jerr
				}
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPID\tSANDBOX PID\tUPTIME\tADDRESSES\tFORWARDS\tALLOW\tCOMMAND")
			for _, in := range infos {
				var addrs, fwds []string
				for _, a := range in.Addresses {
					addrs = append(addrs, a.String())
				}
				for _, f := range in.Forwards {
					fwds = append(fwds, f.ID)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", in.Name, in.PID, in.SandboxPID,
					uptime(time.Since(in.Started)), orDash(strings.Join(addrs, ",")), orDash(strings.Join(fwds, ",")),
					orDash(strings.Join(in.AllowHosts, ",")), strings.Join(in.Command, " "))
			}
			if stats {
				writeLimits(tw, infos)
			}
			if ferr := tw.Flush(); ferr != nil {
				return ferr
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&stats, "stats", "s", false, "show each instance's resource caps and what they dropped")
	return cmd
}

// writeLimits prints the caps of each instance, one per line.
func writeLimits(w io.Writer, infos []control.Info) {
	fmt.Fprintln(w, "\nNAME\tLIMIT\tMAX\tIN USE\tDROPPED")
	for _, in := range infos {
		for _, l := range in.Limits {
			max := "-"
			if l.Max > 0 {
				max = fmt.Sprint(l.Max)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\n", in.Name, l.Name, max, l.InUse, l.Dropped)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// uptime formats a duration like ps's ELAPSED: [[DD-]hh:]mm:ss.
func uptime(d time.Duration) string {
	s := int(d.Seconds())
	days, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case days > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, h, m, sec)
	case h > 0:
		return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d", m, sec)
}
