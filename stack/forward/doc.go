// Package forward carries host connections into the sandbox: port forwards
// from a host TCP or UDP port (or a host unix socket) to a port on the
// sandbox's address.
//
// Unlike slirp4netns and gvisor-tap-vsock, the server in the sandbox sees
// the real client's address and port: the stack dials the sandbox from the
// client's own address (its NIC has spoofing on). A client on the host's
// loopback, or on a unix socket, appears as the gateway address (10.0.2.2),
// as the sandbox reaches the host's loopback there.
//
// That is the stack path. A TCP connection from the host's loopback or a
// unix socket can instead take the splice path (Config.Inner, Path): a
// kernel socket inside the sandbox's network namespace connects to the
// sandbox address from 127.0.0.1 (or ::1), and the bytes move host socket
// to inner socket by relay's copy loop, never through the stack. Under PathAuto
// that happens only while the firewall is empty, since a spliced flow
// does not cross it; other clients keep the stack path and their address.
package forward
