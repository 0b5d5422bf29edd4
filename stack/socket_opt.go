package stack

import (
	"math"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// SetSockOpt sets an integer socket option, like setsockopt(2) with an int
// value. Supported: SOL_SOCKET SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE,
// SO_BROADCAST, SO_RCVBUF, SO_SNDBUF; IPPROTO_TCP TCP_NODELAY,
// TCP_KEEPIDLE and TCP_KEEPINTVL (seconds), TCP_KEEPCNT, TCP_USER_TIMEOUT
// (milliseconds); IPPROTO_IP IP_TTL, IP_TOS; IPPROTO_IPV6 IPV6_V6ONLY,
// IPV6_UNICAST_HOPS. Others fail with ENOPROTOOPT. SO_LINGER takes a
// struct: use SetSockOptLinger.
func (so *Socket) SetSockOpt(level, opt, value int) error {
	if level == IPPROTO_TCP && so.proto != IPPROTO_TCP {
		return syscall.ENOPROTOOPT
	}
	o := so.ep.SocketOptions()
	on := value != 0
	switch level<<16 | opt {
	case SOL_SOCKET<<16 | SO_REUSEADDR:
		o.SetReuseAddress(on)
	case SOL_SOCKET<<16 | SO_REUSEPORT:
		o.SetReusePort(on)
	case SOL_SOCKET<<16 | SO_KEEPALIVE:
		o.SetKeepAlive(on)
	case SOL_SOCKET<<16 | SO_BROADCAST:
		o.SetBroadcast(on)
	case SOL_SOCKET<<16 | SO_RCVBUF:
		lo, hi := o.ReceiveBufferLimits()
		o.SetReceiveBufferSize(clampBufSize(value, lo, hi), true)
	case SOL_SOCKET<<16 | SO_SNDBUF:
		lo, hi := o.SendBufferLimits()
		o.SetSendBufferSize(clampBufSize(value, lo, hi), true)
	case IPPROTO_TCP<<16 | TCP_NODELAY:
		o.SetDelayOption(!on)
	case IPPROTO_TCP<<16 | TCP_KEEPIDLE:
		return so.setDuration(value, time.Second, func(d time.Duration) tcpip.SettableSocketOption {
			v := tcpip.KeepaliveIdleOption(d)
			return &v
		})
	case IPPROTO_TCP<<16 | TCP_KEEPINTVL:
		return so.setDuration(value, time.Second, func(d time.Duration) tcpip.SettableSocketOption {
			v := tcpip.KeepaliveIntervalOption(d)
			return &v
		})
	case IPPROTO_TCP<<16 | TCP_USER_TIMEOUT:
		return so.setDuration(value, time.Millisecond, func(d time.Duration) tcpip.SettableSocketOption {
			v := tcpip.TCPUserTimeoutOption(d)
			return &v
		})
	case IPPROTO_TCP<<16 | TCP_KEEPCNT:
		return so.setInt(tcpip.KeepaliveCountOption, value)
	case IPPROTO_IP<<16 | IP_TTL:
		return so.setInt(tcpip.IPv4TTLOption, value)
	case IPPROTO_IP<<16 | IP_TOS:
		return so.setInt(tcpip.IPv4TOSOption, value)
	case IPPROTO_IPV6<<16 | IPV6_UNICAST_HOPS:
		return so.setInt(tcpip.IPv6HopLimitOption, value)
	case IPPROTO_IPV6<<16 | IPV6_V6ONLY:
		if so.family != AF_INET6 {
			return syscall.ENOPROTOOPT
		}
		o.SetV6Only(on)
	default:
		return syscall.ENOPROTOOPT
	}
	return nil
}

// GetSockOpt reads an integer socket option, like getsockopt(2): the
// options SetSockOpt takes, plus SO_ERROR (which reads and clears the
// pending error, as an errno number), SO_TYPE and SO_ACCEPTCONN.
func (so *Socket) GetSockOpt(level, opt int) (int, error) {
	if level == IPPROTO_TCP && so.proto != IPPROTO_TCP {
		return 0, syscall.ENOPROTOOPT
	}
	o := so.ep.SocketOptions()
	switch level<<16 | opt {
	case SOL_SOCKET<<16 | SO_REUSEADDR:
		return boolInt(o.GetReuseAddress()), nil
	case SOL_SOCKET<<16 | SO_REUSEPORT:
		return boolInt(o.GetReusePort()), nil
	case SOL_SOCKET<<16 | SO_KEEPALIVE:
		return boolInt(o.GetKeepAlive()), nil
	case SOL_SOCKET<<16 | SO_BROADCAST:
		return boolInt(o.GetBroadcast()), nil
	case SOL_SOCKET<<16 | SO_RCVBUF:
		return int(o.GetReceiveBufferSize()), nil
	case SOL_SOCKET<<16 | SO_SNDBUF:
		return int(o.GetSendBufferSize()), nil
	case SOL_SOCKET<<16 | SO_ERROR:
		return int(Errno(so.takeError())), nil
	case SOL_SOCKET<<16 | SO_TYPE:
		return so.typ, nil
	case SOL_SOCKET<<16 | SO_ACCEPTCONN:
		return boolInt(o.GetAcceptConn()), nil
	case IPPROTO_TCP<<16 | TCP_NODELAY:
		return boolInt(!o.GetDelayOption()), nil
	case IPPROTO_TCP<<16 | TCP_KEEPIDLE:
		var v tcpip.KeepaliveIdleOption
		return so.getDuration(&v, (*time.Duration)(&v), time.Second)
	case IPPROTO_TCP<<16 | TCP_KEEPINTVL:
		var v tcpip.KeepaliveIntervalOption
		return so.getDuration(&v, (*time.Duration)(&v), time.Second)
	case IPPROTO_TCP<<16 | TCP_USER_TIMEOUT:
		var v tcpip.TCPUserTimeoutOption
		return so.getDuration(&v, (*time.Duration)(&v), time.Millisecond)
	case IPPROTO_TCP<<16 | TCP_KEEPCNT:
		return so.getInt(tcpip.KeepaliveCountOption)
	case IPPROTO_IP<<16 | IP_TTL:
		return so.getInt(tcpip.IPv4TTLOption)
	case IPPROTO_IP<<16 | IP_TOS:
		return so.getInt(tcpip.IPv4TOSOption)
	case IPPROTO_IPV6<<16 | IPV6_UNICAST_HOPS:
		return so.getInt(tcpip.IPv6HopLimitOption)
	case IPPROTO_IPV6<<16 | IPV6_V6ONLY:
		if so.family != AF_INET6 {
			return 0, syscall.ENOPROTOOPT
		}
		return boolInt(o.GetV6Only()), nil
	}
	return 0, syscall.ENOPROTOOPT
}

// SetSockOptLinger sets SO_LINGER. With Onoff set and Linger 0, Close
// resets the connection instead of sending a FIN, as on Linux. A positive
// Linger is recorded, but Close never blocks: the FIN handshake finishes in
// the background either way.
func (so *Socket) SetSockOptLinger(l *syscall.Linger) error {
	if l == nil || l.Linger < 0 {
		return syscall.EINVAL
	}
	so.ep.SocketOptions().SetLinger(tcpip.LingerOption{
		Enabled: l.Onoff != 0,
		Timeout: time.Duration(l.Linger) * time.Second,
	})
	return nil
}

// GetSockOptLinger reads SO_LINGER.
func (so *Socket) GetSockOptLinger() (*syscall.Linger, error) {
	l := so.ep.SocketOptions().GetLinger()
	return &syscall.Linger{Onoff: int32(boolInt(l.Enabled)), Linger: int32(l.Timeout / time.Second)}, nil
}

// clampBufSize applies Linux's SO_RCVBUF/SO_SNDBUF rule (as gVisor's
// sentry does): the value is clamped to the maximum, then doubled to
// account for bookkeeping overhead, then raised to the minimum.
func clampBufSize(v int, lo, hi int64) int64 {
	n := min(int64(max(v, 0)), hi)
	if n < math.MaxInt32/2 {
		return max(n*2, lo)
	}
	return math.MaxInt32
}

func (so *Socket) setInt(opt tcpip.SockOptInt, v int) error {
	return errOrNil(Errno(so.ep.SetSockOptInt(opt, v)))
}

func (so *Socket) getInt(opt tcpip.SockOptInt) (int, error) {
	v, err := so.ep.GetSockOptInt(opt)
	return v, errOrNil(Errno(err))
}

func (so *Socket) setDuration(v int, unit time.Duration, mk func(time.Duration) tcpip.SettableSocketOption) error {
	if v < 0 {
		return syscall.EINVAL
	}
	return errOrNil(Errno(so.ep.SetSockOpt(mk(time.Duration(v) * unit))))
}

func (so *Socket) getDuration(opt tcpip.GettableSocketOption, d *time.Duration, unit time.Duration) (int, error) {
	if err := so.ep.GetSockOpt(opt); err != nil {
		return 0, Errno(err)
	}
	return int(*d / unit), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// takeError reads and clears the socket's pending error, as SO_ERROR does
// on Linux. gVisor TCP keeps a failed connect's error in two places (the
// hard error and the last error) and LastError clears one per call, so a
// second read would report it again; the copy is drained here, and a
// different error found behind it is put back for the next read.
func (so *Socket) takeError() tcpip.Error {
	err := so.ep.LastError()
	if err == nil {
		return nil
	}
	if next := so.ep.LastError(); next != nil && Errno(next) != Errno(err) {
		so.ep.SocketOptions().SetLastError(next)
	}
	return err
}
