package netfilter

import (
	"fmt"
	"strings"
)

// listOpts are the -L formatting flags.
type listOpts struct {
	verbose, numeric, exact, lineNumbers bool
}

// kmg formats a counter as iptables does without -x: plain up to 99999,
// then K, M, G, T with rounding.
func kmg(n uint64) string {
	if n <= 99999 {
		return fmt.Sprint(n)
	}
	n = (n + 500) / 1000
	for _, suf := range []string{"K", "M", "G", "T"} {
		if n <= 9999 {
			return fmt.Sprintf("%d%s", n, suf)
		}
		n = (n + 500) / 1000
	}
	return fmt.Sprintf("%dP", n)
}

func (o listOpts) num(n uint64) string {
	if o.exact {
		return fmt.Sprintf("%8d ", n)
	}
	return fmt.Sprintf("%5s ", kmg(n))
}

func (o listOpts) plain(n uint64) string {
	if o.exact {
		return fmt.Sprint(n)
	}
	return kmg(n)
}

func references(t *table, name string) int {
	n := 0
	for _, c := range t.chains {
		for _, r := range c.Rules {
			if j, ok := jumpName(r.Target); ok && j == name {
				n++
			}
		}
	}
	return n
}

// addrColumn is one address column of -L: the "!" or a space, then the
// address left-aligned in 19 columns and a space, as iptables prints it.
func addrColumn(f Family, a Addr, numeric bool) string {
	s := "any"
	switch {
	case (!a.Prefix.IsValid() || a.Prefix.Bits() == 0) && !numeric:
		s = "anywhere"
	case !a.Prefix.IsValid() || a.Prefix.Bits() == 0:
		s = "0.0.0.0/0"
		if f == IPv6 {
			s = "::/0"
		}
	case a.Prefix.Bits() == a.Prefix.Addr().BitLen():
		s = a.Prefix.Addr().String()
	default:
		s = a.Prefix.String()
	}
	return fmt.Sprintf("%s%-19s ", invChar(a.Invert), s)
}

// invChar is the one-column negation mark of -L: "!" or a space.
func invChar(inv bool) string {
	if inv {
		return "!"
	}
	return " "
}

func ifaceColumn(i Iface, numeric bool) string {
	name := i.Name
	if name == "" {
		if numeric {
			name = "*"
		} else {
			name = "any"
		}
	}
	return bang(i.Invert) + name
}

// listChain writes one chain as iptables -L does.
func listChain(b *strings.Builder, f Family, t *table, c *Chain, o listOpts) {
	if c.Builtin {
		if o.verbose {
			fmt.Fprintf(b, "Chain %s (policy %s %s packets, %s bytes)\n", c.Name, c.Policy,
				o.plain(c.policyCounters.Packets()), o.plain(c.policyCounters.Bytes()))
		} else {
			fmt.Fprintf(b, "Chain %s (policy %s)\n", c.Name, c.Policy)
		}
	} else {
		fmt.Fprintf(b, "Chain %s (%d references)\n", c.Name, references(t, c.Name))
	}
	if o.lineNumbers {
		fmt.Fprintf(b, "%-4s ", "num")
	}
	if o.verbose {
		if o.exact {
			fmt.Fprintf(b, "%8s %10s ", "pkts", "bytes")
		} else {
			fmt.Fprintf(b, "%5s %5s ", "pkts", "bytes")
		}
	}
	fmt.Fprintf(b, "%-10s %-5s%-4s", "target", "prot", "opt")
	if o.verbose {
		fmt.Fprintf(b, "%-7s%-8s", "in", "out")
	}
	fmt.Fprintf(b, "%-21s%-20s\n", "source", "destination")
	for i := range c.Rules {
		listRule(b, f, c, i+1, o)
	}
}

// listRule writes rule n (from 1) of c as a line of iptables -L, or
// nothing when there is no such rule.
func listRule(b *strings.Builder, f Family, c *Chain, n int, o listOpts) {
	if n < 1 || n > len(c.Rules) {
		return
	}
	r := c.Rules[n-1]
	if o.lineNumbers {
		fmt.Fprintf(b, "%-4d ", n)
	}
	if o.verbose {
		b.WriteString(o.num(r.counters.Packets()))
		b.WriteString(o.num(r.counters.Bytes()))
	}
	tname := ""
	if r.Target != nil {
		tname = r.Target.Name()
	}
	proto := protoName(r.Protocol)
	if o.numeric {
		proto = fmt.Sprint(r.Protocol)
	}
	fmt.Fprintf(b, "%-9s %s%-4s -- ", tname, invChar(r.ProtocolInvert), proto)
	if o.verbose {
		fmt.Fprintf(b, " %-6s %-6s ", ifaceColumn(r.In, o.numeric), ifaceColumn(r.Out, o.numeric))
	}
	b.WriteString(addrColumn(f, r.Src, o.numeric))
	b.WriteString(addrColumn(f, r.Dst, o.numeric))
	// iptables prints "[goto] " after the addresses, before the
	// matches; every other target's text comes last.
	_, isGoto := r.Target.(Goto)
	if isGoto {
		b.WriteString("[goto] ")
	}
	for _, m := range r.Matches {
		b.WriteString(" " + m.listInfo(f, o.numeric))
	}
	if r.Target != nil && !isGoto {
		if info := r.Target.listInfo(f, o.numeric); info != "" {
			b.WriteString(" " + info)
		}
	}
	b.WriteString("\n")
}

// specChain writes one chain's rules as iptables -S does.
// With counters (-S -v) each rule has "-c PACKETS BYTES" before its
// target, as iptables prints it.
func specRules(b *strings.Builder, f Family, c *Chain, only int, counters bool) {
	for i, r := range c.Rules {
		if only > 0 && i+1 != only {
			continue
		}
		fmt.Fprintf(b, "-A %s", c.Name)
		a := ruleArgs(f, r)
		if counters {
			tgt := len(targetArgs(f, r))
			rest := append([]string{"-c", fmt.Sprint(r.counters.Packets()), fmt.Sprint(r.counters.Bytes())}, a[len(a)-tgt:]...)
			a = append(a[:len(a)-tgt:len(a)-tgt], rest...)
		}
		if s := strings.Join(a, " "); s != "" {
			b.WriteString(" " + s)
		}
		b.WriteString("\n")
	}
}
