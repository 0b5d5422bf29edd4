package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// FirewallBackend is implemented by backends with a firewall: the
// iptables, iptables-save, iptables-restore, ipset and conntrack
// endpoints. See docs/CONTROL.md, "Firewall". The server has checked
// every family: it is 4 or 6.
type FirewallBackend interface {
	// IPTables runs one iptables (family 4) or ip6tables (6) command
	// line, without the program name, and returns what it prints.
	IPTables(family int, args []string) (string, error)
	// IPTablesSave returns iptables-save text, with counters if asked.
	IPTablesSave(family int, counters bool) (string, error)
	// IPTablesRestore replaces the tables in req.Text atomically, or
	// with req.Test only validates it.
	IPTablesRestore(req IPTablesRestoreRequest) error
	// IPSet runs an ipset command line, without the program name.
	IPSet(args []string) (string, error)
	// Conntrack lists the tracked flows.
	Conntrack() ([]Flow, error)
}

// IPTablesRequest is the body of POST /v1/iptables.
type IPTablesRequest struct {
	// Family is 4 (iptables) or 6 (ip6tables); 0 means 4.
	Family int `json:"family"`
	// Args is the command line without "iptables".
	Args []string `json:"args"`
}

// IPTablesRestoreRequest is the body of POST /v1/iptables-restore.
type IPTablesRestoreRequest struct {
	// Family is 4 or 6; 0 means 4.
	Family int `json:"family"`
	// Text is iptables-save text.
	Text string `json:"text"`
	// Test only validates (iptables-restore --test).
	Test bool `json:"test,omitempty"`
	// NoFlush keeps the existing rules of the tables in Text (-n).
	NoFlush bool `json:"noflush,omitempty"`
	// Counters restores [packets:bytes] counters (-c).
	Counters bool `json:"counters,omitempty"`
}

// IPSetRequest is the body of POST /v1/ipset.
type IPSetRequest struct {
	// Args is the command line without "ipset".
	Args []string `json:"args,omitempty"`
	// Restore, instead of Args, is "ipset restore" input: one command
	// per line (create, add, del, flush, destroy), run in order; the
	// first failing line stops it and is named in the error.
	Restore string `json:"restore,omitempty"`
}

// Output is the answer of the command endpoints: what the command
// printed.
type Output struct {
	Output string `json:"output"`
}

// Flow is one tracked connection (GET /v1/conntrack).
type Flow struct {
	// Family is 4 or 6.
	Family int `json:"family"`
	// Protocol is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58
	// ICMPv6).
	Protocol uint8 `json:"protocol"`
	// State is the TCP state ("ESTABLISHED", "SYN_SENT", ...); empty for
	// other protocols.
	State string `json:"state,omitempty"`
	// Orig is the tuple of the first packet, Reply that of replies
	// (after NAT: a DNAT shows as Reply.Src differing from Orig.Dst).
	Orig  FlowTuple `json:"orig"`
	Reply FlowTuple `json:"reply"`
	// TimeoutNS is the time left before the flow expires.
	TimeoutNS    int64  `json:"timeout_ns"`
	OrigPackets  uint64 `json:"orig_packets"`
	OrigBytes    uint64 `json:"orig_bytes"`
	ReplyPackets uint64 `json:"reply_packets"`
	ReplyBytes   uint64 `json:"reply_bytes"`
	// Assured is set once replies were seen.
	Assured bool   `json:"assured"`
	Mark    uint32 `json:"mark"`
}

// FlowTuple is a flow's addresses and ports (ICMP: the echo ident in
// SrcPort).
type FlowTuple struct {
	Src     netip.Addr `json:"src"`
	Dst     netip.Addr `json:"dst"`
	SrcPort uint16     `json:"sport"`
	DstPort uint16     `json:"dport"`
}

// ParseFamily checks a request's family: 0 or 4 is 4 (IPv4), 6 is 6.
func ParseFamily(n int) (int, error) {
	switch n {
	case 0, 4:
		return 4, nil
	case 6:
		return 6, nil
	}
	return 0, fmt.Errorf("family %d: want 4 or 6", n)
}

func (s *Server) firewallRoutes(mux *http.ServeMux) {
	fb, ok := s.cfg.Backend.(FirewallBackend)
	if !ok {
		return
	}
	mux.HandleFunc("POST /v1/iptables", func(w http.ResponseWriter, r *http.Request) {
		var req IPTablesRequest
		if !decodeBody(w, r, &req) {
			return
		}
		f, err := ParseFamily(req.Family)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		out, err := fb.IPTables(f, req.Args)
		writeOutput(w, out, err)
	})
	mux.HandleFunc("GET /v1/iptables-save", func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if v := r.URL.Query().Get("family"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("query parameter family=%q: want 4 or 6", v))
				return
			}
		}
		f, err := ParseFamily(n)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		counters, err := boolParam(r, "counters")
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		out, err := fb.IPTablesSave(f, counters)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, Output{Output: out})
	})
	mux.HandleFunc("POST /v1/iptables-restore", func(w http.ResponseWriter, r *http.Request) {
		var req IPTablesRestoreRequest
		if !decodeBody(w, r, &req) {
			return
		}
		f, err := ParseFamily(req.Family)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		req.Family = f
		writeOutput(w, "", fb.IPTablesRestore(req))
	})
	mux.HandleFunc("POST /v1/ipset", func(w http.ResponseWriter, r *http.Request) {
		var req IPSetRequest
		if !decodeBody(w, r, &req) {
			return
		}
		if req.Restore != "" {
			writeOutput(w, "", ipsetRestore(fb, req.Restore))
			return
		}
		out, err := fb.IPSet(req.Args)
		writeOutput(w, out, err)
	})
	mux.HandleFunc("GET /v1/conntrack", func(w http.ResponseWriter, r *http.Request) {
		flows, err := fb.Conntrack()
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, orEmpty(flows))
	})
}

// ipsetRestore runs "ipset restore" input line by line.
func ipsetRestore(fb FirewallBackend, text string) error {
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || f[0] == "COMMIT" {
			continue
		}
		if _, err := fb.IPSet(f); err != nil {
			return fmt.Errorf("ipset restore: line %d: %w", i+1, err)
		}
	}
	return nil
}

// writeOutput answers a firewall command: its output, or its refusal
// (the tool's error text) as 400.
func writeOutput(w http.ResponseWriter, out string, err error) {
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, Output{Output: out})
}

// decodeBody decodes a JSON request body of at most 64 MiB (restore
// text and ipset batches can be large); on error it answers 400.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode request body: %w", err))
		return false
	}
	return true
}

// IPTables runs an iptables (family 4) or ip6tables (6) command line.
func (c *Client) IPTables(ctx context.Context, family int, args []string) (string, error) {
	var out Output
	err := c.do(ctx, http.MethodPost, "/v1/iptables", IPTablesRequest{Family: family, Args: orEmpty(args)}, &out)
	return out.Output, err
}

// IPTablesSave returns the iptables-save text of family 4 or 6.
func (c *Client) IPTablesSave(ctx context.Context, family int, counters bool) (string, error) {
	v := url.Values{}
	v.Set("family", strconv.Itoa(family))
	v.Set("counters", strconv.FormatBool(counters))
	var out Output
	err := c.do(ctx, http.MethodGet, "/v1/iptables-save?"+v.Encode(), nil, &out)
	return out.Output, err
}

// IPTablesRestore restores (or with req.Test validates) iptables-save
// text.
func (c *Client) IPTablesRestore(ctx context.Context, req IPTablesRestoreRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/iptables-restore", req, nil)
}

// IPSet runs an ipset command line.
func (c *Client) IPSet(ctx context.Context, args []string) (string, error) {
	var out Output
	err := c.do(ctx, http.MethodPost, "/v1/ipset", IPSetRequest{Args: orEmpty(args)}, &out)
	return out.Output, err
}

// IPSetRestore runs "ipset restore" input.
func (c *Client) IPSetRestore(ctx context.Context, text string) error {
	return c.do(ctx, http.MethodPost, "/v1/ipset", IPSetRequest{Restore: text}, nil)
}

// Conntrack lists the tracked flows.
func (c *Client) Conntrack(ctx context.Context) ([]Flow, error) {
	var out []Flow
	err := c.do(ctx, http.MethodGet, "/v1/conntrack", nil, &out)
	return out, err
}
