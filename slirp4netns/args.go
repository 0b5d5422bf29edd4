// Package slirp4netns speaks slirp4netns 1.2's interface to its callers
// (rootlesskit, podman, buildah): its command line, parsed with getopt_long
// rules, its --help and --version texts, and its JSON API socket for port
// forwards. The command that serves the namespace is in cmd/tunstack.
package slirp4netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Version is the slirp4netns version tunstack answers as.
const Version = "1.2.0"

// Options is a parsed slirp4netns command line.
type Options struct {
	Configure           bool   // -c
	ExitFD              int    // -e; -1 when not given
	ReadyFD             int    // -r; -1 when not given
	MTU                 int    // -m (default 1500)
	EnableIPv6          bool   // -6
	APISocket           string // -a
	CIDR                netip.Prefix
	DisableHostLoopback bool
	NetNSType           string // "pid" or "path"
	UserNSPath          string
	EnableSandbox       bool
	EnableSeccomp       bool
	OutboundAddr        string
	OutboundAddr6       string
	DisableDNS          bool
	MACAddress          net.HardwareAddr
	// Help and Version ask for the texts; nothing else is then checked
	// beyond the options before them, as getopt_long stops there.
	Help, Version bool
	// PID is the target process (NetNSType "pid"); NetNSPath the
	// namespace path (NetNSType "path").
	PID       int
	NetNSPath string
	// TapName is the TAP device to serve.
	TapName string
	// Warnings are what slirp4netns would print and carry on.
	Warnings []string
}

// DefaultMTU and DefaultCIDR are slirp4netns's defaults.
const DefaultMTU = 1500

// DefaultCIDR is slirp4netns's default network.
var DefaultCIDR = netip.MustParsePrefix("10.0.2.0/24")

// option is one entry of the long option table.
type option struct {
	long  string
	short byte
	arg   bool
}

// options is slirp4netns's option table (getopt_long's longopts and the
// short option string "ce:r:m:a:6hv").
var options = []option{
	{"configure", 'c', false}, {"exit-fd", 'e', true}, {"ready-fd", 'r', true},
	{"mtu", 'm', true}, {"cidr", 0, true}, {"disable-host-loopback", 0, false},
	{"no-host-loopback", 0, false}, {"netns-type", 0, true}, {"userns-path", 0, true},
	{"api-socket", 'a', true}, {"enable-ipv6", '6', false}, {"enable-sandbox", 0, false},
	{"create-sandbox", 0, false}, {"enable-seccomp", 0, false}, {"help", 'h', false},
	{"version", 'v', false}, {"outbound-addr", 0, true}, {"outbound-addr6", 0, true},
	{"disable-dns", 0, false}, {"macaddress", 0, true}, {"target-type", 0, true},
}

// Parse reads a slirp4netns command line (without argv[0]) as
// getopt_long does: long options with "=VALUE" or a separate VALUE, unique
// prefixes of long options, clustered short options ("-c6"), attached
// short values ("-r3"), options after the positional arguments, and "--"
// ending the options.
func Parse(args []string) (*Options, error) {
	o := &Options{ExitFD: -1, ReadyFD: -1, MTU: DefaultMTU, CIDR: DefaultCIDR}
	var pos []string
	var macArg string
	for i := 0; i < len(args); i++ {
		a := args[i]
		var name, val string
		var hasVal bool
		var opt option
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
			continue
		case strings.HasPrefix(a, "--"):
			name, val, hasVal = strings.Cut(a[2:], "=")
			var err error
			if opt, err = lookupLong(name); err != nil {
				return nil, err
			}
			if hasVal && !opt.arg {
				return nil, fmt.Errorf("option '--%s' doesn't allow an argument", opt.long)
			}
		case len(a) > 1 && a[0] == '-':
			// A cluster of short options; the first taking an argument
			// takes the rest of the word, or the next word.
			stop := false
			for j := 1; j < len(a) && !stop; j++ {
				var err error
				if opt, err = lookupShort(a[j]); err != nil {
					return nil, err
				}
				if opt.arg {
					val, hasVal, stop = a[j+1:], j+1 < len(a), true
				}
				if !opt.arg && j+1 < len(a) {
					if done, err := o.set(opt, ""); done || err != nil {
						return o, err
					}
				}
			}
		default:
			pos = append(pos, a)
			continue
		}
		if opt.arg && !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("option '%s' requires an argument", a)
			}
			i++
			val = args[i]
		}
		if opt.long == "macaddress" {
			macArg = val
			continue
		}
		if done, err := o.set(opt, val); done || err != nil {
			return o, err
		}
	}
	if macArg != "" {
		if !o.Configure {
			return nil, errors.New("--macaddr cannot be specified when --configure or -c is not specified")
		}
		mac, err := net.ParseMAC(macArg)
		if err != nil || len(mac) != 6 {
			return nil, fmt.Errorf("%q is an invalid MAC address", macArg)
		}
		o.MACAddress = mac
	}
	return o, o.positionals(pos)
}

func lookupLong(name string) (option, error) {
	var found []option
	for _, op := range options {
		if op.long == name {
			return op, nil
		}
		if strings.HasPrefix(op.long, name) && name != "" {
			found = append(found, op)
		}
	}
	switch len(found) {
	case 0:
		return option{}, fmt.Errorf("unrecognized option '--%s'", name)
	case 1:
		return found[0], nil
	}
	return option{}, fmt.Errorf("option '--%s' is ambiguous", name)
}

func lookupShort(c byte) (option, error) {
	for _, op := range options {
		if op.short == c && c != 0 {
			return op, nil
		}
	}
	return option{}, fmt.Errorf("invalid option -- '%c'", c)
}

// set applies one option; done reports --help or --version, after which
// getopt_long's caller exits.
func (o *Options) set(opt option, val string) (done bool, err error) {
	switch opt.long {
	case "configure":
		o.Configure = true
	case "exit-fd", "ready-fd":
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return false, fmt.Errorf("%s must be a non-negative integer (got %q)", opt.long, val)
		}
		if opt.long == "exit-fd" {
			o.ExitFD = n
		} else {
			o.ReadyFD = n
		}
	case "mtu":
		n, err := strconv.Atoi(val)
		if err != nil || n <= 0 || n > 65521 {
			return false, fmt.Errorf("MTU must be a positive integer (< 65522) (got %q)", val)
		}
		o.MTU = n
	case "cidr":
		p, err := netip.ParsePrefix(val)
		if err != nil || !p.Addr().Is4() {
			return false, fmt.Errorf("invalid CIDR %q: want an IPv4 network such as 10.0.2.0/24", val)
		}
		o.CIDR = p.Masked()
	case "disable-host-loopback":
		o.DisableHostLoopback = true
	case "no-host-loopback":
		o.DisableHostLoopback = true
		o.Warnings = append(o.Warnings, "--no-host-loopback is deprecated, please use --disable-host-loopback instead")
	case "netns-type":
		o.NetNSType = val
	case "userns-path":
		if _, err := os.Stat(val); err != nil {
			return false, fmt.Errorf("userns path doesn't exist: %s", val)
		}
		o.UserNSPath = val
	case "api-socket":
		o.APISocket = val
	case "enable-ipv6":
		o.EnableIPv6 = true
	case "enable-sandbox", "create-sandbox":
		o.EnableSandbox = true
	case "enable-seccomp":
		o.EnableSeccomp = true
	case "help":
		o.Help = true
		return true, nil
	case "version":
		o.Version = true
		return true, nil
	case "outbound-addr":
		o.OutboundAddr = val
	case "outbound-addr6":
		o.OutboundAddr6 = val
	case "disable-dns":
		o.DisableDNS = true
	case "target-type":
		if val == "bess" {
			return false, errors.New("--target-type=bess is not supported by tunstack")
		}
		if val != "netns" {
			return false, errors.New(`--target-type must be either "netns" or "bess"`)
		}
	}
	return false, nil
}

// positionals reads PID|PATH TAPNAME.
func (o *Options) positionals(pos []string) error {
	if o.NetNSType == "tapfd" {
		return errors.New("--netns-type=tapfd is not supported by tunstack")
	}
	if len(pos) < 2 {
		return fmt.Errorf("want PID|PATH and TAPNAME, got %d argument(s) %q", len(pos), pos)
	}
	if len(pos) > 2 {
		o.Warnings = append(o.Warnings, "too many arguments")
	}
	switch o.NetNSType {
	case "", "pid":
		o.NetNSType = "pid"
		pid, err := strconv.Atoi(pos[0])
		if err != nil || pid <= 0 {
			return fmt.Errorf("PID must be a positive integer (got %q)", pos[0])
		}
		o.PID = pid
	case "path":
		if _, err := os.Stat(pos[0]); err != nil {
			return fmt.Errorf("existing path expected when --netns-type=path: %w", err)
		}
		o.NetNSPath = pos[0]
	default:
		return fmt.Errorf("--netns-type %q: want pid or path", o.NetNSType)
	}
	o.TapName = pos[1]
	if len(o.TapName) >= 16 || o.TapName == "" {
		return fmt.Errorf("TAPNAME %q: must be 1 to 15 characters", o.TapName)
	}
	return nil
}
