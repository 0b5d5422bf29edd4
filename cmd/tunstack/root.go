package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

const rootLong = `tunstack gives programs a network namespace served by a userspace TCP/IP
stack (gVisor's netstack) running outside it, like slirp4netns and pasta,
without root: the sandbox's only interface is tun0, and its connections reach
the host through ordinary host sockets.

Addresses inside the sandbox (slirp4netns-compatible):
  10.0.2.100/24   the sandbox          fd00::100/64   (IPv6)
  10.0.2.2        gateway: the host    fd00::2
                  (its 127.0.0.1 / ::1 unless --disable-host-loopback)
  10.0.2.3        DNS relay            fd00::3

Exit status: the command's own; 128+N when it was killed by signal N; 125
when tunstack itself failed; 127 when the command was not found.`

// globalFlags are shared by all subcommands.
type globalFlags struct {
	logLevel string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "tunstack",
		Short: "Userspace TCP/IP networking for sandboxed programs",
		Long:  rootLong,
		Example: `  # Fetch from a server on the host's loopback, from inside a sandbox
  tunstack run -- curl http://10.0.2.2:8080/

  # An interactive shell in a sandbox with a 1500-byte MTU
  tunstack run --mtu 1500 -- bash`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.AddCommand(newRunCmd(g), newAttachCmd(g), newVersionCmd(), newPsCmd(), newSsCmd(), newIPCmd(), newTcpdumpCmd(), newForwardCmd())
	root.AddCommand(newFirewallCmds()...)
	root.AddCommand(newAllowCmds()...)
	root.AddCommand(newConnectCmd(), newListenCmd())
	root.AddCommand(newSlirp4netnsCmd())
	return root
}

func (g *globalFlags) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})
	return slog.New(h).With("prog", "tunstack"), nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tunstack's version and the versions it was built with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return nil
		},
	}
}

func versionString() string {
	v, gv, gvisor := "(devel)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		gv = bi.GoVersion
		for _, d := range bi.Deps {
			if d.Path == "gvisor.dev/gvisor" {
				gvisor = d.Version
			}
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && v == "(devel)" {
				v = "(devel " + s.Value[:min(12, len(s.Value))] + ")"
			}
		}
	}
	return strings.TrimSpace(fmt.Sprintf("tunstack %s\ngo: %s\ngvisor: %s", v, gv, gvisor))
}
