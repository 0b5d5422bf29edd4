// Package stack is tunstack's userspace TCP/IP stack: a wrapper around
// gVisor's netstack (gvisor.dev/gvisor/pkg/tcpip/stack) that owns its NICs,
// addresses and routes, applies TCP tuning chosen by measurement, and shuts
// down without leaving goroutines behind.
//
// The services that make a stack a sandbox's gateway to the host live in
// sub-packages: egress (TCP and UDP relayed to host sockets), dnsrelay,
// echo (ICMP echo through host ping sockets) and gateway, which composes
// them with slirp4netns-compatible addressing.
package stack
