// Package relay copies byte streams between a stack's connections and host
// sockets, the way tunstack's egress and port forwards need it.
package relay

import (
	"errors"
	"io"
	"sync"
)

// Copy buffers start tiny, so that the many idle connections of a busy
// sandbox hold little memory while they wait in Read (two per
// connection), and grow while reads keep filling them: to 32 KiB, then to
// 1 MiB, because large writes into gVisor amortise its per-write work (1 MiB
// writes moved 1.6-2.8x more than io.Copy's 32 KiB on the host → sandbox
// path). A read that would have fitted the tier below steps back down.
var tiers = [...]int{4 << 10, 32 << 10, 1 << 20}

// smallBuf and bigBuf are the middle and top tiers (tests use them).
const (
	smallBuf = 32 << 10
	bigBuf   = 1 << 20
)

var pools [len(tiers)]sync.Pool

func init() {
	for i, size := range tiers {
		pools[i].New = func() any { b := make([]byte, size); return &b }
	}
}

// ErrWrite marks a copy that ended because the destination failed.
var ErrWrite = errors.New("relay: write failed")

// Copy copies src to dst until EOF (nil) or an error. A destination failure
// is returned wrapped in ErrWrite so the caller knows which side broke.
// Unlike io.Copy it writes up to 1 MiB at a time when the source keeps
// up, which a gVisor connection needs to amortise its per-write work, and
// holds only 4 KiB while the source is idle.
func Copy(dst io.Writer, src io.Reader) error {
	tier := 0
	bp := pools[tier].Get().(*[]byte)
	defer func() { pools[tier].Put(bp) }()
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
		next := tier
		switch {
		case n == len(buf) && tier < len(tiers)-1:
			next = tier + 1
		case tier > 0 && n <= tiers[tier-1]:
			next = tier - 1
		}
		if next != tier {
			pools[tier].Put(bp)
			tier = next
			bp = pools[tier].Get().(*[]byte)
		}
	}
}
