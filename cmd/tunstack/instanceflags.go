package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/instance"
	"github.com/tunstack/tunstack/stack/forward"
)

// addInstanceFlags adds the flags run and attach share for the control
// plane, port forwards and recording.
func addInstanceFlags(f *pflag.FlagSet, name *string, publish *[]string, pcap *string) {
	f.StringVar(name, "name", "", "instance name for the control socket and the views (default ts-PID)")
	f.StringArrayVarP(publish, "publish", "p", nil, "forward [HOSTIP:]HOSTPORT:SANDBOXPORT[/tcp|/udp], a range LO-HI:LO-HI, or /PATH.sock:SANDBOXPORT (repeatable); without HOSTIP it listens on every host address, as docker -p does (127.0.0.1:HOSTPORT:... keeps it local)")
	f.StringVar(pcap, "pcap", "", "record every packet on tun0 to a pcap FILE from the start (- for stdout)")
}

// extrasConfig fills in the control socket, forwards and recording.
func (o *runOptions) extrasConfig(c *instance.Config) error {
	return fillExtras(c, o.name, o.publish, o.pcap)
}

func fillExtras(c *instance.Config, name string, publish []string, pcap string) error {
	if name == "" {
		name = control.DefaultName(os.Getpid())
	}
	if err := control.ValidateName(name); err != nil {
		return err
	}
	c.Name, c.ControlDir, c.PcapPath = name, control.Dir(), pcap
	for _, p := range publish {
		specs, err := forward.ParseSpec(p)
		if err != nil {
			return err
		}
		c.Forwards = append(c.Forwards, specs...)
	}
	return nil
}
