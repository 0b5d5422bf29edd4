package views

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcIndex finds, as ss -p does, the processes of a network namespace that
// hold sockets: a socket's inode comes from the namespace's
// /proc/net/{tcp,tcp6,udp,udp6} tables, and the processes from their
// /proc/PID/fd links to "socket:[INODE]".
//
// A relayed flow has two ends: the stack's endpoint and the sandbox's
// socket, with mirrored addresses. Annotate looks up the sandbox side.
type ProcIndex struct {
	inodes  map[sockKey]uint64
	holders map[uint64][]Process
}

type sockKey struct {
	proto         string
	local, remote netip.AddrPort
}

// NewProcIndex indexes the sockets of the network namespace of process pid,
// reading procfs at procRoot (normally "/proc").
func NewProcIndex(procRoot string, pid int) (*ProcIndex, error) {
	x := &ProcIndex{inodes: map[sockKey]uint64{}, holders: map[uint64][]Process{}}
	base := filepath.Join(procRoot, strconv.Itoa(pid))
	for _, t := range []struct{ file, proto string }{{"tcp", "tcp"}, {"tcp6", "tcp"}, {"udp", "udp"}, {"udp6", "udp"}} {
		if err := x.readTable(filepath.Join(base, "net", t.file), t.proto); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	ns, err := os.Readlink(filepath.Join(base, "ns", "net"))
	if err != nil {
		return nil, fmt.Errorf("views: network namespace of pid %d: %w", pid, err)
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("views: list %s: %w", procRoot, err)
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
	return x, nil
}

// readTable reads one /proc/net table: "sl local rem st ... inode".
func (x *ProcIndex) readTable(path, proto string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 {
			continue
		}
		l, err1 := parseProcAddr(fs[1])
		r, err2 := parseProcAddr(fs[2])
		ino, err3 := strconv.ParseUint(fs[9], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || ino == 0 {
			continue
		}
		x.inodes[sockKey{proto, l, r}] = ino
	}
	return sc.Err()
}

// parseProcAddr decodes "0100007F:0050": the address as 32-bit words in
// host byte order (little-endian here), then the port in hex.
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
		binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
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
