// Package sandbox starts a command in a new network namespace whose only
// interface besides lo is a TUN device, and hands the device to the calling
// process, which serves it with a userspace stack.
//
// The current binary is re-executed twice (see ChildMain). The init child
// gets a user namespace (the caller mapped to root; root mapped to root
// over the whole id range), a mount namespace, a PID namespace in which it
// is PID 1, and an empty network namespace; with Config.HostCaps (root
// only) no user or network namespace, with Config.NoPIDNS no PID
// namespace. It makes its mounts private, mounts a private
// /etc/resolv.conf, empty tmpfs covers over Config.HidePaths and a /proc
// for the PID namespace, and starts the exec child in a user, mount and
// network namespace beneath its own. The command's user namespace owns the
// sandbox's network namespace (it can configure tun0) and nothing of the
// host's (it cannot setns there), and the kernel locks the covers in its
// mount namespace (it cannot unmount them). The exec child configures the
// network with netlink, passes the TUN descriptor to the caller (SCM_RIGHTS)
// and executes the command only when the caller says the network is being
// served. Init forwards signals to the command, reaps orphans, and exits
// with the command's status; with a PID namespace everything left in the
// sandbox dies with it.
//
// Control protocol on the socket (one datagram per message, SOCK_SEQPACKET;
// the init child passes the socket to the exec child as fd 3, and the
// configuration, with its notes, through a pipe as fd 4):
//
//	parent → init    JSON childConfig
//	exec   → parent  JSON childReply, with the TUN fd attached on success
//	                 (its SCM_CREDENTIALS give the parent the command's pid)
//	parent → exec    "go"
//
// Init also answers two kinds of requests from the caller once the
// command runs, each on a socket only the two of them hold: which of the
// sandbox's processes hold which sockets (SocketHolders, fd 4, a stream
// of JSON lines), and fresh TCP sockets made in the command's network
// namespace by a thread of init that has entered it (DialInner, fd 5,
// SOCK_SEQPACKET: a JSON request, a JSON reply with the sockets attached),
// for port forwards spliced kernel to kernel, and on the same channel one
// NETLINK_SOCK_DIAG socket of that namespace (WithSockDiag), for ss.
//
// A child that fails sends a childReply with Error set and exits 125; one
// that does not find the command sends NotFound set to its name and exits
// 127.
//
// Attach instead runs the child through nsenter(1) in an existing
// namespace, where it only creates and passes the device.
package sandbox
