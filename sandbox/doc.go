// Package sandbox starts a command in a new network namespace whose only
// interface besides lo is a TUN device, and hands the device to the calling
// process, which serves it with a userspace stack.
//
// The namespace is created by re-executing the current binary (see
// ChildMain) with CLONE_NEWNET and CLONE_NEWNS, plus CLONE_NEWUSER when the
// caller is not root (the caller is mapped to root inside). The child
// configures the namespace with netlink, bind-mounts a private
// /etc/resolv.conf, passes the TUN descriptor back over a unix socket
// (SCM_RIGHTS), and executes the command only when the parent says the
// network is being served.
//
// Control protocol on the socket (one datagram per message, SOCK_SEQPACKET):
//
//	parent → child   JSON childConfig
//	child  → parent  JSON childReply, with the TUN fd attached on success
//	parent → child   "go"
//
// A child that fails sends a childReply with Error set and exits 125.
package sandbox
