package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A root instance confined to nobody (package harden) may not read the
// /proc/PID/fd of the sandbox's processes, which run as root, so ss -p
// could not name them. The sandbox's init can: it is root in the user
// namespace above the command's. It answers "who holds which socket" on a
// stream socket of its own to tunstack (fd 4), one JSON request and one
// JSON answer a line; nothing in the sandbox can reach that socket.

// Holder is a process holding a socket: the pid as the sandbox sees it
// (in its PID namespace), its command name and the descriptor.
type Holder struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	FD      int    `json:"fd"`
}

// ownersRequest is what tunstack asks init.
type ownersRequest struct {
	Op string `json:"op"` // "holders"
}

// ownersReply maps socket inodes to their holders.
type ownersReply struct {
	Holders map[uint64][]Holder `json:"holders,omitempty"`
	Error   string              `json:"error,omitempty"`
}

// ownerQueries is tunstack's end of init's owner socket.
type ownerQueries struct {
	mu   sync.Mutex // serialises request/answer pairs on conn
	conn net.Conn   // +checklocks:mu
	rd   *bufio.Reader
}

// ErrNoOwnerQueries is returned by SocketHolders for a sandbox without an
// init that answers them (an attached namespace).
var ErrNoOwnerQueries = errors.New("sandbox: no init to ask for socket holders")

// SocketHolders asks the sandbox's init which of its processes hold which
// sockets (by inode), for ss -p when this process may not read their
// /proc entries itself.
func (s *Sandbox) SocketHolders() (map[uint64][]Holder, error) {
	q := s.owners
	if q == nil {
		return nil, ErrNoOwnerQueries
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.conn.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := json.Marshal(ownersRequest{Op: "holders"})
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("sandbox: ask init for socket holders: %w", err)
	}
	line, err := q.rd.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("sandbox: read init's socket holders: %w", err)
	}
	var r ownersReply
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("sandbox: init's socket holders: %w", err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("sandbox: init: %s", r.Error)
	}
	return r.Holders, nil
}

// serveOwners answers tunstack's requests on f until it closes.
func serveOwners(f *os.File) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	for {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return
		}
		var req ownersRequest
		var r ownersReply
		if err := json.Unmarshal(line, &req); err != nil || req.Op != "holders" {
			r.Error = fmt.Sprintf("bad request %q", strings.TrimSpace(string(line)))
		} else {
			r.Holders = socketHolders("/proc")
		}
		b, _ := json.Marshal(r)
		if _, err := c.Write(append(b, '\n')); err != nil {
			return
		}
	}
}

// socketHolders scans procRoot for the processes' socket descriptors.
func socketHolders(procRoot string) map[uint64][]Holder {
	out := map[uint64][]Holder{}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := fmt.Sprintf("%s/%d/fd", procRoot, pid)
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		comm := ""
		for _, fd := range fds {
			link, err := os.Readlink(dir + "/" + fd.Name())
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err != nil {
				continue
			}
			n, _ := strconv.Atoi(fd.Name())
			if comm == "" {
				b, _ := os.ReadFile(fmt.Sprintf("%s/%d/comm", procRoot, pid))
				comm = strings.TrimSpace(string(b))
			}
			out[ino] = append(out[ino], Holder{PID: pid, Command: comm, FD: n})
		}
	}
	return out
}
