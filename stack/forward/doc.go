// Package forward carries host connections into the sandbox: port forwards
// from a host TCP or UDP port (or a host unix socket) to a port on the
// sandbox's address.
//
// Unlike slirp4netns and gvisor-tap-vsock, the server in the sandbox sees
// the real client's address and port: the stack dials the sandbox from the
// client's own address (its NIC has spoofing on). A client on the host's
// loopback, or on a unix socket, appears as the gateway address (10.0.2.2),
// as the sandbox reaches the host's loopback there.
package forward
