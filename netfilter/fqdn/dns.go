package fqdn

import (
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"

	"github.com/tunstack/tunstack/netfilter/ipset"
)

// FilterResponse decides a DNS answer from the upstream: it returns resp
// unchanged, after learning its addresses, when a name in it matches the
// allowlist, and otherwise an NXDOMAIN reply to query carrying an
// Extended DNS Error "Blocked" (when the query has EDNS). query is the
// client's message, resp the upstream's; a response that does not parse
// is refused (SERVFAIL), since nothing in it can be checked.
func (p *Policy) FilterResponse(query, resp []byte) []byte {
	q := new(dns.Msg)
	if err := q.Unpack(query); err != nil || len(q.Question) == 0 {
		return resp // the relay answers malformed queries itself
	}
	m := new(dns.Msg)
	if err := m.Unpack(resp); err != nil {
		return reply(q, dns.RcodeServerFailure, "")
	}
	snap := p.snap.Load()
	names := chainNames(m)
	matched := matching(snap.patterns, names)
	qname := canonical(q.Question[0].Name)
	if len(matched) == 0 {
		p.rec.record(Decision{Proto: "dns", Name: qname, Verdict: Deny, Reason: "name not in allowlist"})
		return reply(q, dns.RcodeNameError, qname)
	}
	p.learn(snap, m, matched, qname)
	p.rec.record(Decision{Proto: "dns", Name: qname, Verdict: Allow})
	return resp
}

// chainNames returns the name asked for and every name along the CNAME
// chain of the answer, canonical.
func chainNames(m *dns.Msg) []string {
	var names []string
	add := func(n string) {
		if n = canonical(n); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, q := range m.Question {
		add(q.Name)
	}
	for _, rr := range m.Answer {
		if c, ok := rr.(*dns.CNAME); ok {
			add(c.Hdr.Name)
			add(c.Target)
		}
	}
	return names
}

// matching returns the name patterns that match any of names.
func matching(pats []Pattern, names []string) []Pattern {
	var out []Pattern
	for _, pat := range pats {
		if pat.Kind == Prefix {
			continue
		}
		for _, n := range names {
			if pat.MatchName(n) {
				out = append(out, pat)
				break
			}
		}
	}
	return out
}

// learn adds the answer's A and AAAA addresses to the sets of the
// matched patterns' port limits, for their TTL (at least MinTTL).
func (p *Policy) learn(snap *snapshot, m *dns.Msg, matched []Pattern, qname string) {
	for _, rr := range m.Answer {
		var a netip.Addr
		switch r := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(r.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(r.AAAA.To16())
		}
		if !a.IsValid() {
			continue
		}
		ttl := p.lifetime(rr.Header().Ttl)
		for _, g := range snap.groups {
			if (g.set.Family() == ipset.Inet6) != a.Is6() || !covers(matched, g) {
				continue
			}
			if err := g.set.AddTimeout(netip.PrefixFrom(a, a.BitLen()), ttl, true); err != nil {
				p.cfg.Logger.Warn("allow-host: cannot learn an address", "name", qname, "addr", a, "err", err)
			}
		}
		p.remember(a, qname)
	}
}

// lifetime is how long an address with this TTL stays allowed.
func (p *Policy) lifetime(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if d < p.cfg.MinTTL {
		d = p.cfg.MinTTL
	}
	if d <= 0 {
		d = time.Second
	}
	return min(d, ipset.MaxTimeout*time.Second)
}

// covers reports whether a matched pattern has g's port limit.
func covers(matched []Pattern, g group) bool {
	for _, pat := range matched {
		if pat.PortLo == g.portLo && pat.PortHi == g.portHi {
			return true
		}
	}
	return false
}

// remember notes the name an address was learned from, for the logs.
func (p *Policy) remember(a netip.Addr, name string) {
	p.namesMu.Lock()
	defer p.namesMu.Unlock()
	if len(p.names) >= maxLearned {
		clear(p.names)
	}
	p.names[a] = name
}

// nameOf returns the allowed name a was learned from, if any.
func (p *Policy) nameOf(a netip.Addr) string {
	p.namesMu.Lock()
	defer p.namesMu.Unlock()
	return p.names[a]
}

// reply builds an answer to q with rcode; for a blocked name (non-empty)
// it carries an Extended DNS Error saying why, when q has EDNS.
func reply(q *dns.Msg, rcode int, blocked string) []byte {
	r := new(dns.Msg)
	r.SetRcode(q, rcode)
	r.RecursionAvailable = true
	if opt := q.IsEdns0(); opt != nil {
		o := r.SetEdns0(opt.UDPSize(), false).IsEdns0()
		if blocked != "" {
			o.Option = append(o.Option, &dns.EDNS0_EDE{
				InfoCode:  dns.ExtendedErrorCodeBlocked,
				ExtraText: "tunstack: " + blocked + " is not in the --allow-host list",
			})
		}
	}
	out, err := r.Pack()
	if err != nil {
		return nil
	}
	return out
}
