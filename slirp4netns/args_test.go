package slirp4netns

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseCallers(t *testing.T) {
	netns := filepath.Join(t.TempDir(), "netns-1234")
	os.WriteFile(netns, nil, 0o644)
	base := func(f func(o *Options)) *Options {
		o := &Options{ExitFD: -1, ReadyFD: -1, MTU: DefaultMTU, CIDR: DefaultCIDR, NetNSType: "pid", PID: 1234, TapName: "tap0"}
		f(o)
		return o
	}
	tests := []struct {
		name string
		args string
		want *Options
	}{
		{"rootlesskit 1.1 minimal", "--mtu 65520 -r 3 1234 tap0", base(func(o *Options) { o.MTU, o.ReadyFD = 65520, 3 })},
		{"rootlesskit 1.1 full", "--mtu 65520 -r 3 --disable-host-loopback --api-socket /run/user/1000/rk/api.sock --enable-sandbox --enable-seccomp 1234 tap0",
			base(func(o *Options) {
				o.MTU, o.ReadyFD, o.DisableHostLoopback, o.APISocket = 65520, 3, true, "/run/user/1000/rk/api.sock"
				o.EnableSandbox, o.EnableSeccomp = true, true
			})},
		{"rootlesskit cidr ipv6", "--mtu 1500 -r 3 --cidr 10.0.3.0/24 --enable-ipv6 1234 tap0",
			base(func(o *Options) { o.ReadyFD, o.CIDR, o.EnableIPv6 = 3, netip.MustParsePrefix("10.0.3.0/24"), true })},
		{"rootlesskit detach-netns", "--mtu 65520 -r 3 --userns-path=/proc/self/ns/user --netns-type=path " + netns + " tap0",
			base(func(o *Options) {
				o.MTU, o.ReadyFD, o.UserNSPath, o.NetNSType, o.NetNSPath, o.PID = 65520, 3, "/proc/self/ns/user", "path", netns, 0
			})},
		{"podman 4.3", "--disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4 --api-socket /run/user/1000/libpod/tmp/x.net --netns-type=path " + netns + " tap0",
			base(func(o *Options) {
				o.DisableHostLoopback, o.MTU, o.EnableSandbox, o.EnableSeccomp, o.EnableIPv6 = true, 65520, true, true, true
				o.Configure, o.ExitFD, o.ReadyFD, o.APISocket = true, 3, 4, "/run/user/1000/libpod/tmp/x.net"
				o.NetNSType, o.NetNSPath, o.PID = "path", netns, 0
			})},
		{"podman 5 outbound cidr", "--mtu=65520 --cidr=10.0.5.0/24 --outbound-addr=127.0.0.1 --outbound-addr6=::1 -c -r 3 -e 4 --netns-type=path " + netns + " tap0",
			base(func(o *Options) {
				o.MTU, o.CIDR, o.OutboundAddr, o.OutboundAddr6 = 65520, netip.MustParsePrefix("10.0.5.0/24"), "127.0.0.1", "::1"
				o.Configure, o.ReadyFD, o.ExitFD, o.NetNSType, o.NetNSPath, o.PID = true, 3, 4, "path", netns, 0
			})},
		{"buildah", "--mtu=65520 --disable-dns -c -r 3 1234 tap0", base(func(o *Options) { o.MTU, o.DisableDNS, o.Configure, o.ReadyFD = 65520, true, true, 3 })},
		{"attached short values", "-r3 -e4 -m1400 1234 tap0", base(func(o *Options) { o.ReadyFD, o.ExitFD, o.MTU = 3, 4, 1400 })},
		{"clustered short options", "-c6r 3 1234 tap0", base(func(o *Options) { o.Configure, o.EnableIPv6, o.ReadyFD = true, true, 3 })},
		{"options after positionals", "1234 tap0 --mtu 9000 -c", base(func(o *Options) { o.MTU, o.Configure = 9000, true })},
		{"double dash", "-c -- 1234 tap0", base(func(o *Options) { o.Configure = true })},
		{"unique prefix", "--api=/x.sock --disable-h 1234 tap0", nil},
		{"exact beats prefix", "--outbound-addr 127.0.0.1 1234 tap0", base(func(o *Options) { o.OutboundAddr = "127.0.0.1" })},
		{"mac with configure", "-c --macaddress=02:00:00:00:00:01 1234 tap0", base(func(o *Options) {
			o.Configure = true
			o.MACAddress = []byte{2, 0, 0, 0, 0, 1}
		})},
		{"target netns", "--target-type=netns 1234 tap0", base(func(o *Options) {})},
		{"too many arguments warns", "1234 tap0 extra", base(func(o *Options) { o.Warnings = []string{"too many arguments"} })},
		{"help stops parsing", "--mtu 1500 --help --mtu 0", &Options{ExitFD: -1, ReadyFD: -1, MTU: 1500, CIDR: DefaultCIDR, Help: true}},
		{"version", "-v", &Options{ExitFD: -1, ReadyFD: -1, MTU: DefaultMTU, CIDR: DefaultCIDR, Version: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.Fields(tc.args))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.args, err)
			}
			if tc.want == nil {
				if got.APISocket != "/x.sock" || !got.DisableHostLoopback {
					t.Fatalf("Parse(%q) = %+v: prefixes not resolved", tc.args, got)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse(%q)\n got %+v\nwant %+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ args, want string }{
		{"", "want PID|PATH and TAPNAME"},
		{"1234", "want PID|PATH and TAPNAME"},
		{"--mtu 0 1234 tap0", "MTU must be a positive integer"},
		{"--mtu 65522 1234 tap0", "MTU must be a positive integer"},
		{"--mtu=x 1234 tap0", "MTU must be a positive integer"},
		{"-r x 1234 tap0", "ready-fd must be a non-negative integer"},
		{"-e -1 1234 tap0", "exit-fd must be a non-negative integer"},
		{"-r", "requires an argument"},
		{"--api-socket", "requires an argument"},
		{"--configure=1 1234 tap0", "doesn't allow an argument"},
		{"--bogus 1234 tap0", "unrecognized option '--bogus'"},
		{"--dis 1234 tap0", "is ambiguous"},
		{"-x 1234 tap0", "invalid option -- 'x'"},
		{"--cidr=fd00::/64 1234 tap0", "invalid CIDR"},
		{"--macaddress=02:00:00:00:00:01 1234 tap0", "--macaddr cannot be specified"},
		{"-c --macaddress=zz 1234 tap0", "invalid MAC address"},
		{"0 tap0", "PID must be a positive integer"},
		{"abc tap0", "PID must be a positive integer"},
		{"--netns-type=path /nonexistent/netns tap0", "existing path expected"},
		{"--netns-type=tapfd 3", "not supported"},
		{"--netns-type=bogus 1 tap0", "want pid or path"},
		{"--userns-path=/nonexistent 1 tap0", "userns path doesn't exist"},
		{"--target-type=bess /x.sock", "not supported"},
		{"--target-type=other 1 tap0", "must be either"},
		{"1234 tap0123456789abc", "must be 1 to 15 characters"},
		{"--mtu 0 --help", "MTU must be a positive integer"},
	}
	for _, tc := range tests {
		t.Run(tc.args, func(t *testing.T) {
			o, err := Parse(strings.Fields(tc.args))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse(%q) = %+v, %v; want error containing %q", tc.args, o, err, tc.want)
			}
		})
	}
}

// TestUsageFeatureStrings: rootlesskit and podman detect features by
// substrings of --help.
func TestUsageFeatureStrings(t *testing.T) {
	var b bytes.Buffer
	Usage(&b, "slirp4netns")
	for _, s := range []string{"--netns-type", "--enable-ipv6", "--cidr", "--disable-host-loopback", "--api-socket",
		"--enable-sandbox", "--enable-seccomp", "--mtu", "--outbound-addr", "--outbound-addr6", "--disable-dns",
		"--macaddress", "--userns-path", "--configure", "--exit-fd", "--ready-fd", "--help", "--version"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	b.Reset()
	WriteVersion(&b, "tunstack v1")
	if lines := strings.Split(b.String(), "\n"); lines[0] != "slirp4netns version 1.2.0" || !strings.Contains(lines[1], "tunstack") {
		t.Errorf("--version = %q", b.String())
	}
}

func TestOutboundDialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
	for _, tc := range []struct{ addr, want string }{{"127.0.0.2", "127.0.0.2:"}, {"lo", "127.0.0.1:"}, {"", "127.0.0.1:"}} {
		d, err := NewOutboundDialer(tc.addr, "")
		if err != nil {
			t.Fatalf("NewOutboundDialer(%q): %v", tc.addr, err)
		}
		c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial from %q: %v", tc.addr, err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), tc.want) {
			t.Errorf("from %q the server saw %s, want %s*", tc.addr, b, tc.want)
		}
	}
	for _, bad := range [][2]string{{"::1", ""}, {"", "127.0.0.1"}, {"no-such-if0", ""}} {
		if _, err := NewOutboundDialer(bad[0], bad[1]); err == nil {
			t.Errorf("NewOutboundDialer(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
