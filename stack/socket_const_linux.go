package stack

import "syscall"

// The socket API's constants have the values of Linux, whose sockets the
// API mirrors, so on Linux the names from package syscall (and
// golang.org/x/sys/unix) can be passed as they are.

// Address families.
const (
	AF_INET  = syscall.AF_INET
	AF_INET6 = syscall.AF_INET6
)

// Socket types and flags for Stack.Socket.
const (
	SOCK_STREAM   = syscall.SOCK_STREAM
	SOCK_DGRAM    = syscall.SOCK_DGRAM
	SOCK_NONBLOCK = syscall.SOCK_NONBLOCK
	SOCK_CLOEXEC  = syscall.SOCK_CLOEXEC
)

// Protocols and option levels.
const (
	IPPROTO_IP     = syscall.IPPROTO_IP
	IPPROTO_ICMP   = syscall.IPPROTO_ICMP
	IPPROTO_TCP    = syscall.IPPROTO_TCP
	IPPROTO_UDP    = syscall.IPPROTO_UDP
	IPPROTO_IPV6   = syscall.IPPROTO_IPV6
	IPPROTO_ICMPV6 = syscall.IPPROTO_ICMPV6
	SOL_SOCKET     = syscall.SOL_SOCKET
)

// Options for SetSockOpt and GetSockOpt.
const (
	SO_REUSEADDR      = syscall.SO_REUSEADDR
	SO_TYPE           = syscall.SO_TYPE
	SO_ERROR          = syscall.SO_ERROR
	SO_BROADCAST      = syscall.SO_BROADCAST
	SO_SNDBUF         = syscall.SO_SNDBUF
	SO_RCVBUF         = syscall.SO_RCVBUF
	SO_KEEPALIVE      = syscall.SO_KEEPALIVE
	SO_REUSEPORT      = 0xf
	SO_ACCEPTCONN     = syscall.SO_ACCEPTCONN
	TCP_NODELAY       = syscall.TCP_NODELAY
	TCP_KEEPIDLE      = syscall.TCP_KEEPIDLE
	TCP_KEEPINTVL     = syscall.TCP_KEEPINTVL
	TCP_KEEPCNT       = syscall.TCP_KEEPCNT
	TCP_USER_TIMEOUT  = 0x12
	IP_TOS            = syscall.IP_TOS
	IP_TTL            = syscall.IP_TTL
	IPV6_UNICAST_HOPS = syscall.IPV6_UNICAST_HOPS
	IPV6_V6ONLY       = syscall.IPV6_V6ONLY
)

// Flags for Send, Recv, SendTo and RecvFrom.
const (
	MSG_PEEK     = syscall.MSG_PEEK
	MSG_DONTWAIT = syscall.MSG_DONTWAIT
	MSG_WAITALL  = syscall.MSG_WAITALL
	MSG_NOSIGNAL = syscall.MSG_NOSIGNAL
)

// How arguments for Shutdown.
const (
	SHUT_RD   = syscall.SHUT_RD
	SHUT_WR   = syscall.SHUT_WR
	SHUT_RDWR = syscall.SHUT_RDWR
)

// errNoNet is the errno for tcpip.ErrNoNet.
const errNoNet = syscall.ENONET
