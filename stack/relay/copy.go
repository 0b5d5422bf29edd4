// Package relay copies byte streams between a stack's connections and host
// sockets, the way tunstack's egress and port forwards need it.
package relay

import (
	"errors"
	"io"
	"sync"
)

// Copy buffers start small so that idle connections hold little memory, and
// grow to bigBuf while reads keep filling them: large writes into gVisor
// amortise its per-write work (1 MiB writes moved 1.6-2.8x more than
// io.Copy's 32 KiB on the host → sandbox path).
const (
	smallBuf = 32 << 10
	bigBuf   = 1 << 20
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}
)

// ErrWrite marks a copy that ended because the destination failed.
var ErrWrite = errors.New("relay: write failed")

// Copy copies src to dst until EOF (nil) or an error. A destination failure
// is returned wrapped in ErrWrite so the caller knows which side broke.
// Unlike io.Copy it writes up to 1 MiB at a time when the source keeps
// up, which a gVisor connection needs to amortise its per-write work.
func Copy(dst io.Writer, src io.Reader) error {
	bp, big := smallPool.Get().(*[]byte), false
	defer func() { release(bp, big) }()
	for {
		buf := *bp
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return errors.Join(ErrWrite, werr)
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
		switch {
		case !big && n == len(buf):
			release(bp, big)
			bp, big = bigPool.Get().(*[]byte), true
		case big && n < smallBuf:
			release(bp, big)
			bp, big = smallPool.Get().(*[]byte), false
		}
	}
}

func release(bp *[]byte, big bool) {
	if big {
		bigPool.Put(bp)
	} else {
		smallPool.Put(bp)
	}
}
