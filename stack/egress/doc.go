// Package egress carries a stack's TCP and UDP flows to the host: each
// connection the sandbox opens to some address is terminated in the stack
// and redialled from an ordinary host socket, the way slirp4netns and pasta
// do.
//
// The outcome the sandboxed program sees mirrors the host's: a refused host
// dial becomes a TCP RST, an unreachable network an ICMP unreachable, and a
// silent host a timeout (the SYN is never answered). A UDP datagram the
// host's closed port refuses gets an ICMP port unreachable. Half-closes and resets
// pass through in both directions.
//
// Invariant: a sandbox SYN is answered only after the host connection
// exists, so the sandbox never sees a connection succeed that the host
// refused.
package egress
