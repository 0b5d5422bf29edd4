package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client talks to one instance's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// Connect finds a running instance in dir by name, or the only running
// one when name is "".
func Connect(ctx context.Context, dir, name string) (*Client, error) {
	if name != "" {
		if err := ValidateName(name); err != nil {
			return nil, err
		}
		return NewClient(SocketPath(dir, name)), nil
	}
	infos, _ := List(ctx, dir)
	switch len(infos) {
	case 0:
		return nil, fmt.Errorf("%w (looked in %s)", errNoInstance, dir)
	case 1:
		return NewClient(infos[0].Socket), nil
	}
	var names []string
	for _, in := range infos {
		names = append(names, in.Name)
	}
	return nil, fmt.Errorf("%d instances are running (%s): choose one with --name", len(infos), strings.Join(names, ", "))
}

// Path returns the socket path.
func (c *Client) Path() string { return c.path }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://tunstack"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.explain(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control: decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) explain(err error) error {
	return fmt.Errorf("control: no instance answers at %s: %w", c.path, err)
}

func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return &APIError{Status: resp.StatusCode, Message: e.Error, ExitStatus: e.ExitStatus}
	}
	return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("control: %s: %s", resp.Status, strings.TrimSpace(string(b)))}
}

// APIError is an error answer from the instance (the request reached
// it): Status is the HTTP status, Message the error text.
type APIError struct {
	Status  int
	Message string
	// ExitStatus is the emulated tool's exit status for the error (0 when
	// the server gave none).
	ExitStatus int
}

func (e *APIError) Error() string { return e.Message }

// Info describes the instance.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var in Info
	err := c.do(ctx, http.MethodGet, "/v1/info", nil, &in)
	return in, err
}

// Sockets lists the stack's sockets.
func (c *Client) Sockets(ctx context.Context, q SocketQuery) ([]Socket, error) {
	var out []Socket
	v := url.Values{}
	v.Set("processes", strconv.FormatBool(q.Processes))
	v.Set("tcp_info", strconv.FormatBool(q.TCPInfo))
	if q.Side != "" {
		v.Set("side", q.Side)
	}
	err := c.do(ctx, http.MethodGet, "/v1/sockets?"+v.Encode(), nil, &out)
	return out, err
}

// Links lists the stack's interfaces.
func (c *Client) Links(ctx context.Context) ([]Link, error) {
	var out []Link
	err := c.do(ctx, http.MethodGet, "/v1/links", nil, &out)
	return out, err
}

// Routes lists the stack's routes.
func (c *Client) Routes(ctx context.Context) ([]Route, error) {
	var out []Route
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, &out)
	return out, err
}

// Forwards lists the port forwards.
func (c *Client) Forwards(ctx context.Context) ([]Forward, error) {
	var out []Forward
	err := c.do(ctx, http.MethodGet, "/v1/forwards", nil, &out)
	return out, err
}

// AddForwards adds forwards given in "tunstack run -p" syntax.
func (c *Client) AddForwards(ctx context.Context, specs []string) ([]Forward, error) {
	var out []Forward
	err := c.do(ctx, http.MethodPost, "/v1/forwards", AddForwardsRequest{Specs: specs}, &out)
	return out, err
}

// RemoveForward removes a forward by ID (its spec).
func (c *Client) RemoveForward(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/forwards/"+url.PathEscape(id), nil, nil)
}

// Capture opens a pcap stream (see docs/CONTROL.md); close it to stop the
// capture.
func (c *Client) Capture(ctx context.Context, req CaptureRequest) (io.ReadCloser, error) {
	v := url.Values{}
	if req.Filter != "" {
		v.Set("filter", req.Filter)
	}
	if req.Interface != "" {
		v.Set("interface", req.Interface)
	}
	if req.Count > 0 {
		v.Set("count", strconv.Itoa(req.Count))
	}
	if req.SnapLen > 0 {
		v.Set("snaplen", strconv.Itoa(req.SnapLen))
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tunstack/v1/capture?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, c.explain(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp.Body, nil
}
