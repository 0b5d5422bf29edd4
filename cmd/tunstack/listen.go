package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/stack/fdserve"
)

func newListenCmd() *cobra.Command {
	var name string
	var udp, once bool
	cmd := &cobra.Command{
		Use:   "listen [--name N] [--udp] [--once] [HOST]:PORT -- COMMAND [ARG...]",
		Short: "Run a command for each connection the sandbox makes to a port on the stack",
		Long: `listen asks a running instance to listen on its stack, on HOST:PORT (default
host: the gateway address 10.0.2.2, so the sandbox connects to
10.0.2.2:PORT; such a listener takes the port's place on the host's
loopback for the sandbox), and runs COMMAND for each accepted connection,
inetd style, with the connection as its standard input and output. The
peer's address is in $TUNSTACK_PEER ("10.0.2.100:40000"). Commands run
concurrently; listen runs until interrupted.

With --udp, listen binds a UDP socket and runs one COMMAND per peer
address: its standard input and output are a SOCK_SEQPACKET unix socket,
each read returns one datagram from that peer and each write sends one to
it. The flow ends when COMMAND exits; the next datagram from the peer
starts a new COMMAND.

--once handles one connection (or UDP flow) and exits with its command's
status.`,
		Example: `  # A one-line server the sandbox reaches at 10.0.2.2:7000
  tunstack listen 7000 -- sh -c 'echo hello from the host'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d := cmd.ArgsLenAtDash(); d != 1 {
				return errors.New("usage: tunstack listen [--name N] [--udp] [HOST]:PORT -- COMMAND [ARG...]")
			}
			addr := args[0]
			if !strings.Contains(addr, ":") {
				addr = ":" + addr
			}
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			req := control.FDRequest{Op: control.FDListen, Addr: addr}
			if udp {
				req = control.FDRequest{Op: control.FDUDP, Bind: addr}
			}
			f, info, err := c.FD(cmd.Context(), req)
			if err != nil {
				return err
			}
			fc, err := net.FileConn(f)
			f.Close()
			if err != nil {
				return err
			}
			uc := fc.(*net.UnixConn)
			defer uc.Close()
			fmt.Fprintf(os.Stderr, "tunstack: listening on %s\n", info.Local)
			srv := &fdserve.Server{Argv: args[1:], Once: once}
			serve := srv.ServeTCP
			if udp {
				serve = srv.ServeUDP
			}
			code, err := serve(cmd.Context(), uc)
			if !once {
				return err // serving ended: no command's status to report
			}
			return servedStatus(code, err)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "instance name (default: the only running instance)")
	cmd.Flags().BoolVar(&udp, "udp", false, "UDP: one COMMAND per peer address")
	cmd.Flags().BoolVar(&once, "once", false, "handle one connection, then exit with its command's status")
	return cmd
}
