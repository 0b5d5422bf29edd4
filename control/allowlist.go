package control

import (
	"context"
	"errors"
	"net/http"
)

// AllowlistBackend is implemented by backends with an egress allowlist
// (run --allow-host): GET and POST /v1/allow-hosts. Patterns travel in
// --allow-host syntax. See docs/CONTROL.md, "Egress allowlist".
type AllowlistBackend interface {
	// AllowHosts lists the allowlist's patterns.
	AllowHosts() ([]string, error)
	// ChangeAllowHost adds (allow) or removes (deny) one pattern.
	ChangeAllowHost(pattern string, allow bool) error
}

// AllowHostsRequest is the body of POST /v1/allow-hosts.
type AllowHostsRequest struct {
	// Action is "allow" (add the pattern) or "deny" (remove it).
	Action string `json:"action"`
	// Pattern is one --allow-host pattern.
	Pattern string `json:"pattern"`
}

// AllowHosts is the answer of the allow-hosts endpoints: the patterns
// now in force.
type AllowHosts struct {
	Patterns []string `json:"patterns"`
}

func (s *Server) allowlistRoutes(mux *http.ServeMux) {
	backend := func(w http.ResponseWriter) (AllowlistBackend, bool) {
		ab, ok := s.cfg.Backend.(AllowlistBackend)
		if !ok {
			writeError(w, http.StatusNotImplemented, errors.New("this instance has no egress allowlist"))
		}
		return ab, ok
	}
	list := func(w http.ResponseWriter, ab AllowlistBackend) {
		ps, err := ab.AllowHosts()
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, AllowHosts{Patterns: orEmpty(ps)})
	}
	mux.HandleFunc("GET /v1/allow-hosts", func(w http.ResponseWriter, r *http.Request) {
		if ab, ok := backend(w); ok {
			list(w, ab)
		}
	})
	mux.HandleFunc("POST /v1/allow-hosts", func(w http.ResponseWriter, r *http.Request) {
		ab, ok := backend(w)
		if !ok {
			return
		}
		var req AllowHostsRequest
		if !decodeBody(w, r, &req) {
			return
		}
		if req.Action != "allow" && req.Action != "deny" {
			writeError(w, http.StatusBadRequest, errors.New(`"action" must be "allow" or "deny"`))
			return
		}
		if err := ab.ChangeAllowHost(req.Pattern, req.Action == "allow"); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		list(w, ab)
	})
}

// AllowHosts lists the instance's allowlist patterns.
func (c *Client) AllowHosts(ctx context.Context) ([]string, error) {
	var out AllowHosts
	err := c.do(ctx, http.MethodGet, "/v1/allow-hosts", nil, &out)
	return out.Patterns, err
}

// ChangeAllowHost adds (allow) or removes (deny) one pattern and returns
// the patterns now in force.
func (c *Client) ChangeAllowHost(ctx context.Context, pattern string, allow bool) ([]string, error) {
	req := AllowHostsRequest{Action: "deny", Pattern: pattern}
	if allow {
		req.Action = "allow"
	}
	var out AllowHosts
	err := c.do(ctx, http.MethodPost, "/v1/allow-hosts", req, &out)
	return out.Patterns, err
}
