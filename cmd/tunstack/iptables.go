package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/instance"
	"github.com/tunstack/tunstack/netfilter"
)

// The firewall commands (iptables, ip6tables, iptables-save,
// iptables-restore, ipset, conntrack) act on a running instance's
// firewall through its control socket. iptables, ip6tables and ipset
// take their arguments untouched: cobra does not parse them, and only
// --name NAME is taken out.

// takeName removes --name NAME (or --name=NAME) from args.
func takeName(args []string) (name string, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--name":
			if i+1 >= len(args) {
				return "", nil, errors.New("--name needs an instance name")
			}
			name = args[i+1]
			i++
		case strings.HasPrefix(a, "--name="):
			name = strings.TrimPrefix(a, "--name=")
		default:
			rest = append(rest, a)
		}
	}
	return name, rest, nil
}

// wantsHelp reports whether args ask for tunstack's help on the command
// (only as the sole argument; iptables -h is passed on).
// connectByArgs takes --name NAME out of a pass-through command line and
// connects to that instance (or the only one running).
func connectByArgs(cmd *cobra.Command, args []string) (*control.Client, []string, error) {
	name, rest, err := takeName(args)
	if err != nil {
		return nil, nil, err
	}
	c, err := connect(cmd.Context(), name)
	if err != nil {
		return nil, nil, err
	}
	return c, rest, nil
}

func wantsHelp(args []string) bool {
	return len(args) == 1 && (args[0] == "--help" || args[0] == "help")
}

// commandFailed prints a firewall error as the tool would and returns
// exit status 1. Errors that never reached an instance are tunstack's
// own (status 125).
func commandFailed(cmd *cobra.Command, err error) error {
	var ae *control.APIError
	if !errors.As(err, &ae) {
		return err
	}
	fmt.Fprintln(cmd.ErrOrStderr(), ae.Message)
	if ae.ExitStatus != 0 {
		return exitError{ae.ExitStatus}
	}
	return exitError{1}
}

// passThrough is the RunE of a command whose arguments are the tool's own
// (iptables, ipset): --help, or --name NAME taken out and run called on
// that instance with the rest; its output is printed, its refusal printed
// as the tool's (commandFailed).
func passThrough(run func(cmd *cobra.Command, c *control.Client, args []string) (string, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if wantsHelp(args) {
			return cmd.Help()
		}
		c, rest, err := connectByArgs(cmd, args)
		if err != nil {
			return err
		}
		defer c.Close()
		out, err := run(cmd, c, rest)
		if err != nil {
			return commandFailed(cmd, err)
		}
		io.WriteString(cmd.OutOrStdout(), out)
		return nil
	}
}

// familyNumber is f as the control API names it (4 or 6).
func familyNumber(f netfilter.Family) int {
	if f == netfilter.IPv6 {
		return 6
	}
	return 4
}

func newIPTablesCmd(f netfilter.Family) *cobra.Command {
	prog := f.String()
	fam := familyNumber(f)
	return &cobra.Command{
		Use:   prog + " [--name NAME] [-t TABLE] COMMAND [ARGS...]",
		Short: fmt.Sprintf("Run %s on a running instance's firewall", prog),
		Long: fmt.Sprintf(`Run an %s command line on a running instance's firewall (the userspace
stack's, not the host's), and print what %s would. The arguments are %s's
own, passed through untouched; --name NAME picks the instance (default: the
only one running). A bad rule exits 1 with %s's error text.

tunstack acts as a NAT gateway: the sandbox's connections to the stack's own
addresses (gateway 10.0.2.2 and DNS 10.0.2.3, fd00::2 and fd00::3) traverse
PREROUTING and INPUT, everything else PREROUTING, FORWARD (out by -o %s)
and POSTROUTING. DNAT in PREROUTING changes where the host side dials.`, prog, prog, prog, prog, "host"),
		Example: fmt.Sprintf(`  tunstack %[1]s --name box -A FORWARD -p tcp --dport 443 -j REJECT --reject-with tcp-reset
  tunstack %[1]s -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.2.2:8080
  tunstack %[1]s -L -v -n`, prog),
		DisableFlagParsing: true,
		RunE: passThrough(func(cmd *cobra.Command, c *control.Client, args []string) (string, error) {
			return c.IPTables(cmd.Context(), fam, args)
		}),
	}
}

func newIPTablesSaveCmd(f netfilter.Family) *cobra.Command {
	prog := f.String() + "-save"
	fam := familyNumber(f)
	var name, table string
	var counters bool
	cmd := &cobra.Command{
		Use:   prog + " [--name NAME] [-c] [-t TABLE]",
		Short: "Print a running instance's firewall rules in iptables-save format",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.IPTablesSave(cmd.Context(), fam, counters)
			if err != nil {
				return commandFailed(cmd, err)
			}
			if table != "" {
				out = saveTable(out, table)
			}
			io.WriteString(cmd.OutOrStdout(), out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "instance name (default: the only running instance)")
	fl.BoolVarP(&counters, "counters", "c", false, "include packet and byte counters")
	fl.StringVarP(&table, "table", "t", "", "only this table")
	return cmd
}

// saveTable keeps one table's section (and the header comments) of
// iptables-save text.
func saveTable(text, table string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(text, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			in = strings.TrimSpace(line[1:]) == table
		case strings.HasPrefix(line, "#"):
			b.WriteString(line)
			continue
		}
		if in {
			b.WriteString(line)
		}
		if strings.HasPrefix(line, "COMMIT") {
			in = false
		}
	}
	return b.String()
}

func newIPTablesRestoreCmd(f netfilter.Family) *cobra.Command {
	prog := f.String() + "-restore"
	fam := familyNumber(f)
	var name string
	var test, noflush, counters bool
	cmd := &cobra.Command{
		Use:   prog + " [--name NAME] [--test] [-n] [-c] [FILE]",
		Short: "Load iptables-save rules into a running instance's firewall, atomically",
		Long: fmt.Sprintf(`Replace the tables present in FILE (standard input without FILE, or "-")
in a running instance's firewall, in one atomic commit: on any error nothing
changes, and %[1]s exits 1 naming the line.

With --test the input is only validated, fully (parsing, and the table and
hook restrictions a kernel enforces: DNAT only in nat, REDIRECT only from
PREROUTING/OUTPUT, no jump loops). It needs no running instance: without
--name, and unless exactly one instance runs (whose ipsets -m set is then
checked against), it validates offline.`, prog),
		Example: fmt.Sprintf(`  tunstack %[1]s --name box < rules.v4
  tunstack %[1]s --test rules.v4`, prog),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var text []byte
			var err error
			if len(args) == 1 && args[0] != "-" {
				text, err = os.ReadFile(args[0])
			} else {
				text, err = io.ReadAll(cmd.InOrStdin())
			}
			if err != nil {
				return err
			}
			var c *control.Client
			if test && name == "" {
				c, _ = onlyInstance(cmd.Context())
			} else {
				c, err = connect(cmd.Context(), name)
				if err != nil {
					return err
				}
			}
			if c == nil {
				if err := netfilter.Validate(f, string(text)); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					return exitError{1}
				}
				return nil
			}
			defer c.Close()
			err = c.IPTablesRestore(cmd.Context(), control.IPTablesRestoreRequest{
				Family: fam, Text: string(text), Test: test, NoFlush: noflush, Counters: counters,
			})
			if err != nil {
				return commandFailed(cmd, err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "instance name (default: the only running instance)")
	fl.BoolVarP(&test, "test", "t", false, "only validate the input")
	fl.BoolVarP(&noflush, "noflush", "n", false, "keep the existing rules of the tables in the input")
	fl.BoolVarP(&counters, "counters", "c", false, "restore packet and byte counters")
	return cmd
}

// onlyInstance connects to the only running instance, if exactly one
// runs and answers.
func onlyInstance(ctx context.Context) (*control.Client, error) {
	c, err := connect(ctx, "")
	if err != nil {
		return nil, err
	}
	if _, err := c.Info(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newIPSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ipset [--name NAME] COMMAND [ARGS...]",
		Short: "Manage a running instance's IP sets, like ipset",
		Long: `Run an ipset command line (create, add, del, test, list, save, flush,
destroy) on a running instance's sets, matched by iptables -m set. The
arguments are ipset's own; --name NAME picks the instance. "ipset restore"
reads commands, one per line, from standard input.`,
		Example: `  tunstack ipset create blocklist hash:net
  tunstack ipset add blocklist 192.0.2.0/24
  tunstack ipset restore < blocklist.ipset
  tunstack iptables -A FORWARD -m set --match-set blocklist dst -j DROP`,
		DisableFlagParsing: true,
		RunE: passThrough(func(cmd *cobra.Command, c *control.Client, args []string) (string, error) {
			if len(args) > 0 && (args[0] == "restore" || args[0] == "-R") {
				text, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return "", err
				}
				return "", c.IPSetRestore(cmd.Context(), string(text))
			}
			return c.IPSet(cmd.Context(), args)
		}),
	}
}

func newConntrackCmd() *cobra.Command {
	var name, family, output string
	var list, asJSON bool
	cmd := &cobra.Command{
		Use:   "conntrack [--name NAME] -L [-f ipv4|ipv6] [-o extended] [--json]",
		Short: "List a running instance's tracked connections, like conntrack -L",
		Long: `List the flows a running instance's firewall tracks: protocol, state,
original and reply tuples (a DNAT shows as a differing reply source), timeout,
packets and bytes each way. -o extended adds the layer 3 protocol column
(ipv4 2, ipv6 10) as conntrack does; conntrack's other -o formats are not
supported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !list {
				return errors.New("conntrack: only -L (--dump) is supported")
			}
			var format netfilter.ConntrackFormat
			for _, o := range strings.Split(output, ",") {
				switch o {
				case "":
				case "extended":
					format.Extended = true
				default:
					return fmt.Errorf("conntrack: -o %q is not supported (only extended)", o)
				}
			}
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			flows, err := c.Conntrack(cmd.Context())
			if err != nil {
				return commandFailed(cmd, err)
			}
			if family != "" {
				want := 4
				switch family {
				case "ipv4":
				case "ipv6":
					want = 6
				default:
					return fmt.Errorf("conntrack: -f %q: want ipv4 or ipv6", family)
				}
				kept := flows[:0]
				for _, fl := range flows {
					if fl.Family == want {
						kept = append(kept, fl)
					}
				}
				flows = kept
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), flows)
			}
			nf := make([]netfilter.Flow, 0, len(flows))
			for _, fl := range flows {
				nf = append(nf, instance.NetfilterFlow(fl))
			}
			out := netfilter.FormatConntrackWith(nf, format)
			// The summary goes to stderr, as conntrack prints it.
			body, summary := "", out
			if i := strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n"); i >= 0 {
				body, summary = out[:i+1], out[i+1:]
			}
			io.WriteString(cmd.OutOrStdout(), body)
			io.WriteString(cmd.ErrOrStderr(), summary)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "instance name (default: the only running instance)")
	fl.BoolVarP(&list, "dump", "L", false, "list the connection tracking table")
	fl.StringVarP(&family, "family", "f", "", "only ipv4 or ipv6 flows")
	fl.StringVarP(&output, "output", "o", "", "output format: extended (the layer 3 protocol column)")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// newFirewallCmds are the firewall commands.
func newFirewallCmds() []*cobra.Command {
	var cmds []*cobra.Command
	for _, f := range []netfilter.Family{netfilter.IPv4, netfilter.IPv6} {
		cmds = append(cmds, newIPTablesCmd(f), newIPTablesSaveCmd(f), newIPTablesRestoreCmd(f))
	}
	return append(cmds, newIPSetCmd(), newConntrackCmd())
}
