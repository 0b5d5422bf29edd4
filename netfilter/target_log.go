package netfilter

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

var logLevelNames = [...]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// Log is -j LOG: it reports the packet to the firewall's slog logger and
// evaluation continues.
type Log struct {
	Prefix string
	// Level is the syslog level 0 (emerg) to 7 (debug); 4 (warning) is
	// the default.
	Level uint8
	// Flags are --log-tcp-sequence (1), --log-tcp-options (2),
	// --log-ip-options (4), --log-uid (8) and --log-macdecode (0x20).
	Flags uint8
}

// NewLog returns a LOG target at the default level.
func NewLog(prefix string) *Log { return &Log{Prefix: prefix, Level: 4} }

var logFlagOpts = []struct {
	bit  uint8
	opt  string
	list string
}{
	{1, "--log-tcp-sequence", "tcp-sequence"},
	{2, "--log-tcp-options", "tcp-options"},
	{4, "--log-ip-options", "ip-options"},
	{8, "--log-uid", "uid"},
	{0x20, "--log-macdecode", "macdecode"},
}

func parseLogLevel(s string) (uint8, error) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil && n <= 7 {
		return uint8(n), nil
	}
	// libxt_LOG's names: "err" and "warn" are not among them.
	for i, n := range logLevelNames {
		if (s == n && n != "err") || (s == "error" && i == 3) || (s == "panic" && i == 0) {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("log level %q unknown", s)
}

// Name implements Target.
func (*Log) Name() string { return "LOG" }

func (t *Log) saveArgs(Family) []string {
	var a []string
	if t.Prefix != "" {
		a = append(a, "--log-prefix", saveString(t.Prefix))
	}
	if t.Level != 4 {
		a = append(a, "--log-level", strconv.Itoa(int(t.Level)))
	}
	for _, f := range logFlagOpts {
		if t.Flags&f.bit != 0 {
			a = append(a, f.opt)
		}
	}
	return a
}

func (t *Log) listInfo(_ Family, numeric bool) string {
	var b strings.Builder
	if numeric {
		fmt.Fprintf(&b, "LOG flags %d level %d", t.Flags, t.Level)
	} else {
		name := logLevelNames[t.Level&7]
		if name == "warning" {
			name = "warn"
		}
		fmt.Fprintf(&b, "LOG level %s", name)
		for _, f := range logFlagOpts {
			if t.Flags&f.bit != 0 {
				b.WriteString(" " + f.list)
			}
		}
	}
	if t.Prefix != "" {
		// libxt_LOG prints the prefix between quotes, unescaped.
		fmt.Fprintf(&b, " prefix \"%s\"", t.Prefix)
	}
	return b.String()
}

func (t *Log) check(*Rule, Family, TableID) error {
	if len(t.Prefix) > 29 {
		return fmt.Errorf("--log-prefix %q is longer than 29 characters", t.Prefix)
	}
	return nil
}

func (*Log) hooks() uint8 { return 0 }

func (t *Log) slogLevel() slog.Level {
	switch {
	case t.Level <= 3:
		return slog.LevelError
	case t.Level == 4:
		return slog.LevelWarn
	case t.Level <= 6:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (t *Log) apply(p *Packet) {
	l := p.fw.log
	lvl := t.slogLevel()
	ctx := context.Background()
	if !l.Enabled(ctx, lvl) {
		return
	}
	attrs := []slog.Attr{
		slog.String("prefix", t.Prefix),
		slog.String("hook", p.Hook.String()),
		slog.String("in", p.InInterface),
		slog.String("out", p.OutInterface),
		slog.String("src", p.Src.String()),
		slog.String("dst", p.Dst.String()),
		slog.Int("len", p.Length),
		slog.String("proto", protoName(p.Protocol)),
	}
	if p.hasPorts() {
		attrs = append(attrs, slog.Int("spt", int(p.SrcPort)), slog.Int("dpt", int(p.DstPort)))
	}
	if p.Protocol == 6 && p.HasTransport {
		attrs = append(attrs, slog.String("flags", tcpFlagsString(p.TCPFlags)))
	}
	if p.Protocol == 1 || p.Protocol == 58 {
		attrs = append(attrs, slog.Int("type", int(p.ICMPType)), slog.Int("code", int(p.ICMPCode)))
	}
	if m := p.pkt.Mark; m != 0 {
		attrs = append(attrs, slog.String("mark", hex(m)))
	}
	p.fw.logq.push(logLine{lvl: lvl, attrs: attrs})
}

func (t *Log) parseOpt(c *optCtx) (bool, error) {
	switch c.opt {
	case "--log-prefix":
		v, err := c.tval()
		if err != nil {
			return true, err
		}
		if v == "" {
			return true, fmt.Errorf("--log-prefix: argument must have a minimum length of 1 characters")
		}
		// iptables truncates long prefixes to the kernel's 29 bytes.
		if len(v) > 29 {
			v = v[:29]
		}
		t.Prefix = v
		return true, nil
	case "--log-level":
		v, err := c.tval()
		if err != nil {
			return true, err
		}
		t.Level, err = parseLogLevel(v)
		return true, err
	}
	for _, f := range logFlagOpts {
		if c.opt == f.opt {
			t.Flags |= f.bit
			return true, c.flag()
		}
	}
	return false, nil
}

func (*Log) optNames() []string {
	return []string{"--log-prefix", "--log-level", "--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid", "--log-macdecode"}
}
