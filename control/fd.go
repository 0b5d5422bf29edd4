package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tunstack/tunstack/fdpass"
)

// File descriptor handover (POST /v1/fd): a client asks for a socket on
// the instance's stack and receives it as a file descriptor over the
// control socket (SCM_RIGHTS). See docs/CONTROL.md, "File descriptors".
//
// The exchange on the unix stream connection:
//
//	client: POST /v1/fd HTTP/1.1, Content-Type: application/json,
//	        body {"op": "connect"|"listen"|"udp", "addr": ..., "bind": ...}
//	server: on error, an ordinary JSON error response (4xx/5xx);
//	        on success "HTTP/1.1 101 Switching Protocols" with
//	        Upgrade: tunstack-fd and X-Tunstack-Local / X-Tunstack-Remote
//	        headers, then one byte ("F") carrying the fd in an SCM_RIGHTS
//	        control message, then it closes the connection.
//
// The client must read the response with recvmsg (room for one fd on
// every call), not read: the kernel may deliver the byte with the fd in
// the same call as the end of the headers, and read would drop the fd.

// FD operations.
const (
	// FDConnect dials a TCP connection from the stack's gateway address;
	// the fd is a SOCK_STREAM socket.
	FDConnect = "connect"
	// FDListen listens on the stack (by default on the gateway address);
	// the fd is a SOCK_SEQPACKET socket passing one fd per accepted
	// connection.
	FDListen = "listen"
	// FDUDP makes a UDP socket: connected to Addr when it is set (bare
	// payloads), else bound to Bind (each message with an address
	// header); the fd is a SOCK_SEQPACKET socket.
	FDUDP = "udp"
)

// FDUpgrade is the Upgrade header of a successful handover.
const FDUpgrade = "tunstack-fd"

// FDRequest is the body of POST /v1/fd.
type FDRequest struct {
	// Op is FDConnect, FDListen or FDUDP.
	Op string `json:"op"`
	// Addr is HOST:PORT to connect to (connect, connected udp) or to
	// listen on (listen). An empty HOST means the sandbox's address for
	// connect and udp, the gateway's for listen.
	Addr string `json:"addr,omitempty"`
	// Bind is the local HOST:PORT for udp (default: the gateway's address
	// and, with Addr set, an ephemeral port).
	Bind string `json:"bind,omitempty"`
}

// FDInfo describes a handed-over socket.
type FDInfo struct {
	// Local is the socket's address on the stack.
	Local string
	// Remote is the peer's address ("" for listeners and unconnected UDP).
	Remote string
}

// FDBackend is implemented by backends that hand out sockets. A backend
// without it answers POST /v1/fd with 501.
type FDBackend interface {
	// FD creates the socket req asks for and exports it (stack's
	// File). The caller closes the file after passing it on.
	FD(ctx context.Context, req FDRequest) (*os.File, FDInfo, error)
}

// fdMarker is the byte the fd travels with.
const fdMarker = 'F'

// handleFD serves POST /v1/fd.
func (s *Server) handleFD(w http.ResponseWriter, r *http.Request) {
	// An error answer ends the connection too, so a client reading until
	// the fd or EOF does not wait on a kept-alive connection.
	w.Header().Set("Connection", "close")
	fb, ok := s.cfg.Backend.(FDBackend)
	if !ok {
		writeError(w, http.StatusNotImplemented, errors.New("this instance does not hand out file descriptors"))
		return
	}
	var req FDRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode request body: %w", err))
		return
	}
	switch req.Op {
	case FDConnect, FDListen, FDUDP:
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("op %q: want %q, %q or %q", req.Op, FDConnect, FDListen, FDUDP))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("connection cannot be taken over"))
		return
	}
	f, info, err := fb.FD(r.Context(), req)
	if err != nil {
		code := http.StatusBadGateway
		var re *RequestError
		if errors.As(err, &re) {
			code = http.StatusBadRequest
		}
		writeError(w, code, err)
		return
	}
	defer f.Close() // the client's copy keeps the socket open
	conn, brw, err := hj.Hijack()
	if err != nil {
		s.cfg.Logger.Debug("control: fd handover: hijack", "err", err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		s.cfg.Logger.Debug("control: fd handover: not a unix connection")
		return
	}
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n", FDUpgrade)
	fmt.Fprintf(&hdr, "X-Tunstack-Local: %s\r\n", info.Local)
	if info.Remote != "" {
		fmt.Fprintf(&hdr, "X-Tunstack-Remote: %s\r\n", info.Remote)
	}
	hdr.WriteString("\r\n")
	brw.Writer.Reset(uc) // drop anything buffered for the old response
	if _, err := uc.Write(hdr.Bytes()); err != nil {
		s.cfg.Logger.Debug("control: fd handover: write header", "err", err)
		return
	}
	if err := fdpass.Send(uc, []byte{fdMarker}, f); err != nil {
		s.cfg.Logger.Debug("control: fd handover: send fd", "err", err)
	}
}

// FD asks the instance for a socket and returns it as a file: a unix
// stream socket for connect, a seqpacket socket for listen and udp (see
// stack.Socket.File for what flows on each).
func (c *Client) FD(ctx context.Context, req FDRequest) (*os.File, FDInfo, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, FDInfo{}, err
	}
	hreq, err := http.NewRequest(http.MethodPost, "http://tunstack/v1/fd", bytes.NewReader(body))
	if err != nil {
		return nil, FDInfo{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, FDInfo{}, c.explain(err)
	}
	uc := nc.(*net.UnixConn)
	defer uc.Close()
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := hreq.Write(uc); err != nil {
		if ctx.Err() != nil {
			return nil, FDInfo{}, ctx.Err()
		}
		return nil, FDInfo{}, fmt.Errorf("control: fd handover: send request: %w", err)
	}

	// Read with recvmsg until the headers end and the fd has arrived.
	var data []byte
	var fd = -1
	buf := make([]byte, 4096)
	for {
		n, got, err := fdpass.ReadMsg(uc, buf)
		if len(got) > 0 {
			if fd >= 0 {
				syscall.Close(fd)
			}
			fd = got[0]
			for _, extra := range got[1:] {
				syscall.Close(extra)
			}
		}
		data = append(data, buf[:n]...)
		if fd >= 0 || err != nil || n == 0 {
			if err != nil && fd < 0 && len(data) == 0 {
				if ctx.Err() != nil {
					return nil, FDInfo{}, ctx.Err()
				}
				return nil, FDInfo{}, fmt.Errorf("control: fd handover: %w", err)
			}
			break
		}
		if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 && !bytes.HasPrefix(data, []byte("HTTP/1.1 101")) {
			break // an error response: read its body below
		}
	}
	resp, rerr := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(data), uc)), nil)
	if rerr != nil {
		if fd >= 0 {
			syscall.Close(fd)
		}
		return nil, FDInfo{}, fmt.Errorf("control: fd handover: bad response: %w", rerr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		if fd >= 0 {
			syscall.Close(fd)
		}
		return nil, FDInfo{}, responseError(resp)
	}
	if fd < 0 {
		return nil, FDInfo{}, errors.New("control: fd handover: the instance sent no file descriptor")
	}
	info := FDInfo{Local: resp.Header.Get("X-Tunstack-Local"), Remote: resp.Header.Get("X-Tunstack-Remote")}
	name := "tunstack-" + req.Op + ":" + strings.TrimSpace(info.Local+"->"+info.Remote)
	return os.NewFile(uintptr(fd), name), info, nil
}
