package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/stack/fdserve"
)

func newConnectCmd() *cobra.Command {
	var name string
	var udp bool
	cmd := &cobra.Command{
		Use:   "connect [--name N] [--udp] [HOST]:PORT -- COMMAND [ARG...]",
		Short: "Run a command with a connection into a running instance's network as its stdin/stdout",
		Long: `connect asks a running instance for a connection made by its stack, from
the gateway address (10.0.2.2), to HOST:PORT (default host: the sandbox,
10.0.2.100), and runs COMMAND with the connection as its standard input and
output, like socat's EXEC. Standard error stays the terminal's.

With --udp the socket is a UDP socket connected to HOST:PORT: each write by
COMMAND sends one datagram and each read returns one (the descriptor is a
SOCK_SEQPACKET unix socket).

The exit status is COMMAND's (128+N when killed by signal N; 127 when it
was not found); 125 when the connection could not be made.`,
		Example: `  # Ask a web server running in the sandbox for its front page
  tunstack connect --name web 10.0.2.100:8000 -- sh -c 'printf "GET / HTTP/1.0\r\n\r\n"; cat'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d := cmd.ArgsLenAtDash(); d != 1 {
				return errors.New("usage: tunstack connect [--name N] [--udp] [HOST]:PORT -- COMMAND [ARG...]")
			}
			c, err := connect(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer c.Close()
			req := control.FDRequest{Op: control.FDConnect, Addr: args[0]}
			if udp {
				req.Op = control.FDUDP
			}
			f, _, err := c.FD(cmd.Context(), req)
			if err != nil {
				return err
			}
			code, err := fdserve.Run(args[1:], f, os.Stderr)
			f.Close()
			return servedStatus(code, err)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "instance name (default: the only running instance)")
	cmd.Flags().BoolVar(&udp, "udp", false, "a connected UDP socket instead of a TCP connection")
	return cmd
}

// servedStatus is tunstack's result for a command it ran on a connection
// (connect, listen --once): a program that does not exist is reported and
// exits with code (127, as a shell's), another error is returned, and a
// nonzero status becomes tunstack's.
func servedStatus(code int, err error) error {
	if errors.Is(err, fdserve.ErrNotFound) {
		fmt.Fprintf(os.Stderr, "tunstack: %v\n", err)
		return exitError{code}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}
