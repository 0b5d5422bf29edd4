package instance

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/stack/capture"
	"github.com/tunstack/tunstack/stack/forward"
)

// extras are the pieces of an instance beyond the network itself: the
// control socket, port forwards and the --pcap recording.
type extras struct {
	control *control.Server
	pcap    *recorder
	// kind is "attach" for an attached namespace ("" means "run").
	kind string
	// hostCapture is the tap behind "tcpdump -i host" (capture_host.go).
	hostCapture *hostCapture
	hostCapOnce sync.Once
	// audit is the --audit file of the allowlist.
	audit *os.File
}

// startExtras starts the forwards and the control socket once the stack
// serves the device.
func (in *Instance) startExtras() error {
	var v4, v6 forward.Target
	if in.cfg.V4.Network.IsValid() {
		v4 = forward.Target{Sandbox: in.cfg.V4.Sandbox, Gateway: in.cfg.V4.Gateway}
	}
	if in.cfg.V6.Network.IsValid() {
		v6 = forward.Target{Sandbox: in.cfg.V6.Sandbox, Gateway: in.cfg.V6.Gateway}
	}
	fc := forward.Config{Stack: in.Stack, NIC: in.NIC, V4: v4, V6: v6, Logger: in.log, Path: in.cfg.ForwardPath}
	if in.Sandbox != nil && in.Sandbox.HasInner() {
		fc.Inner = in.Sandbox.DialInner
	}
	if fw := in.Firewall; fw != nil {
		fc.FirewallEmpty = fw.Empty
	}
	fm, err := forward.New(fc)
	if err != nil {
		return err
	}
	in.Forwards = fm
	if len(in.cfg.Forwards) > 0 {
		if _, err := fm.Add(in.cfg.Forwards); err != nil {
			return err
		}
	}
	if in.cfg.ControlDir != "" {
		srv, err := control.Listen(control.ServerConfig{
			Path:    control.SocketPath(in.cfg.ControlDir, in.cfg.Name),
			Backend: backend{in},
			Logger:  in.log,
		})
		if err != nil {
			return err
		}
		in.control = srv
	}
	return nil
}

// closeExtras stops the control socket first (no view outlives the
// instance), then the forwards and the recording.
func (in *Instance) closeExtras() error {
	var errs []error
	if in.control != nil {
		errs = append(errs, in.control.Close())
		in.control = nil
	}
	if in.Forwards != nil {
		errs = append(errs, in.Forwards.Close())
	}
	if in.pcap != nil {
		errs = append(errs, in.pcap.close(in))
		in.pcap = nil
	}
	return errors.Join(errs...)
}

// ControlPath returns the control socket's path, or "" when none is
// served.
func (in *Instance) ControlPath() string {
	if in.control == nil {
		return ""
	}
	return in.control.Path()
}

// recorder writes every packet of a tap to a pcap file.
type recorder struct {
	sub  *capture.Subscription
	f    io.WriteCloser
	done sync.WaitGroup
	err  error
}

// startPcap records from tap to cfg.PcapPath, if set.
func (in *Instance) startPcap(tap *capture.Endpoint) error {
	if in.cfg.PcapPath == "" {
		return nil
	}
	var f io.WriteCloser = os.Stdout
	if in.cfg.PcapPath != "-" {
		file, err := os.OpenFile(in.cfg.PcapPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("--pcap: %w", err)
		}
		f = file
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	pw, err := capture.NewPcapWriter(bw, 0)
	if err != nil {
		f.Close()
		return fmt.Errorf("--pcap %s: %w", in.cfg.PcapPath, err)
	}
	r := &recorder{sub: tap.Subscribe(nil, 0, 1<<16), f: f}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case p, ok := <-r.sub.C():
				if !ok {
					return
				}
				if r.err == nil {
					r.err = pw.WritePacket(p)
				}
			case <-tick.C:
				if r.err == nil {
					r.err = bw.Flush()
				}
			}
		}
	}()
	in.pcap = r
	// Flushed and closed by close: wrap f so it sees the buffer first.
	r.f = flushCloser{bw, f}
	return nil
}

type flushCloser struct {
	bw *bufio.Writer
	f  io.Closer
}

func (fc flushCloser) Write(b []byte) (int, error) { return fc.bw.Write(b) }

func (fc flushCloser) Close() error {
	err := fc.bw.Flush()
	if fc.f != os.Stdout {
		return errors.Join(err, fc.f.Close())
	}
	return err
}

func (r *recorder) close(in *Instance) error {
	r.sub.Close()
	r.done.Wait()
	if d := r.sub.Dropped(); d > 0 {
		in.log.Warn("--pcap: packets lost (the file could not be written fast enough)", "dropped", d)
	}
	err := errors.Join(r.err, r.f.Close())
	if err != nil {
		return fmt.Errorf("--pcap %s: %w", in.cfg.PcapPath, err)
	}
	return nil
}

// hidePaths are the directories the sandbox must not see into: the
// control socket directory, created now so it can be covered.
func (in *Instance) hidePaths() []string {
	if in.cfg.ControlDir == "" {
		return nil
	}
	if err := os.MkdirAll(in.cfg.ControlDir, 0o700); err != nil {
		return nil
	}
	return []string{in.cfg.ControlDir}
}
