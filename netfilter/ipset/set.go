// Package ipset implements the hash:ip and hash:net address sets of
// Linux's ipset, for iptables' -m set --match-set. A lookup costs one
// hash probe per distinct prefix length in the set, whatever its size.
package ipset

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
)

// Type is a set type.
type Type uint8

const (
	// HashIP holds single addresses.
	HashIP Type = iota
	// HashNet holds networks (CIDR prefixes).
	HashNet
)

func (t Type) String() string {
	if t == HashNet {
		return "hash:net"
	}
	return "hash:ip"
}

// ParseType parses "hash:ip" or "hash:net".
func ParseType(s string) (Type, error) {
	switch s {
	case "hash:ip":
		return HashIP, nil
	case "hash:net":
		return HashNet, nil
	}
	return 0, fmt.Errorf("unknown set type %q (supported: hash:ip, hash:net)", s)
}

// Family is the address family of a set's members.
type Family uint8

const (
	// Inet holds IPv4 addresses.
	Inet Family = iota
	// Inet6 holds IPv6 addresses.
	Inet6
)

func (f Family) String() string {
	if f == Inet6 {
		return "inet6"
	}
	return "inet"
}

func (f Family) bits() int {
	if f == Inet6 {
		return 128
	}
	return 32
}

// DefaultMaxElem is ipset's default maximum number of entries.
const DefaultMaxElem = 65536

// Options are the creation options of a set.
type Options struct {
	Family   Family
	HashSize int
	MaxElem  int
}

// Set is one address set. Its methods are safe for concurrent use;
// Contains does not allocate.
type Set struct {
	name string
	typ  Type
	opts Options

	mu sync.RWMutex // guards v4, v6, lens, n
	// v4 maps a masked address to presence, one map per prefix length
	// present; lens lists those lengths longest first so that lookups
	// stop at the first, most specific hit.
	// +checklocks:mu
	v4 [33]map[uint32]struct{}
	// +checklocks:mu
	v6 [129]map[netip.Addr]struct{}
	// +checklocks:mu
	lens []int
	// +checklocks:mu
	n int
}

// New returns an empty set.
func New(name string, typ Type, opts Options) (*Set, error) {
	if name == "" || len(name) > 31 {
		return nil, fmt.Errorf("ipset: bad set name %q (1 to 31 characters)", name)
	}
	if opts.HashSize == 0 {
		opts.HashSize = 1024
	}
	if opts.MaxElem == 0 {
		opts.MaxElem = DefaultMaxElem
	}
	if opts.MaxElem < 0 || opts.HashSize < 0 {
		return nil, fmt.Errorf("ipset: bad size options for %q", name)
	}
	return &Set{name: name, typ: typ, opts: opts}, nil
}

// Name returns the set's name.
func (s *Set) Name() string { return s.name }

// Type returns the set's type.
func (s *Set) Type() Type { return s.typ }

// Family returns the set's family.
func (s *Set) Family() Family { return s.opts.Family }

// Options returns the creation options.
func (s *Set) Options() Options { return s.opts }

// Len returns the number of entries.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.n
}

// ParseEntry parses an entry as ipset add/del/test take it: an address or,
// for hash:net, ADDR/LEN.
func (s *Set) ParseEntry(e string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if a, aerr := netip.ParseAddr(e); aerr == nil {
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = netip.ParsePrefix(e); err != nil {
		return p, fmt.Errorf("ipset: syntax error: %q is not a valid IP address or network", e)
	}
	if p.Addr().Zone() != "" || p.Addr().Is4() != (s.opts.Family == Inet) {
		return p, fmt.Errorf("ipset: %q is not an %s address", e, s.opts.Family)
	}
	if s.typ == HashNet && p.Bits() == 0 {
		return p, fmt.Errorf("ipset: the value of the CIDR parameter of %q is out of range", e)
	}
	if s.typ == HashIP && p.Bits() != p.Addr().BitLen() {
		return p, fmt.Errorf("ipset: %q: hash:ip takes single addresses", e)
	}
	return p.Masked(), nil
}

// ErrExist is returned by Add for a present entry and by Del for an
// absent one, unless the -exist flag is given.
type ErrExist struct{ msg string }

func (e *ErrExist) Error() string { return e.msg }

// Add adds p. With exist, adding a present entry is not an error.
func (s *Set) Add(p netip.Prefix, exist bool) error {
	if err := s.checkPrefix(p); err != nil {
		return err
	}
	p = p.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.has(p) {
		if exist {
			return nil
		}
		return &ErrExist{fmt.Sprintf("ipset: element %s is already added to set %s", p, s.name)}
	}
	if s.n >= s.opts.MaxElem {
		return fmt.Errorf("ipset: hash is full, cannot add more elements to %s (maxelem %d)", s.name, s.opts.MaxElem)
	}
	b := p.Bits()
	if s.opts.Family == Inet {
		if s.v4[b] == nil {
			s.v4[b] = make(map[uint32]struct{})
			s.addLen(b)
		}
		s.v4[b][u32(p.Addr())] = struct{}{}
	} else {
		if s.v6[b] == nil {
			s.v6[b] = make(map[netip.Addr]struct{})
			s.addLen(b)
		}
		s.v6[b][p.Addr()] = struct{}{}
	}
	s.n++
	return nil
}

// Del removes p. With exist, removing an absent entry is not an error.
func (s *Set) Del(p netip.Prefix, exist bool) error {
	if err := s.checkPrefix(p); err != nil {
		return err
	}
	p = p.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.has(p) {
		if exist {
			return nil
		}
		return &ErrExist{fmt.Sprintf("ipset: element %s is not in set %s", p, s.name)}
	}
	b := p.Bits()
	if s.opts.Family == Inet {
		delete(s.v4[b], u32(p.Addr()))
		if len(s.v4[b]) == 0 {
			s.v4[b] = nil
			s.delLen(b)
		}
	} else {
		delete(s.v6[b], p.Addr())
		if len(s.v6[b]) == 0 {
			s.v6[b] = nil
			s.delLen(b)
		}
	}
	s.n--
	return nil
}

// Flush removes every entry.
func (s *Set) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v4 = [33]map[uint32]struct{}{}
	s.v6 = [129]map[netip.Addr]struct{}{}
	s.lens = nil
	s.n = 0
}

// Contains reports whether a is in the set (in one of its networks).
func (s *Set) Contains(a netip.Addr) bool {
	if a.Is4() != (s.opts.Family == Inet) {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.opts.Family == Inet {
		v := u32(a)
		for _, b := range s.lens {
			if _, ok := s.v4[b][v&mask32(b)]; ok {
				return true
			}
		}
		return false
	}
	for _, b := range s.lens {
		p, _ := a.Prefix(b)
		if _, ok := s.v6[b][p.Addr()]; ok {
			return true
		}
	}
	return false
}

// Entries returns the entries, sorted.
func (s *Set) Entries() []netip.Prefix {
	s.mu.RLock()
	out := make([]netip.Prefix, 0, s.n)
	for b, m := range s.v4 {
		for k := range m {
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}), b))
		}
	}
	for b, m := range s.v6 {
		for k := range m {
			out = append(out, netip.PrefixFrom(k, b))
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out
}

func (s *Set) checkPrefix(p netip.Prefix) error {
	if !p.IsValid() || p.Addr().Is4() != (s.opts.Family == Inet) {
		return fmt.Errorf("ipset: %s is not an %s entry for set %s", p, s.opts.Family, s.name)
	}
	if s.typ == HashIP && p.Bits() != s.opts.Family.bits() {
		return fmt.Errorf("ipset: %s: set %s (hash:ip) takes single addresses", p, s.name)
	}
	if s.typ == HashNet && p.Bits() == 0 {
		return fmt.Errorf("ipset: %s: prefix length 0 is out of range for hash:net", p)
	}
	return nil
}

func (s *Set) has(p netip.Prefix) bool {
	if s.opts.Family == Inet {
		_, ok := s.v4[p.Bits()][u32(p.Addr())]
		return ok
	}
	_, ok := s.v6[p.Bits()][p.Addr()]
	return ok
}

func (s *Set) addLen(b int) {
	s.lens = append(s.lens, b)
	sort.Sort(sort.Reverse(sort.IntSlice(s.lens)))
}

func (s *Set) delLen(b int) {
	for i, l := range s.lens {
		if l == b {
			s.lens = append(s.lens[:i:i], s.lens[i+1:]...)
			return
		}
	}
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func mask32(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}
