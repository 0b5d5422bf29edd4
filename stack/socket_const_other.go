//go:build !linux

package stack

import "syscall"

// The socket API's constants have the values of Linux, whose sockets the
// API mirrors, so on Linux the names from package syscall (and
// golang.org/x/sys/unix) can be passed as they are.
//
// Elsewhere they keep Linux's (generic architecture) values.

// Address families.
const (
	AF_INET  = 0x2
	AF_INET6 = 0xa
)

// Socket types and flags for Stack.Socket.
const (
	SOCK_STREAM   = 0x1
	SOCK_DGRAM    = 0x2
	SOCK_NONBLOCK = 0x800
	SOCK_CLOEXEC  = 0x80000
)

// Protocols and option levels.
const (
	IPPROTO_IP     = 0x0
	IPPROTO_ICMP   = 0x1
	IPPROTO_TCP    = 0x6
	IPPROTO_UDP    = 0x11
	IPPROTO_IPV6   = 0x29
	IPPROTO_ICMPV6 = 0x3a
	SOL_SOCKET     = 0x1
)

// Options for SetSockOpt and GetSockOpt.
const (
	SO_REUSEADDR      = 0x2
	SO_TYPE           = 0x3
	SO_ERROR          = 0x4
	SO_BROADCAST      = 0x6
	SO_SNDBUF         = 0x7
	SO_RCVBUF         = 0x8
	SO_KEEPALIVE      = 0x9
	SO_REUSEPORT      = 0xf
	SO_ACCEPTCONN     = 0x1e
	TCP_NODELAY       = 0x1
	TCP_KEEPIDLE      = 0x4
	TCP_KEEPINTVL     = 0x5
	TCP_KEEPCNT       = 0x6
	TCP_USER_TIMEOUT  = 0x12
	IP_TOS            = 0x1
	IP_TTL            = 0x2
	IPV6_UNICAST_HOPS = 0x10
	IPV6_V6ONLY       = 0x1a
)

// Flags for Send, Recv, SendTo and RecvFrom.
const (
	MSG_PEEK     = 0x2
	MSG_DONTWAIT = 0x40
	MSG_WAITALL  = 0x100
	MSG_NOSIGNAL = 0x4000
)

// How arguments for Shutdown.
const (
	SHUT_RD   = 0x0
	SHUT_WR   = 0x1
	SHUT_RDWR = 0x2
)

// errNoNet is the errno for tcpip.ErrNoNet; ENONET is Linux-only.
const errNoNet = syscall.ENETDOWN
