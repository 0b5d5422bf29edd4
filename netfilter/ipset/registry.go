package ipset

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Registry holds the named sets of one firewall.
type Registry struct {
	mu sync.Mutex // guards sets
	// +checklocks:mu
	sets map[string]*Set
	// inUse reports whether rules reference a set, which then cannot be
	// destroyed (as with the kernel's "in use by a kernel component").
	inUse func(name string) bool
}

// NewRegistry returns an empty registry. inUse may be nil.
func NewRegistry(inUse func(name string) bool) *Registry {
	return &Registry{sets: map[string]*Set{}, inUse: inUse}
}

// SetInUse replaces the in-use callback.
func (r *Registry) SetInUse(f func(string) bool) {
	r.mu.Lock()
	r.inUse = f
	r.mu.Unlock()
}

// Get returns the set called name, or nil.
func (r *Registry) Get(name string) *Set {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sets[name]
}

// Create creates a set. With exist, creating a set that exists with the
// same type and family is not an error.
func (r *Registry) Create(name string, typ Type, opts Options, exist bool) (*Set, error) {
	s, err := New(name, typ, opts)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.sets[name]; ok {
		if exist && old.typ == typ && old.opts.Family == s.opts.Family {
			return old, nil
		}
		return nil, fmt.Errorf("ipset: set %q already exists", name)
	}
	r.sets[name] = s
	return s, nil
}

// Destroy removes the set called name, or every set when name is "".
func (r *Registry) Destroy(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := []string{name}
	if name == "" {
		names = r.namesLocked()
	}
	for _, n := range names {
		if _, ok := r.sets[n]; !ok {
			return fmt.Errorf("ipset: the set with the given name %q does not exist", n)
		}
		if r.inUse != nil && r.inUse(n) {
			return fmt.Errorf("ipset: set %q cannot be destroyed: it is in use by a rule", n)
		}
	}
	for _, n := range names {
		delete(r.sets, n)
	}
	return nil
}

// Names returns the set names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.namesLocked()
}

func (r *Registry) namesLocked() []string {
	out := make([]string, 0, len(r.sets))
	for n := range r.sets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Exec runs an ipset command line (without the leading "ipset") and
// returns its output: create, add, del, test, list, flush, destroy, save.
func (r *Registry) Exec(args []string) (string, error) {
	exist := false
	var rest []string
	for _, a := range args {
		if a == "-exist" || a == "-!" {
			exist = true
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) == 0 {
		return "", errors.New("ipset: no command specified")
	}
	cmd, rest := rest[0], rest[1:]
	switch cmd {
	case "create", "-N", "n":
		if len(rest) < 2 {
			return "", fmt.Errorf("ipset %s: missing arguments", cmd)
		}
		return "", r.execCreate(rest, exist)
	case "add", "del", "test", "-A", "-D", "-T", "a", "d", "t":
		if len(rest) < 2 {
			return "", fmt.Errorf("ipset %s: missing arguments", cmd)
		}
		return r.execEntry(cmd, rest, exist)
	case "list", "-L", "l", "save", "-S":
		return r.execList(cmd, rest)
	case "flush", "-F", "f":
		return "", r.execFlush(rest)
	case "destroy", "-X", "x":
		name := ""
		if len(rest) > 0 {
			name = rest[0]
		}
		return "", r.Destroy(name)
	}
	return "", fmt.Errorf("ipset: unknown command %q", cmd)
}

// execCreate runs "create SET TYPE [OPTION VALUE]...".
func (r *Registry) execCreate(args []string, exist bool) error {
	typ, err := ParseType(args[1])
	if err != nil {
		return err
	}
	opts, err := parseCreateOptions(args[2:])
	if err != nil {
		return err
	}
	_, err = r.Create(args[0], typ, opts, exist)
	return err
}

// parseCreateOptions parses create's OPTION VALUE pairs.
func parseCreateOptions(args []string) (Options, error) {
	var opts Options
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			return opts, fmt.Errorf("ipset create: option %q needs a value", args[i])
		}
		name, v := args[i], args[i+1]
		switch name {
		case "family":
			switch v {
			case "inet", "ipv4":
				opts.Family = Inet
			case "inet6", "ipv6":
				opts.Family = Inet6
			default:
				return opts, fmt.Errorf("ipset create: unknown family %q", v)
			}
		case "timeout":
			n, err := parseTimeout(v)
			if err != nil {
				return opts, fmt.Errorf("ipset create: %w", err)
			}
			// "timeout 0" still enables timeout support, with
			// entries that never expire unless added with one.
			opts.Timeout, opts.HasTimeout = n, true
		case "hashsize", "maxelem":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return opts, fmt.Errorf("ipset create: bad %s %q", name, v)
			}
			if name == "hashsize" {
				opts.HashSize = n
			} else {
				opts.MaxElem = n
			}
		default:
			return opts, fmt.Errorf("ipset create: unknown option %q", name)
		}
	}
	return opts, nil
}

// execEntry runs "add|del|test SET ENTRY [timeout N]".
func (r *Registry) execEntry(cmd string, args []string, exist bool) (string, error) {
	s := r.Get(args[0])
	if s == nil {
		return "", fmt.Errorf("ipset %s: the set with the given name %q does not exist", cmd, args[0])
	}
	p, err := s.ParseEntry(args[1])
	if err != nil {
		return "", err
	}
	switch cmd {
	case "add", "-A", "a":
		return "", addEntry(s, p, args[2:], exist)
	case "del", "-D", "d":
		return "", s.Del(p, exist)
	}
	if s.Contains(p.Addr()) && p.Bits() == p.Addr().BitLen() || s.hasPrefix(p) {
		return fmt.Sprintf("%s is in set %s.\n", args[1], s.name), nil
	}
	return "", fmt.Errorf("ipset: %s is NOT in set %s", args[1], s.name)
}

// execList runs "list|save [SET] [-name|-terse]".
func (r *Registry) execList(cmd string, args []string) (string, error) {
	names := r.Names()
	terse := false
	for _, a := range args {
		switch a {
		case "-n", "-name", "-t", "-terse":
			terse = true
		default:
			if strings.HasPrefix(a, "-") {
				continue
			}
			if r.Get(a) == nil {
				return "", fmt.Errorf("ipset %s: the set with the given name %q does not exist", cmd, a)
			}
			names = []string{a}
		}
	}
	var b strings.Builder
	for i, n := range names {
		s := r.Get(n)
		if s == nil {
			continue
		}
		if cmd == "save" || cmd == "-S" {
			s.save(&b)
			continue
		}
		if i > 0 {
			b.WriteString("\n")
		}
		s.list(&b, terse)
	}
	return b.String(), nil
}

// execFlush runs "flush [SET]".
func (r *Registry) execFlush(args []string) error {
	if len(args) == 0 {
		for _, n := range r.Names() {
			if s := r.Get(n); s != nil { // not destroyed meanwhile
				s.Flush()
			}
		}
		return nil
	}
	s := r.Get(args[0])
	if s == nil {
		return fmt.Errorf("ipset flush: the set with the given name %q does not exist", args[0])
	}
	s.Flush()
	return nil
}

// addEntry runs "add SET ENTRY [timeout N]".
func addEntry(s *Set, p netip.Prefix, opts []string, exist bool) error {
	switch {
	case len(opts) == 0:
		return s.Add(p, exist)
	case len(opts) == 2 && opts[0] == "timeout":
		t, err := parseTimeout(opts[1])
		if err != nil {
			return fmt.Errorf("ipset add: %w", err)
		}
		return s.AddTimeout(p, t, exist)
	}
	return fmt.Errorf("ipset add: unknown options %q (supported: timeout N)", opts)
}

// parseTimeout parses a timeout in whole seconds, as ipset takes it.
func parseTimeout(v string) (time.Duration, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxTimeout {
		return 0, fmt.Errorf("bad timeout %q (0 to %d seconds)", v, MaxTimeout)
	}
	return time.Duration(n) * time.Second, nil
}

func (s *Set) hasPrefix(p netip.Prefix) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.has(p)
}

func (s *Set) header() string {
	h := fmt.Sprintf("family %s hashsize %d maxelem %d", s.opts.Family, s.opts.HashSize, s.opts.MaxElem)
	if s.opts.HasTimeout {
		h += fmt.Sprintf(" timeout %d", seconds(s.opts.Timeout))
	}
	return h
}

// seconds rounds a remaining lifetime up to whole seconds, as ipset
// lists them.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func (s *Set) list(b *strings.Builder, terse bool) {
	fmt.Fprintf(b, "Name: %s\nType: %s\nRevision: 0\nHeader: %s\nNumber of entries: %d\n", s.name, s.typ, s.header(), s.Len())
	if terse {
		return
	}
	b.WriteString("Members:\n")
	for _, e := range s.EntriesWithTimeout() {
		b.WriteString(s.entryString(e))
		b.WriteByte('\n')
	}
}

func (s *Set) save(b *strings.Builder) {
	fmt.Fprintf(b, "create %s %s %s\n", s.name, s.typ, s.header())
	for _, e := range s.EntriesWithTimeout() {
		fmt.Fprintf(b, "add %s %s\n", s.name, s.entryString(e))
	}
}

// entryString formats an entry as ipset lists it: the address (or
// network), then "timeout N" in a set with timeout support.
func (s *Set) entryString(e Entry) string {
	p := e.Prefix
	out := p.String()
	if p.Bits() == p.Addr().BitLen() {
		out = p.Addr().String()
	}
	if s.opts.HasTimeout {
		out += fmt.Sprintf(" timeout %d", seconds(e.Remaining))
	}
	return out
}
