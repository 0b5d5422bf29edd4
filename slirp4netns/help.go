package slirp4netns

import (
	"fmt"
	"io"
)

// Usage writes the --help text. Callers detect features by substrings of
// it (rootlesskit: "--netns-type", "--enable-ipv6", "--cidr",
// "--disable-host-loopback", "--api-socket", "--enable-sandbox",
// "--enable-seccomp"; podman also "--mtu", "--outbound-addr"), so every
// option keeps slirp4netns's spelling.
func Usage(w io.Writer, argv0 string) {
	fmt.Fprintf(w, `Usage: %s [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces
(tunstack's userspace TCP/IP stack, speaking slirp4netns %s).

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=%d, max=65521)
-6, --enable-ipv6        enable IPv6 (fd00::/64 by router advertisement)
-a, --api-socket=PATH    specify API socket path
--cidr=CIDR              specify network address CIDR (default=%s)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)
--userns-path=PATH       specify user namespace path
--enable-sandbox         drop privileges after setup (no_new_privs; as root, become nobody)
--enable-seccomp         filter system calls after setup (seccomp allowlist)
--outbound-addr=IPv4     sets outbound ipv4 address (or interface) to bind to
--outbound-addr6=IPv6    sets outbound ipv6 address (or interface) to bind to
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=TYPE       specify the target type ([netns], default=netns)
-h, --help               show this help and exit
-v, --version            show version and exit

Environment: TUNSTACK_NAME names the instance for "tunstack ps", ss, ip,
tcpdump, iptables and forward (default: after the namespace).
`, argv0, Version, DefaultMTU, DefaultCIDR)
}

// WriteVersion writes the --version text: slirp4netns's first line, which
// podman and rootlesskit parse, then tunstack's own version lines.
func WriteVersion(w io.Writer, tunstackVersion string) {
	fmt.Fprintf(w, "slirp4netns version %s\n%s\n", Version, tunstackVersion)
}
