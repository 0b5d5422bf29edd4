package forward

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first Accepts with err, as a process out of
// descriptors sees them, then accepts normally.
type failingListener struct {
	net.Listener
	fails atomic.Int32
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", l.err)}
	}
	return l.Listener.Accept()
}

// TestAcceptSurvivesEMFILE: a forward whose accept fails for lack of
// descriptors backs off and serves the next client, rather than stopping
// for good.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			m, sb := pair(t)
			echoServer(t, sb, 8080)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			fl := &failingListener{Listener: ln, err: errno}
			fl.fails.Store(4)
			specs, _ := ParseSpec("127.0.0.1:1:8080")
			ctx, cancel := context.WithCancel(context.Background())
			f := &fwd{m: m, spec: specs[0], created: time.Now(), ctx: ctx, cancel: cancel, lns: []net.Listener{fl}}
			f.serveListeners()
			defer f.stop()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintln(c, "after the failures")
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasSuffix(got, " after the failures\n") {
				t.Fatalf("client after %d accept failures got %q, %v; want its line echoed", 4, got, err)
			}
			if n := fl.fails.Load(); n >= 0 {
				t.Errorf("the loop stopped calling Accept (%d failures left)", n+1)
			}
		})
	}
}
