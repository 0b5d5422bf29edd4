package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/instance"
)

const attachLong = `Serve an existing network namespace: create tun0 in it, configure it
(10.0.2.100/24 via 10.0.2.2, fd00::100/64 via fd00::2, MTU) and serve it
with the userspace stack, with every flag and view of run. The namespace is
that of process PID (whose user namespace is joined when it is not ours), or
the one at --netns PATH (with --userns PATH when it belongs to another user
namespace). tunstack attach runs until the namespace goes away (PID exits or
the interface disappears) or it receives SIGINT or SIGTERM.

This is the role slirp4netns plays for rootless container tools:

  slirp4netns --configure --mtu=65520 --disable-host-loopback PID tap0

is, with tunstack,

  tunstack attach --mtu 65520 --disable-host-loopback PID

(tunstack creates a TUN device named tun0 rather than a TAP device; the
addresses are the same). The sandbox's /etc/resolv.conf is left alone: point
it at 10.0.2.3. For slirp4netns's own command line, TAP device and API
socket (what podman and rootlesskit drive), use "tunstack slirp4netns" or a
symlink named slirp4netns.`

func newAttachCmd(g *globalFlags) *cobra.Command {
	o := &runOptions{}
	var netns, userns string
	cmd := &cobra.Command{
		Use:   "attach [flags] PID | attach [flags] --netns PATH",
		Short: "Serve an existing network namespace",
		Long:  attachLong,
		Example: `  unshare --user --map-root-user --net sleep 1000 &
  tunstack attach --name box $!
  tunstack attach --netns /run/netns/blue -p 8080:80`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			var target instance.AttachTarget
			switch {
			case len(args) == 1 && netns != "":
				return errors.New("attach: give a PID or --netns, not both")
			case len(args) == 1:
				pid, err := strconv.Atoi(args[0])
				if err != nil || pid <= 0 {
					return fmt.Errorf("attach: %q is not a process ID", args[0])
				}
				target.PID = pid
			case netns != "":
				target.NetNS, target.UserNS = netns, userns
			default:
				return errors.New("attach: give a PID or --netns PATH")
			}
			cfg, err := o.config([]string{"attach"}, log)
			if err != nil {
				return err
			}
			if err := o.applyProcs(); err != nil {
				return err
			}
			cfg.Stdin, cfg.Stdout, cfg.Stderr = nil, nil, nil
			// No command to signal: CAP_KILL is not kept.
			cfg.Confine = o.harden.options(false)
			in, err := instance.Attach(cfg, target)
			if err != nil {
				return err
			}
			defer in.Close()
			defer o.governProcs(in, log)()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info("attached", "name", cfg.Name, "control", in.ControlPath())
			in.Wait(ctx)
			return nil
		},
	}
	f := cmd.Flags()
	o.addFlags(f)
	f.StringVar(&netns, "netns", "", "network namespace PATH to serve (instead of PID)")
	f.StringVar(&userns, "userns", "", "user namespace PATH owning --netns")
	return cmd
}
