package slirp4netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/tunstack/tunstack/stack/forward"
)

// maxRequest is slirp4netns's request buffer: a request of this size or
// more is refused as too large.
const maxRequest = 4096

// requestTimeout bounds how long a client may take to send its request.
const requestTimeout = 10 * time.Second

// Forwarder starts and stops port forwards (a *forward.Manager).
type Forwarder interface {
	Add(specs []forward.Spec) ([]forward.Info, error)
	Remove(id string) error
}

// API answers slirp4netns API requests with a Forwarder's forwards. Its ids
// count from 1 and are never reused, as slirp4netns's are.
type API struct {
	fw    Forwarder
	guest netip.Addr
	log   *slog.Logger

	// mu guards next and fwds, and serialises requests as slirp4netns
	// does.
	mu   sync.Mutex
	next int
	fwds map[int]hostfwd
}

// hostfwd is one forward as list_hostfwd reports it (field order as
// slirp4netns writes them).
type hostfwd struct {
	ID        int    `json:"id"`
	Proto     string `json:"proto"`
	HostAddr  string `json:"host_addr"`
	HostPort  int    `json:"host_port"`
	GuestAddr string `json:"guest_addr"`
	GuestPort int    `json:"guest_port"`
	fwdID     string
}

// NewAPI returns an API adding forwards to fw towards guest, the sandbox's
// IPv4 address (the default guest_addr).
func NewAPI(fw Forwarder, guest netip.Addr, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{fw: fw, guest: guest, log: log, next: 1, fwds: map[int]hostfwd{}}
}

// errReply is slirp4netns's error reply.
func errReply(desc string) []byte {
	b, _ := json.Marshal(map[string]map[string]string{"error": {"desc": "bad request: " + desc}})
	return b
}

// Handle answers one request.
func (a *API) Handle(req []byte) []byte {
	var v any
	if err := json.Unmarshal(req, &v); err != nil {
		return errReply("cannot parse JSON")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return errReply("json_object() failed")
	}
	exec, ok := obj["execute"].(string)
	if !ok {
		return errReply("no execute found")
	}
	args, _ := obj["arguments"].(map[string]any)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch exec {
	case "add_hostfwd":
		return a.add(args)
	case "list_hostfwd":
		return a.list()
	case "remove_hostfwd":
		return a.remove(args)
	}
	return errReply("unknown execute")
}

// number reads a JSON number as slirp4netns does: missing, not a number
// or out of int range reads 0; fractions are truncated.
func number(args map[string]any, key string) int {
	f, _ := args[key].(float64)
	if f < -1<<31 || f > 1<<31-1 {
		return 0
	}
	return int(f)
}

func (a *API) add(args map[string]any) []byte {
	bad := func(field string) []byte { return errReply("add_hostfwd: bad arguments." + field) }
	proto, _ := args["proto"].(string)
	if proto != "tcp" && proto != "udp" {
		return bad("proto")
	}
	hostAddr, _ := args["host_addr"].(string)
	if hostAddr == "" {
		hostAddr = "0.0.0.0"
	}
	host, err := netip.ParseAddr(hostAddr)
	if err != nil || !host.Is4() {
		return bad("host_addr")
	}
	hostPort := number(args, "host_port")
	if hostPort <= 0 || hostPort > 65535 {
		return bad("host_port")
	}
	guest := a.guest
	if s, _ := args["guest_addr"].(string); s != "" {
		if guest, err = netip.ParseAddr(s); err != nil || !guest.Is4() {
			return bad("guest_addr")
		}
	}
	guestPort := number(args, "guest_port")
	if guestPort <= 0 || guestPort > 65535 {
		return bad("guest_port")
	}
	if guest != a.guest {
		a.log.Warn("add_hostfwd: tunstack forwards to the sandbox address only", "guest_addr", guest, "sandbox", a.guest)
		return errReply("add_hostfwd: slirp_add_hostfwd failed")
	}
	spec := forward.Spec{Proto: proto, HostIP: host, HostPort: uint16(hostPort), SandboxPort: uint16(guestPort)}
	infos, err := a.fw.Add([]forward.Spec{spec})
	if err != nil || len(infos) != 1 {
		a.log.Warn("add_hostfwd failed", "forward", spec.String(), "err", err)
		return errReply("add_hostfwd: slirp_add_hostfwd failed")
	}
	id := a.next
	a.next++
	a.fwds[id] = hostfwd{ID: id, Proto: proto, HostAddr: host.String(), HostPort: hostPort,
		GuestAddr: guest.String(), GuestPort: guestPort, fwdID: infos[0].ID}
	return fmt.Appendf(nil, `{"return":{"id":%d}}`, id)
}

func (a *API) list() []byte {
	entries := make([]hostfwd, 0, len(a.fwds))
	for _, f := range a.fwds {
		entries = append(entries, f)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	b, _ := json.Marshal(map[string][]hostfwd{"entries": entries})
	return b
}

func (a *API) remove(args map[string]any) []byte {
	id := number(args, "id")
	f, ok := a.fwds[id]
	if !ok {
		return errReply("remove_hostfwd: bad arguments.id")
	}
	if err := a.fw.Remove(f.fwdID); err != nil {
		a.log.Warn("remove_hostfwd failed", "id", id, "err", err)
		return errReply("remove_hostfwd: slirp_remove_hostfwd failed")
	}
	delete(a.fwds, id)
	return []byte(`{"return":{}}`)
}

// Server serves an API on a unix socket: one request per connection.
type Server struct {
	api *API
	ln  net.Listener
	wg  sync.WaitGroup
	ctx context.Context
	// stop cancels ctx.
	stop context.CancelFunc
}

// Listen creates the socket at path (replacing a stale one, as
// slirp4netns does) and serves api on it until Close.
func Listen(path string, api *API) (*Server, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api socket %s: remove stale socket: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{api: api, ln: ln, ctx: ctx, stop: stop}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// handle reads one request (until the client half-closes, or a complete
// JSON value arrives, or maxRequest bytes), answers it and closes.
func (s *Server) handle(c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.SetDeadline(time.Now().Add(requestTimeout))
	req, err := readRequest(c)
	if err != nil {
		s.api.log.Debug("api: read request", "err", err)
		return
	}
	var rep []byte
	if len(req) >= maxRequest {
		rep = errReply("too large message")
	} else {
		s.api.log.Info("api: got request", "request", string(bytes.TrimSpace(req)))
		rep = s.api.Handle(req)
	}
	c.Write(rep)
	// Closing with unread input (a request too large) would reset the
	// connection and lose the reply: end ours, then drain theirs briefly.
	if uc, ok := c.(*net.UnixConn); ok {
		uc.CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	}
}

func readRequest(c net.Conn) ([]byte, error) {
	buf := make([]byte, 0, maxRequest)
	for len(buf) < maxRequest {
		n, err := c.Read(buf[len(buf):maxRequest])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) || (n > 0 && json.Valid(buf)) {
			return buf, nil
		}
		if err != nil {
			if len(buf) > 0 {
				return buf, nil // answer what came, as slirp4netns's one read does
			}
			return buf, err
		}
	}
	return buf, nil
}

// Close stops serving and waits for requests in progress.
func (s *Server) Close() error {
	s.stop()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}
