package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/stack/capture"
)

type tcpdumpOptions struct {
	name    string
	iface   string
	write   string
	count   int
	snapLen int
	numeric bool
}

func newTcpdumpCmd() *cobra.Command {
	o := &tcpdumpOptions{}
	cmd := &cobra.Command{
		Use:   "tcpdump [flags] [EXPRESSION]",
		Short: "Capture a running instance's packets, like tcpdump",
		Long: `Capture the packets crossing tun0 in the instance's stack, live, over its
control socket. -w writes pcap that tcpdump, tshark and Wireshark read;
without -w each packet is printed on one line as tcpdump -n -S prints it.

EXPRESSION is a tcpdump filter: host, net, port, portrange (with src, dst),
tcp, udp, icmp, icmp6, ip, ip6, and, or, not, parentheses. Names are not
resolved: use addresses. Capturing stops at -c COUNT packets or on Ctrl-C.

-i chooses where packets are seen. tun0 (the default) is LINKTYPE_RAW:
packets as the sandbox sent them and as they leave for it, before
PREROUTING and after POSTROUTING. any is the stack's interfaces as
"tunstack ip link" lists them, which is tun0, the same packets in
tcpdump -i any's Linux cooked capture v2 (LINKTYPE_LINUX_SLL2): each
carries the interface's index in the stack and its direction, and each
line starts with the interface and In or Out ("tun0  In  IP ..."). The
direction is the stack's, as on the host end of a veth: In came from the
sandbox, Out goes to it. tcpdump -r names an index by the reading
machine's own interfaces (and warns that names may be incorrect); -e
shows the index. The host tap is not an interface of the stack and any
does not include it. host: on the gateway's host side, after the
firewall's decisions: a packet from the sandbox once INPUT (to 10.0.2.2,
10.0.2.3) or FORWARD (to any other address) accepted it, so after
PREROUTING's DNAT (it shows the new destination); a packet toward the
sandbox once OUTPUT or FORWARD accepted it, before POSTROUTING (a reply
to a DNATed flow still shows the translated address). A packet a rule
drops appears on tun0 only. The host tap's netfilter hooks exist only
while it is open.`,
		Example: `  tunstack tcpdump -n
  tunstack tcpdump -c 10 tcp port 80
  tunstack tcpdump -w - 'host 10.0.2.100 and not port 53' | tcpdump -r -
  tunstack tcpdump --name web -w web.pcap
  tunstack tcpdump -i host -n tcp port 8080
  tunstack tcpdump -i any -nn 'tcp[tcpflags] & tcp-syn != 0'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTcpdump(cmd, o, strings.Join(args, " "))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "instance name (default: the only running instance)")
	f.StringVarP(&o.iface, "interface", "i", "", "interface: tun0, any (tun0 as Linux cooked v2, with interface and direction), or host for after the firewall")
	f.StringVarP(&o.write, "write", "w", "", "write pcap to FILE (- for stdout) instead of printing")
	f.IntVarP(&o.count, "count", "c", 0, "stop after COUNT packets")
	f.IntVarP(&o.snapLen, "snapshot-length", "s", 0, "truncate packets to SNAPLEN bytes (default 262144)")
	f.BoolVarP(&o.numeric, "numeric", "n", false, "do not resolve names (names are never resolved; accepted for habit)")
	return cmd
}

func runTcpdump(cmd *cobra.Command, o *tcpdumpOptions, expr string) error {
	// Check the expression here too, so a typo fails before connecting.
	if _, err := capture.ParseFilter(expr); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := connect(ctx, o.name)
	if err != nil {
		return err
	}
	defer c.Close()
	// A cooked (-i any) stream names interfaces by index: the stack's,
	// as "tunstack ip link" lists them.
	var ifNames map[uint32]string
	if o.iface == "any" {
		if ifNames, err = linkNames(ctx, c); err != nil {
			return err
		}
	}
	stream, err := c.Capture(ctx, control.CaptureRequest{Interface: o.iface, Filter: expr, Count: o.count, SnapLen: o.snapLen})
	if err != nil {
		return err
	}
	defer stream.Close()
	pr, err := capture.NewPcapReader(stream)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	iface := o.iface
	if iface == "" {
		iface = "tun0"
	}
	stderr := cmd.ErrOrStderr()
	linkType := "RAW (Raw IP)"
	if pr.LinkType == capture.LinkTypeLinuxSLL2 {
		linkType = "LINUX_SLL2 (Linux cooked v2)"
	}
	fmt.Fprintf(stderr, "tunstack tcpdump: listening on %s, link-type %s, snapshot length %d bytes\n", iface, linkType, pr.SnapLen)

	var pw *capture.PcapWriter
	out := cmd.OutOrStdout()
	if o.write != "" {
		w := out
		if o.write != "-" {
			f, err := os.Create(o.write)
			if err != nil {
				return fmt.Errorf("tcpdump -w: %w", err)
			}
			defer f.Close()
			w = f
		}
		if pw, err = capture.NewPcapWriterLinkType(w, pr.SnapLen, pr.LinkType); err != nil {
			return err
		}
	}
	n := 0
	for {
		p, err := pr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil || errors.Is(err, context.Canceled) {
				break
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				// The instance ended (its interface went away): like
				// tcpdump, report what was captured and succeed.
				fmt.Fprintf(stderr, "tunstack tcpdump: %s ended (the instance stopped)\n", iface)
				break
			}
			fmt.Fprintf(stderr, "\n%d packets captured\n", n)
			return err
		}
		n++
		if pw != nil {
			if err := pw.WritePacket(p); err != nil {
				return fmt.Errorf("tcpdump -w %s: %w", o.write, err)
			}
		} else if _, err := fmt.Fprintln(out, formatLine(p, pr.LinkType, ifNames)); err != nil {
			return err
		}
		if o.count > 0 && n >= o.count {
			break
		}
	}
	fmt.Fprintf(stderr, "\n%d packets captured\n", n)
	return nil
}

// formatLine prints p as tcpdump does for the stream's link type: with
// the interface and direction for a cooked (-i any) capture.
func formatLine(p capture.Packet, linkType int, ifNames map[uint32]string) string {
	if linkType != capture.LinkTypeLinuxSLL2 {
		return capture.FormatLine(p)
	}
	name, ok := ifNames[p.IfIndex]
	if !ok {
		name = "?" // as tcpdump prints an index it cannot name
	}
	return capture.FormatCookedLine(p, name)
}

// linkNames maps the stack's interface indexes to their names.
func linkNames(ctx context.Context, c *control.Client) (map[uint32]string, error) {
	links, err := c.Links(ctx)
	if err != nil {
		return nil, fmt.Errorf("tcpdump -i any: list the interfaces: %w", err)
	}
	names := make(map[uint32]string, len(links))
	for _, l := range links {
		names[uint32(l.Index)] = l.Name
	}
	return names, nil
}
