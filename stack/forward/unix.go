package forward

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// listenUnix listens on a host unix socket path. A socket file nobody
// listens on (left by a crashed process) is replaced; a live one is "in
// use".
func (f *fwd) listenUnix() error {
	path := f.spec.HostPath
	ln, err := net.Listen("unix", path)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		if st, serr := os.Lstat(path); serr == nil && st.Mode()&os.ModeSocket != 0 {
			if c, derr := net.Dial("unix", path); derr != nil {
				os.Remove(path)
				ln, err = net.Listen("unix", path)
			} else {
				c.Close()
			}
		}
	}
	if err != nil {
		return fmt.Errorf("forward %s: host socket %s: %w", f.spec, path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	f.lns = append(f.lns, ln)
	f.serveListeners()
	return nil
}
