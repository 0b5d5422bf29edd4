// Package stack is tunstack's userspace TCP/IP stack: a wrapper around
// gVisor's netstack (gvisor.dev/gvisor/pkg/tcpip/stack) that owns its NICs,
// addresses and routes, applies TCP tuning chosen by measurement, and shuts
// down without leaving goroutines behind.
//
// A stack made by New has no NIC. AddNIC gives it one from any link
// endpoint: a TUN device (package tun), an in-memory link (netdev.Pipe,
// or whole virtual networks with package stack/vnet), or one's own
// transport (any netdev.Device through netdev.NewEndpoint). Each address
// also adds the on-link route for its prefix, as `ip addr add` does. Then
// Listen, DialContext and ListenPacket return Go's net interfaces, and
// Socket is a BSD-style socket API with Linux's errno values; Socket.File
// exports a socket as a file descriptor. Example_twoStacks is a complete
// program (the README's).
//
// The services that make a stack a sandbox's gateway to the host live in
// sub-packages: egress (TCP and UDP relayed to host sockets), dnsrelay,
// echo (ICMP echo through host ping sockets) and gateway, which composes
// them with slirp4netns-compatible addressing.
package stack
