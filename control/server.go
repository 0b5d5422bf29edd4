package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Backend is what a control socket serves: the instance's views and
// controls. Its methods are called concurrently.
type Backend interface {
	// Info describes the instance.
	Info() Info
	// Sockets lists the stack's sockets.
	Sockets(ctx context.Context, q SocketQuery) ([]Socket, error)
	// Links lists the stack's interfaces.
	Links() []Link
	// Routes lists the stack's routes.
	Routes() []Route
	// Capture opens a capture; the caller closes it.
	Capture(req CaptureRequest) (CaptureStream, error)
	// Forwards lists the port forwards.
	Forwards() []Forward
	// AddForwards starts forwards given in "tunstack run -p" syntax, all
	// or none; a spec that does not parse is a *RequestError.
	AddForwards(specs []string) ([]Forward, error)
	// RemoveForward stops a forward by ID.
	RemoveForward(id string) error
}

// ServerConfig configures a control server.
type ServerConfig struct {
	// Path is the socket's path (see SocketPath).
	Path    string
	Backend Backend
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
}

// Server serves a control socket.
type Server struct {
	cfg  ServerConfig
	ln   net.Listener
	http *http.Server
	done chan struct{}
}

// Listen creates the control socket (mode 0600, in a 0700 directory). A
// socket left by a dead instance is replaced; a live one is an error
// naming the instance.
func Listen(cfg ServerConfig) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("control: ServerConfig.Backend is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := ensureDir(filepath.Dir(cfg.Path)); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(cfg.Path); err == nil {
		if c, err := net.DialTimeout("unix", cfg.Path, time.Second); err == nil {
			c.Close()
			name := trimSock(filepath.Base(cfg.Path))
			return nil, fmt.Errorf("control: instance name %q is in use (socket %s answers); choose another --name", name, cfg.Path)
		}
		os.Remove(cfg.Path)
	}
	// Only processes in our own network namespace are served (see
	// peerListener): a sandbox never is.
	own, err := ownNetNS()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s: %w", cfg.Path, err)
	}
	if err := os.Chmod(cfg.Path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: chmod %s: %w", cfg.Path, err)
	}
	s := &Server{cfg: cfg, ln: &peerListener{Listener: ln, own: own, log: cfg.Logger}, done: make(chan struct{})}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		s.http.Serve(s.ln)
	}()
	return s, nil
}

func trimSock(s string) string {
	if len(s) > 5 && s[len(s)-5:] == ".sock" {
		return s[:len(s)-5]
	}
	return s
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.cfg.Path }

// Close stops serving, ends open requests (capture streams) and removes
// the socket.
func (s *Server) Close() error {
	err := s.http.Close()
	<-s.done
	os.Remove(s.cfg.Path)
	return err
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	b := s.cfg.Backend
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Info())
	})
	mux.HandleFunc("GET /v1/sockets", func(w http.ResponseWriter, r *http.Request) {
		q := SocketQuery{}
		var err error
		if q.Processes, err = boolParam(r, "processes"); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if q.TCPInfo, err = boolParam(r, "tcp_info"); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		switch q.Side = r.URL.Query().Get("side"); q.Side {
		case "", SideStack, SideSandbox, SideAll:
		default:
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad side=%q: want %s, %s or %s", q.Side, SideStack, SideSandbox, SideAll))
			return
		}
		socks, err := b.Sockets(r.Context(), q)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, orEmpty(socks))
	})
	mux.HandleFunc("GET /v1/links", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, orEmpty(b.Links()))
	})
	mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, orEmpty(b.Routes()))
	})
	mux.HandleFunc("GET /v1/forwards", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, orEmpty(b.Forwards()))
	})
	mux.HandleFunc("POST /v1/forwards", s.addForwards)
	mux.HandleFunc("DELETE /v1/forwards/{id...}", func(w http.ResponseWriter, r *http.Request) {
		if err := b.RemoveForward(r.PathValue("id")); err != nil {
			writeError(w, http.StatusNotFound, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/capture", s.capture)
	s.firewallRoutes(mux)
	s.allowlistRoutes(mux)
	mux.HandleFunc("POST /v1/fd", s.handleFD)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see docs/CONTROL.md)", r.Method, r.URL.Path))
	})
	return mux
}

// AddForwardsRequest is the body of POST /v1/forwards.
type AddForwardsRequest struct {
	// Specs are forwards in "tunstack run -p" syntax.
	Specs []string `json:"specs"`
}

func (s *Server) addForwards(w http.ResponseWriter, r *http.Request) {
	var req AddForwardsRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode request body: %w", err))
		return
	}
	if len(req.Specs) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("no forwards in \"specs\""))
		return
	}
	infos, err := s.cfg.Backend.AddForwards(req.Specs)
	if err != nil {
		code := http.StatusConflict
		var re *RequestError
		if errors.As(err, &re) {
			code = http.StatusBadRequest
		}
		writeError(w, code, err)
		return
	}
	writeJSON(w, http.StatusCreated, infos)
}

// capture streams pcap until the client goes away, Count packets were
// sent, or the instance stops. The number of packets lost to a slow
// reader is sent in the X-Tunstack-Dropped trailer.
func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := CaptureRequest{Interface: q.Get("interface"), Filter: q.Get("filter")}
	var err error
	if req.Count, err = intParam(r, "count"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.SnapLen, err = intParam(r, "snaplen"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	sub, err := s.cfg.Backend.Capture(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	defer sub.Close()
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Trailer", "X-Tunstack-Dropped")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if err := sub.WriteHeader(w); err != nil {
		return
	}
	if fl != nil {
		fl.Flush()
	}
	sent := 0
	defer func() { w.Header().Set("X-Tunstack-Dropped", strconv.FormatUint(sub.Dropped(), 10)) }()
	for {
		ok, err := sub.WriteNext(r.Context(), w)
		if !ok || err != nil {
			return
		}
		sent++
		if req.Count > 0 && sent >= req.Count {
			return
		}
		// Flush when the queue is drained, so bursts go out in one
		// write and a lone packet without delay.
		if sub.Queued() == 0 && fl != nil {
			fl.Flush()
		}
	}
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query parameter %s=%q: want true or false", name, v)
	}
	return b, nil
}

func intParam(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("query parameter %s=%q: want a non-negative integer", name, v)
	}
	return n, nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	e := Error{Error: err.Error()}
	var se *StatusError
	if errors.As(err, &se) {
		e.ExitStatus = se.Status
	}
	writeJSON(w, code, e)
}
