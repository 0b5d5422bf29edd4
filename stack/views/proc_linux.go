package views

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcIndex reads the sockets of a network namespace as ss does, from the
// namespace's /proc/PID/net/{tcp,tcp6,udp,udp6} tables (readable without
// entering the namespace, and by a process that may not ptrace the
// namespace's processes), and finds, as ss -p does, the processes that
// hold them: from their /proc/PID/fd links to "socket:[INODE]".
//
// A relayed flow has two ends: the stack's endpoint and the sandbox's
// socket, with mirrored addresses. Annotate looks up the sandbox side;
// Sockets lists the namespace's sockets themselves.
type ProcIndex struct {
	socks []Socket
	// v6onlyRead is set when the sockets came with V6Only (from
	// sock_diag) rather than from the tables, which lack it.
	v6onlyRead bool
	inodes     map[sockKey]uint64
	holders    map[uint64][]Process
	procErr    error
}

type sockKey struct {
	proto         string
	local, remote netip.AddrPort
}

// NewProcIndex indexes the sockets of the network namespace of process pid,
// reading procfs at procRoot (normally "/proc"). With processes it also
// finds the processes holding them; that part is best effort (a process
// this one may not ptrace hides its descriptors), and what kept it from
// completing is ProcessErr. An error means the tables could not be read.
func NewProcIndex(procRoot string, pid int, processes bool) (*ProcIndex, error) {
	x := &ProcIndex{inodes: map[sockKey]uint64{}, holders: map[uint64][]Process{}}
	base := filepath.Join(procRoot, strconv.Itoa(pid))
	for _, t := range []struct {
		file, proto string
		v6          bool
	}{{"tcp", "tcp", false}, {"tcp6", "tcp", true}, {"udp", "udp", false}, {"udp6", "udp", true}} {
		if err := x.readTable(filepath.Join(base, "net", t.file), t.proto, t.v6); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("views: sockets of pid %d: %w", pid, err)
		}
	}
	if processes {
		x.procErr = x.indexProcesses(procRoot, base, pid)
	}
	return x, nil
}

// NewSocketIndex indexes socks, the sockets of the network namespace of
// process pid as DiagSockets lists them (V6Only read, not inferred), and
// with processes finds their holders under procRoot as NewProcIndex does.
func NewSocketIndex(socks []Socket, procRoot string, pid int, processes bool) *ProcIndex {
	x := &ProcIndex{inodes: map[sockKey]uint64{}, holders: map[uint64][]Process{}, v6onlyRead: true}
	for _, s := range socks {
		x.add(s)
	}
	if processes {
		x.procErr = x.indexProcesses(procRoot, filepath.Join(procRoot, strconv.Itoa(pid)), pid)
	}
	return x
}

// add indexes one socket by its addresses (an unconnected one's peer is
// the zero value or unspecified).
func (x *ProcIndex) add(s Socket) {
	if s.Inode != 0 {
		peer := s.Peer
		if !peer.IsValid() {
			any := netip.IPv4Unspecified()
			if s.V6 {
				any = netip.IPv6Unspecified()
			}
			peer = netip.AddrPortFrom(any, 0)
		}
		x.inodes[sockKey{s.Netid, unmapAP(s.Local), unmapAP(peer)}] = s.Inode
	}
	if s.Peer.Port() == 0 && s.Peer.Addr().IsUnspecified() {
		s.Peer = netip.AddrPort{} // unconnected, as Socket has it
	}
	x.socks = append(x.socks, s)
}

// indexProcesses finds the holders of the indexed sockets among the
// processes in the namespace of pid.
func (x *ProcIndex) indexProcesses(procRoot, base string, pid int) error {
	ns, err := os.Readlink(filepath.Join(base, "ns", "net"))
	if err != nil {
		return fmt.Errorf("views: network namespace of pid %d: %w", pid, err)
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return fmt.Errorf("views: list %s: %w", procRoot, err)
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		if other, err := os.Readlink(filepath.Join(dir, "ns", "net")); err != nil || other != ns {
			continue
		}
		x.scanFDs(dir, p)
	}
	return nil
}

// ProcessErr says why the holders of the sockets could not be looked up,
// or is nil.
func (x *ProcIndex) ProcessErr() error { return x.procErr }

// SetHolders supplies the holders of the sockets, by inode, from another
// source (the sandbox's init, which may read what this process may not),
// and clears ProcessErr.
func (x *ProcIndex) SetHolders(h map[uint64][]Process) {
	x.holders, x.procErr = h, nil
}

// procStates are ss's names of the kernel's TCP states (the "st" column
// of /proc/net/tcp; UDP uses ESTABLISHED and CLOSE).
var procStates = [...]string{1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
	6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING"}

// readTable reads one /proc/net table:
// "sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode ...".
func (x *ProcIndex) readTable(path, proto string, v6 bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		s, ok := parseProcLine(sc.Text(), proto, v6)
		if !ok {
			continue
		}
		x.add(s)
	}
	return sc.Err()
}

// parseProcLine parses a row of a /proc/net table into a sandbox-side
// socket; ok is false for a row it does not understand.
func parseProcLine(line, proto string, v6 bool) (s Socket, ok bool) {
	fs := strings.Fields(line)
	if len(fs) < 10 {
		return s, false
	}
	l, err1 := parseProcAddr(fs[1])
	r, err2 := parseProcAddr(fs[2])
	st, err3 := strconv.ParseUint(fs[3], 16, 8)
	tx, rx, _ := strings.Cut(fs[4], ":")
	txq, err4 := strconv.ParseUint(tx, 16, 32)
	rxq, err5 := strconv.ParseUint(rx, 16, 32)
	ino, err6 := strconv.ParseUint(fs[9], 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil || st >= uint64(len(procStates)) || procStates[st] == "" {
		return s, false
	}
	s = Socket{Side: SideSandbox, Netid: proto, State: procStates[st], RecvQ: int(rxq), SendQ: int(txq),
		Local: l, Peer: r, V6: v6, Inode: ino}
	if s.State == "LISTEN" {
		// The kernel lists the accept queue as rx_queue and nothing
		// in tx_queue; ss's Send-Q (the backlog) is not in the table.
		s.SendQ = 0
	}
	return s, true
}

// Sockets returns the namespace's sockets (Side SideSandbox), sorted as
// SortSockets does, with their holders when the index has them.
func (x *ProcIndex) Sockets() []Socket {
	// Ports an IPv4 socket is bound to on any address: an IPv6 one
	// bound to any address and the same port must be IPV6_V6ONLY, or
	// the two binds would have conflicted.
	type port struct {
		proto string
		n     uint16
	}
	v4any := map[port]bool{}
	for _, s := range x.socks {
		if !s.V6 && s.Local.Addr().IsUnspecified() && s.Peer.Port() == 0 {
			v4any[port{s.Netid, s.Local.Port()}] = true
		}
	}
	out := make([]Socket, 0, len(x.socks))
	for _, s := range x.socks {
		if s.Inode != 0 {
			s.Processes = x.holders[s.Inode]
		}
		if !x.v6onlyRead {
			s.V6Only = s.V6 && s.Local.Addr().IsUnspecified() && v4any[port{s.Netid, s.Local.Port()}]
		}
		out = append(out, s)
	}
	SortSockets(out)
	return out
}

// parseProcAddr decodes "0100007F:0050": the address as 32-bit words in
// host byte order, then the port in hex. An IPv4
// address mapped into IPv6 stays mapped, as ss shows it.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("views: bad /proc/net address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("views: bad /proc/net address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("views: bad /proc/net port %q", s)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a, uint16(port)), nil
}

func (x *ProcIndex) scanFDs(dir string, pid int) {
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return
	}
	var comm string
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil {
			continue
		}
		s, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(fd.Name())
		if comm == "" {
			b, _ := os.ReadFile(filepath.Join(dir, "comm"))
			comm = strings.TrimSpace(string(b))
		}
		x.holders[ino] = append(x.holders[ino], Process{PID: pid, Command: comm, FD: n})
	}
}

// Lookup returns the inode and holders of the namespace's socket with the
// given addresses. An unconnected socket (remote unspecified) matches when
// no connected one does.
func (x *ProcIndex) Lookup(proto string, local, remote netip.AddrPort) (uint64, []Process) {
	k := sockKey{proto, unmapAP(local), unmapAP(remote)}
	ino, ok := x.inodes[k]
	if !ok {
		for _, any := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
			if ino, ok = x.inodes[sockKey{proto, k.local, netip.AddrPortFrom(any, 0)}]; ok {
				break
			}
		}
	}
	if !ok {
		return 0, nil
	}
	return ino, x.holders[ino]
}

// Annotate fills in the processes of each stack socket's sandbox side,
// whose addresses are the socket's mirrored.
func (x *ProcIndex) Annotate(socks []Socket) {
	for i := range socks {
		s := &socks[i]
		if !s.Peer.Addr().IsValid() {
			continue
		}
		s.Inode, s.Processes = x.Lookup(s.Netid, s.Peer, s.Local)
	}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
