package stack

import (
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Errno returns the errno a Linux socket reports for err, or 0 when err is
// nil. It exists because gVisor's own adapters (gonet) flatten tcpip errors
// into strings, which breaks errors.Is(err, syscall.ECONNREFUSED) and the
// like; every error this package returns goes through it instead.
//
// The table follows gVisor's sentry (pkg/syserr/netstack.go), which is what
// Linux programs running on gVisor observe, with two deliberate differences:
// ErrClosedForReceive is end of stream (callers turn it into io.EOF, not an
// error) and ErrConnectionAborted is ECONNABORTED on accept but, like Linux,
// ECONNRESET on an established connection (see errnoData).
func Errno(err tcpip.Error) syscall.Errno {
	switch err.(type) {
	case nil, *tcpip.ErrClosedForReceive:
		return 0
	case *tcpip.ErrUnknownProtocol, *tcpip.ErrAlreadyBound, *tcpip.ErrInvalidEndpointState,
		*tcpip.ErrInvalidOptionValue, *tcpip.ErrMalformedHeader, *tcpip.ErrInvalidPortRange,
		*tcpip.ErrMulticastInputCannotBeOutput, *tcpip.ErrMissingRequiredFields:
		return syscall.EINVAL
	case *tcpip.ErrUnknownNICID, *tcpip.ErrUnknownDevice:
		return syscall.ENODEV
	case *tcpip.ErrUnknownProtocolOption:
		return syscall.ENOPROTOOPT
	case *tcpip.ErrDuplicateNICID, *tcpip.ErrDuplicateAddress:
		return syscall.EEXIST
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrHostDown:
		return syscall.EHOSTDOWN
	case *tcpip.ErrNoNet:
		return errNoNet
	case *tcpip.ErrAlreadyConnecting:
		return syscall.EALREADY
	case *tcpip.ErrAlreadyConnected:
		return syscall.EISCONN
	case *tcpip.ErrNoPortAvailable:
		return syscall.EAGAIN
	case *tcpip.ErrPortInUse:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrClosedForSend, *tcpip.ErrAborted:
		return syscall.EPIPE
	case *tcpip.ErrWouldBlock:
		return syscall.EAGAIN
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrConnectStarted:
		return syscall.EINPROGRESS
	case *tcpip.ErrDestinationRequired:
		return syscall.EDESTADDRREQ
	case *tcpip.ErrNotSupported:
		return syscall.EOPNOTSUPP
	case *tcpip.ErrQueueSizeNotSupported:
		return syscall.ENOTTY
	case *tcpip.ErrNotConnected:
		return syscall.ENOTCONN
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrNoSuchFile:
		return syscall.ENOENT
	case *tcpip.ErrBadAddress:
		return syscall.EFAULT
	case *tcpip.ErrNetworkUnreachable:
		return syscall.ENETUNREACH
	case *tcpip.ErrMessageTooLong:
		return syscall.EMSGSIZE
	case *tcpip.ErrNoBufferSpace:
		return syscall.ENOBUFS
	case *tcpip.ErrBroadcastDisabled:
		return syscall.EACCES
	case *tcpip.ErrNotPermitted:
		return syscall.EPERM
	case *tcpip.ErrAddressFamilyNotSupported:
		return syscall.EAFNOSUPPORT
	case *tcpip.ErrBadBuffer:
		return syscall.EFAULT
	case *tcpip.ErrEndpointBusy:
		return syscall.EBUSY
	}
	return syscall.EIO
}

// errnoData is Errno for errors on an established connection's data path,
// where Linux reports an abort by our own side (close with unread data,
// SO_LINGER 0) or the peer as ECONNRESET.
func errnoData(err tcpip.Error) syscall.Errno {
	if _, ok := err.(*tcpip.ErrConnectionAborted); ok {
		return syscall.ECONNRESET
	}
	return Errno(err)
}

// errOrNil keeps a zero Errno from becoming a non-nil error interface.
func errOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
