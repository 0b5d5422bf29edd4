// Package views takes snapshots of a stack for the introspection commands:
// its sockets (ss), interfaces and addresses (ip link, ip addr) and routes
// (ip route), as plain JSON-friendly values, and formats them in the layout
// of the Linux tools, so habits and scripts carry over.
//
// Beside the stack's sockets, the sandbox's own are listed as ss inside
// the namespace lists them: DiagSockets reads them as ss does, with
// inet_diag dumps over a NETLINK_SOCK_DIAG socket of the namespace (which
// the sandbox's init makes), listeners' backlogs as Send-Q and IPV6_V6ONLY
// included; NewSocketIndex indexes them. Where there is no such socket (an
// attached namespace has no init), ProcIndex reads the namespace's
// /proc/PID/net tables instead, which differ from ss: a listener's Send-Q
// (the backlog) is 0, the tables not carrying it; IPV6_V6ONLY is inferred
// (an IPv4 socket on the same port) rather than read. Either way a read
// while sockets come and go may list one twice or miss one (netlink's
// dump is not atomic either).
// The stack's own listeners show their backlog as Send-Q (given
// SocketsWithBacklog a lookup, as the instance does) and IPV6_V6ONLY as
// read from the endpoint.
//
// Snapshots are taken in the instance's process; formatting runs in the
// client, on values decoded from the control socket.
package views
