package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzBackend answers every endpoint without state, so inputs do not
// accumulate across fuzz iterations.
type fuzzBackend struct{ fakeBackend }

func (fuzzBackend) AddForwards(specs []string) ([]Forward, error) {
	return nil, &RequestError{Err: errors.New("fuzz: no forwards")}
}
func (fuzzBackend) IPTables(int, []string) (string, error)       { return "", nil }
func (fuzzBackend) IPTablesSave(int, bool) (string, error)       { return "", nil }
func (fuzzBackend) IPTablesRestore(IPTablesRestoreRequest) error { return nil }
func (fuzzBackend) IPSet([]string) (string, error)               { return "", nil }
func (fuzzBackend) Conntrack() ([]Flow, error)                   { return nil, nil }
func (fuzzBackend) FD(context.Context, FDRequest) (*os.File, FDInfo, error) {
	return nil, FDInfo{}, &RequestError{Err: errors.New("fuzz: no sockets")}
}

// v1Endpoints are the API's routes (docs/CONTROL.md); a fuzz input picks
// one and supplies the rest of the path, the query and the body.
var v1Endpoints = []struct{ method, path string }{
	{http.MethodGet, "/v1/info"},
	{http.MethodGet, "/v1/sockets"},
	{http.MethodGet, "/v1/links"},
	{http.MethodGet, "/v1/routes"},
	{http.MethodGet, "/v1/forwards"},
	{http.MethodPost, "/v1/forwards"},
	{http.MethodDelete, "/v1/forwards/"},
	{http.MethodGet, "/v1/capture"},
	{http.MethodPost, "/v1/iptables"},
	{http.MethodGet, "/v1/iptables-save"},
	{http.MethodPost, "/v1/iptables-restore"},
	{http.MethodPost, "/v1/ipset"},
	{http.MethodGet, "/v1/conntrack"},
	{http.MethodPost, "/v1/fd"},
}

// FuzzRequest sends every v1 endpoint arbitrary paths, queries and bodies
// over a real control socket: the server never panics or fails with a
// 5xx on a request the client got wrong, and keeps answering.
func FuzzRequest(f *testing.F) {
	for i := range v1Endpoints {
		f.Add(uint8(i), "", "", []byte(""))
	}
	f.Add(uint8(5), "", "", []byte(`{"specs":["8080:80"]}`))
	f.Add(uint8(6), "8080:80/tcp", "", []byte(""))
	f.Add(uint8(7), "", "count=3&snaplen=64&filter=tcp", []byte(""))
	f.Add(uint8(1), "", "processes=maybe", []byte(""))
	f.Add(uint8(8), "", "", []byte(`{"family":6,"args":["-S"]}`))
	f.Add(uint8(9), "", "family=5", []byte(""))
	f.Add(uint8(10), "", "", []byte(`{"family":4,"text":"*filter\nCOMMIT\n","test":true}`))
	f.Add(uint8(11), "", "", []byte(`{"restore":"create s hash:ip\nadd s 198.18.0.1\n"}`))
	f.Add(uint8(13), "", "", []byte(`{"op":"connect","addr":"198.18.0.1:80"}`))
	f.Add(uint8(13), "", "", []byte(`{"op":"listen","addr":":7000","extra":1}`))

	dir := filepath.Join(f.TempDir(), "tunstack")
	s, err := Listen(ServerConfig{Path: SocketPath(dir, "fuzz"), Backend: &fuzzBackend{fakeBackend{name: "fuzz"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	c := NewClient(s.Path())
	f.Cleanup(c.Close)

	f.Fuzz(func(t *testing.T, which uint8, rest, query string, body []byte) {
		ep := v1Endpoints[int(which)%len(v1Endpoints)]
		url := "http://tunstack" + ep.path + rest
		if query != "" {
			url += "?" + query
		}
		req, err := http.NewRequestWithContext(t.Context(), ep.method, url, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", ep.method, url, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		// Every failure is one the request caused, and says so in JSON;
		// 501 is the fake's missing capability, not a crash.
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
			t.Errorf("%s %s (body %q): status %d: %s", ep.method, url, body, resp.StatusCode, msg)
		}
		// net/http itself refuses a malformed request line in plain text
		// before any handler runs.
		malformed := strings.HasPrefix(string(msg), "400 Bad Request")
		if resp.StatusCode >= 400 && !malformed && !strings.Contains(string(msg), `"error"`) {
			t.Errorf("%s %s: status %d without a JSON error: %q", ep.method, url, resp.StatusCode, msg)
		}
		if _, err := c.Info(t.Context()); err != nil {
			t.Fatalf("the server stopped answering after %s %s (body %q): %v", ep.method, url, body, err)
		}
	})
}
