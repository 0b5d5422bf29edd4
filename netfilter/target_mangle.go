package netfilter

import (
	"fmt"
	"strconv"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// actor is a non-terminating target: it changes the packet (or logs it)
// and evaluation continues with the next rule.
type actor interface {
	apply(p *Packet)
}

// Mark is -j MARK: mark = (mark & ^Mask) ^ Value, the kernel's xmark
// form to which --set-mark, --and-mark, --or-mark and --xor-mark map.
type Mark struct {
	Value, Mask uint32
}

// Name implements Target.
func (*Mark) Name() string { return "MARK" }

func (t *Mark) saveArgs(Family) []string {
	return []string{"--set-xmark", hex(t.Value) + "/" + hex(t.Mask)}
}

func xmarkList(v, m uint32) string {
	// In libxt_MARK's order: --set-mark 0 lists as "and 0x0" and
	// --set-xmark 0xffffffff as "or 0xffffffff".
	switch {
	case v == 0:
		return "and " + hex(^m)
	case v == m:
		return "or " + hex(v)
	case m == 0:
		return "xor " + hex(v)
	case m == 0xffffffff:
		return "set " + hex(v)
	}
	return "xset " + hex(v) + "/" + hex(m)
}

func (t *Mark) listInfo(Family, bool) string { return "MARK " + xmarkList(t.Value, t.Mask) }

func (*Mark) check(*Rule, Family, TableID) error { return nil }
func (*Mark) hooks() uint8                       { return 0 }
func (t *Mark) apply(p *Packet)                  { p.pkt.Mark = p.pkt.Mark&^t.Mask ^ t.Value }

// ConnmarkMode selects what -j CONNMARK does.
type ConnmarkMode uint8

const (
	// ConnmarkSet sets the connection mark: ct = (ct & ^Mask) ^ Value.
	ConnmarkSet ConnmarkMode = iota
	// ConnmarkSave copies the packet mark to the connection:
	// ct = (ct & ^CTMask) ^ (mark & NFMask).
	ConnmarkSave
	// ConnmarkRestore copies the connection mark to the packet:
	// mark = (mark & ^NFMask) ^ (ct & CTMask).
	ConnmarkRestore
)

// Connmark is -j CONNMARK.
type Connmark struct {
	Mode           ConnmarkMode
	Value, Mask    uint32
	NFMask, CTMask uint32
}

// Name implements Target.
func (*Connmark) Name() string { return "CONNMARK" }

func (t *Connmark) saveArgs(Family) []string {
	switch t.Mode {
	case ConnmarkSave:
		return []string{"--save-mark", "--nfmask", hex(t.NFMask), "--ctmask", hex(t.CTMask)}
	case ConnmarkRestore:
		return []string{"--restore-mark", "--nfmask", hex(t.NFMask), "--ctmask", hex(t.CTMask)}
	}
	return []string{"--set-xmark", hex(t.Value) + "/" + hex(t.Mask)}
}

func (t *Connmark) listInfo(Family, bool) string {
	// As libxt_CONNMARK: one mask when both are equal, else both (the
	// mask that is not applied with a "~").
	switch {
	case t.Mode == ConnmarkSave && t.NFMask == 0xffffffff && t.CTMask == 0xffffffff:
		return "CONNMARK save"
	case t.Mode == ConnmarkSave && t.NFMask == t.CTMask:
		return "CONNMARK save mask " + hex(t.NFMask)
	case t.Mode == ConnmarkSave:
		return "CONNMARK save nfmask " + hex(t.NFMask) + " ctmask ~" + hex(t.CTMask)
	case t.Mode == ConnmarkRestore && t.NFMask == 0xffffffff && t.CTMask == 0xffffffff:
		return "CONNMARK restore"
	case t.Mode == ConnmarkRestore && t.NFMask == t.CTMask:
		return "CONNMARK restore mask " + hex(t.CTMask)
	case t.Mode == ConnmarkRestore:
		return "CONNMARK restore ctmask " + hex(t.CTMask) + " nfmask ~" + hex(t.NFMask)
	}
	return "CONNMARK " + xmarkList(t.Value, t.Mask)
}

func (*Connmark) check(*Rule, Family, TableID) error { return nil }
func (*Connmark) hooks() uint8                       { return 0 }

func (t *Connmark) apply(p *Packet) {
	switch t.Mode {
	case ConnmarkSet:
		p.updateConnmark(t.Mask, t.Value)
	case ConnmarkSave:
		p.updateConnmark(t.CTMask, p.pkt.Mark&t.NFMask)
	case ConnmarkRestore:
		p.pkt.Mark = p.pkt.Mark&^t.NFMask ^ p.connmark()&t.CTMask
	}
}

// TTLMode selects what -j TTL / -j HL does.
type TTLMode uint8

const (
	// TTLSet sets the TTL (hop limit).
	TTLSet TTLMode = iota
	// TTLDec decrements it, stopping at 0.
	TTLDec
	// TTLInc increments it, stopping at 255.
	TTLInc
)

var ttlModeNames = [...]string{"set", "dec", "inc"}

// TTL is -j TTL (IPv4) or -j HL (IPv6), mangle table only.
type TTL struct {
	HL    bool
	Mode  TTLMode
	Value uint8
}

// Name implements Target.
func (t *TTL) Name() string {
	if t.HL {
		return "HL"
	}
	return "TTL"
}

func (t *TTL) saveArgs(Family) []string {
	opt := "--ttl-"
	if t.HL {
		opt = "--hl-"
	}
	return []string{opt + ttlModeNames[t.Mode], strconv.Itoa(int(t.Value))}
}

func (t *TTL) listInfo(Family, bool) string {
	word := [...]string{"set to", "decrement by", "increment by"}[t.Mode]
	return fmt.Sprintf("%s %s %d", t.Name(), word, t.Value)
}

func (t *TTL) check(_ *Rule, f Family, tb TableID) error {
	if t.HL != (f == IPv6) {
		return param(fmt.Errorf("target %q is not valid for %s (unknown option)", t.Name(), f))
	}
	return onlyTable(t.Name(), tb, Mangle)
}

func (*TTL) hooks() uint8 { return 0 }

func (t *TTL) adjust(v uint8) uint8 {
	switch t.Mode {
	case TTLDec:
		if v < t.Value {
			return 0
		}
		return v - t.Value
	case TTLInc:
		if int(v)+int(t.Value) > 255 {
			return 255
		}
		return v + t.Value
	}
	return t.Value
}

func (t *TTL) apply(p *Packet) {
	nh := p.pkt.NetworkHeader().Slice()
	if p.Family == IPv4 && len(nh) >= header.IPv4MinimumSize {
		h := header.IPv4(nh)
		h.SetTTL(t.adjust(h.TTL()))
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
	} else if p.Family == IPv6 && len(nh) >= header.IPv6MinimumSize {
		h := header.IPv6(nh)
		h.SetHopLimit(t.adjust(h.HopLimit()))
	}
}

// TOS is -j TOS: tos = (tos & ^Mask) ^ Value (mangle table only).
type TOS struct {
	Value, Mask uint8
}

var tosNames = map[string]uint8{
	"Minimize-Delay": 0x10, "Maximize-Throughput": 0x08, "Maximize-Reliability": 0x04,
	"Minimize-Cost": 0x02, "Normal-Service": 0x00,
}

// Name implements Target.
func (*TOS) Name() string { return "TOS" }

func (t *TOS) saveArgs(Family) []string {
	return []string{"--set-tos", fmt.Sprintf("0x%02x/0x%02x", t.Value, t.Mask)}
}

// listInfo is libxt_TOS's text: numeric "set VALUE/MASK"; otherwise a
// symbolic name, or the and/or/xor the value and mask amount to.
func (t *TOS) listInfo(_ Family, numeric bool) string {
	switch {
	case numeric:
	case t.Mask == 0x3f && tosName(t.Value) != "":
		// libxt_TOS prints "  TOS set" and the name with no space.
		return " TOS set" + tosName(t.Value)
	case t.Value == 0:
		return fmt.Sprintf("TOS and 0x%02x", ^t.Mask)
	case t.Value == t.Mask:
		return fmt.Sprintf("TOS or 0x%02x", t.Value)
	case t.Mask == 0:
		return fmt.Sprintf("TOS xor 0x%02x", t.Value)
	}
	return fmt.Sprintf("TOS set 0x%02x/0x%02x", t.Value, t.Mask)
}

// tosName is the symbolic name of a TOS value, or "".
func tosName(v uint8) string {
	for n, x := range tosNames {
		if x == v {
			return n
		}
	}
	return ""
}

func (t *TOS) check(_ *Rule, _ Family, tb TableID) error { return onlyTable("TOS", tb, Mangle) }

func (*TOS) hooks() uint8 { return 0 }

func (t *TOS) apply(p *Packet) { setTOS(p, func(v uint8) uint8 { return v&^t.Mask ^ t.Value }) }

func setTOS(p *Packet, f func(uint8) uint8) {
	nh := p.pkt.NetworkHeader().Slice()
	if p.Family == IPv4 && len(nh) >= header.IPv4MinimumSize {
		h := header.IPv4(nh)
		tos, _ := h.TOS()
		h.SetTOS(f(tos), 0)
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
	} else if p.Family == IPv6 && len(nh) >= header.IPv6MinimumSize {
		h := header.IPv6(nh)
		tc, fl := h.TOS()
		h.SetTOS(f(tc), fl)
	}
}

// parseTOS parses --set-tos VALUE[/MASK] or a symbolic name (whose mask
// is 0x3f, as in libxt_TOS).
func parseTOS(s string) (v, m uint8, err error) {
	if n, ok := tosNames[s]; ok {
		return n, 0x3f, nil
	}
	vs, ms, hasMask := strings.Cut(s, "/")
	a, err := strconv.ParseUint(vs, 0, 8)
	if err != nil {
		return 0, 0, fmt.Errorf("bad TOS value %q", s)
	}
	b := uint64(0xff)
	if hasMask {
		if b, err = strconv.ParseUint(ms, 0, 8); err != nil {
			return 0, 0, fmt.Errorf("bad TOS mask %q", s)
		}
	}
	return uint8(a), uint8(b), nil
}

// DSCP is -j DSCP --set-dscp N (mangle table only).
type DSCP struct {
	Value uint8
}

var dscpClasses = map[string]uint8{
	"CS0": 0, "CS1": 8, "CS2": 16, "CS3": 24, "CS4": 32, "CS5": 40, "CS6": 48, "CS7": 56,
	"BE": 0, "AF11": 10, "AF12": 12, "AF13": 14, "AF21": 18, "AF22": 20, "AF23": 22,
	"AF31": 26, "AF32": 28, "AF33": 30, "AF41": 34, "AF42": 36, "AF43": 38, "EF": 46,
}

// Name implements Target.
func (*DSCP) Name() string { return "DSCP" }

func (t *DSCP) saveArgs(Family) []string {
	return []string{"--set-dscp", fmt.Sprintf("0x%02x", t.Value)}
}

func (t *DSCP) listInfo(Family, bool) string { return fmt.Sprintf("DSCP set 0x%02x", t.Value) }

func (t *DSCP) check(_ *Rule, _ Family, tb TableID) error { return onlyTable("DSCP", tb, Mangle) }

func (*DSCP) hooks() uint8 { return 0 }

func (t *DSCP) apply(p *Packet) { setTOS(p, func(v uint8) uint8 { return v&0x03 | t.Value<<2 }) }

var markOps = []string{"--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark"}

// markOp parses one of MARK's (and CONNMARK's set) operations into the
// value to XOR in and the mask to clear, as the kernel stores them.
func markOp(c *optCtx, what string, v, m *uint32) (bool, error) {
	if err := c.exclusive("markop", what, markOps...); err != nil {
		return true, err
	}
	s, err := c.tval()
	if err != nil {
		return true, err
	}
	switch c.opt {
	case "--set-xmark":
		*v, *m, err = parseValueMask(s)
	case "--set-mark":
		*v, *m, err = parseValueMask(s)
		*m |= *v
	default:
		var x uint32
		if x, err = parseUint32(s); err == nil {
			*v, *m = map[string][2]uint32{"--and-mark": {0, ^x}, "--or-mark": {x, x}, "--xor-mark": {x, 0}}[c.opt][0],
				map[string][2]uint32{"--and-mark": {0, ^x}, "--or-mark": {x, x}, "--xor-mark": {x, 0}}[c.opt][1]
		}
	}
	return true, err
}

func isMarkOp(opt string) bool {
	for _, o := range markOps {
		if o == opt {
			return true
		}
	}
	return false
}

func (t *Mark) parseOpt(c *optCtx) (bool, error) {
	if !isMarkOp(c.opt) {
		return false, nil
	}
	return markOp(c, "MARK", &t.Value, &t.Mask)
}

func (t *Mark) finish(c *optCtx) error {
	if !c.seen("markop") {
		return fmt.Errorf("MARK target: parameter --set/and/or/xor-mark is required")
	}
	return nil
}

func (t *Connmark) parseOpt(c *optCtx) (bool, error) {
	switch {
	case isMarkOp(c.opt):
		t.Mode = ConnmarkSet
		return markOp(c, "CONNMARK", &t.Value, &t.Mask)
	case c.opt == "--save-mark" || c.opt == "--restore-mark":
		if err := c.noInv(); err != nil {
			return true, err
		}
		if err := c.exclusive("markop", "CONNMARK", "--set-mark", "--save-mark", "--restore-mark"); err != nil {
			return true, err
		}
		t.Mode = ConnmarkSave
		if c.opt == "--restore-mark" {
			t.Mode = ConnmarkRestore
		}
		return true, nil
	case c.opt == "--nfmask" || c.opt == "--ctmask" || c.opt == "--mask":
		v, err := c.tval()
		if err != nil {
			return true, err
		}
		n, err := parseUint32(v)
		switch c.opt {
		case "--nfmask":
			t.NFMask = n
		case "--ctmask":
			t.CTMask = n
		default:
			t.NFMask, t.CTMask = n, n
		}
		if c.opt != "--nfmask" {
			// In set mode the kernel's ctmask is the set
			// operation's mask: the later option wins.
			t.Mask = n
		}
		return true, err
	}
	return false, nil
}

func (t *Connmark) finish(c *optCtx) error {
	if !c.seen("markop") {
		return fmt.Errorf("CONNMARK target: no operation specified")
	}
	return nil
}

func (t *TTL) parseOpt(c *optCtx) (bool, error) {
	pre := "--ttl-"
	if t.HL {
		pre = "--hl-"
	}
	for i, mode := range ttlModeNames {
		if c.opt != pre+mode {
			continue
		}
		if err := c.exclusive("ttlop", t.Name(), pre+"set", pre+"dec", pre+"inc"); err != nil {
			return true, err
		}
		v, err := c.tval()
		if err != nil {
			return true, err
		}
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return true, fmt.Errorf("%s %q: value must be 0-255", c.opt, v)
		}
		if n == 0 && i != 0 {
			return true, fmt.Errorf("%s %q: changing by 0 makes no sense", c.opt, v)
		}
		t.Mode, t.Value = TTLMode(i), uint8(n)
		return true, nil
	}
	return false, nil
}

func (t *TTL) finish(c *optCtx) error {
	if !c.seen("ttlop") {
		return fmt.Errorf("%s: you must specify an action", t.Name())
	}
	return nil
}

func (t *TOS) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--set-tos", "--and-tos", "--or-tos", "--xor-tos":
	default:
		return false, nil
	}
	if err := c.exclusive("tosop", "TOS", "--set-tos", "--and-tos", "--or-tos", "--xor-tos"); err != nil {
		return true, err
	}
	v, err := c.tval()
	if err != nil {
		return true, err
	}
	if c.opt == "--set-tos" {
		t.Value, t.Mask, err = parseTOS(v)
		return true, err
	}
	n, err := strconv.ParseUint(v, 0, 8)
	if err != nil {
		return true, fmt.Errorf("bad TOS value %q", v)
	}
	x := uint8(n)
	switch c.opt {
	case "--and-tos":
		t.Value, t.Mask = 0, ^x
	case "--or-tos":
		t.Value, t.Mask = x, x
	default:
		t.Value, t.Mask = x, 0
	}
	return true, nil
}

func (t *TOS) finish(c *optCtx) error {
	if !c.seen("tosop") {
		return fmt.Errorf("TOS: an action is required")
	}
	return nil
}

func (t *DSCP) parseOpt(c *optCtx) (bool, error) {
	if c.opt != "--set-dscp" && c.opt != "--set-dscp-class" {
		return false, nil
	}
	if err := c.exclusive("dscpop", "DSCP", "--set-dscp", "--set-dscp-class"); err != nil {
		return true, err
	}
	v, err := c.tval()
	if err != nil {
		return true, err
	}
	if c.opt == "--set-dscp-class" {
		cl, ok := dscpClasses[strings.ToUpper(v)]
		if !ok {
			return true, fmt.Errorf("invalid DSCP class %q", v)
		}
		t.Value = cl
		return true, nil
	}
	n, err := strconv.ParseUint(v, 0, 8)
	if err != nil || n > 63 {
		return true, fmt.Errorf("DSCP value %q out of range 0-63", v)
	}
	t.Value = uint8(n)
	return true, nil
}

func (t *DSCP) finish(c *optCtx) error {
	if !c.seen("dscpop") {
		return fmt.Errorf("DSCP target: parameter --set-dscp is required")
	}
	return nil
}

func (*Mark) optNames() []string {
	return []string{"--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark"}
}

func (*Connmark) optNames() []string {
	return []string{"--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark", "--save-mark", "--restore-mark", "--nfmask", "--ctmask", "--mask"}
}

func (*TOS) optNames() []string {
	return []string{"--set-tos", "--and-tos", "--or-tos", "--xor-tos"}
}

func (*DSCP) optNames() []string { return []string{"--set-dscp", "--set-dscp-class"} }

func (t *TTL) optNames() []string {
	if t.HL {
		return []string{"--hl-set", "--hl-dec", "--hl-inc"}
	}
	return []string{"--ttl-set", "--ttl-dec", "--ttl-inc"}
}
