package netfilter

import "fmt"

// Reject is -j REJECT --reject-with TYPE. With is the canonical type name
// ("icmp-port-unreachable", "tcp-reset", "icmp6-adm-prohibited", ...).
type Reject struct {
	With string
}

type rejectType struct {
	name    string
	aliases []string
	v6      bool
}

var rejectTypes = []rejectType{
	{"icmp-net-unreachable", []string{"net-unreach"}, false},
	{"icmp-host-unreachable", []string{"host-unreach"}, false},
	{"icmp-port-unreachable", []string{"port-unreach"}, false},
	{"icmp-proto-unreachable", []string{"proto-unreach"}, false},
	{"icmp-net-prohibited", []string{"net-prohib"}, false},
	{"icmp-host-prohibited", []string{"host-prohib"}, false},
	{"icmp-admin-prohibited", []string{"admin-prohib"}, false},
	{"tcp-reset", []string{"tcp-rst"}, false},
	{"icmp6-no-route", []string{"no-route"}, true},
	{"icmp6-adm-prohibited", []string{"adm-prohibited"}, true},
	{"icmp6-addr-unreachable", []string{"addr-unreach"}, true},
	{"icmp6-port-unreachable", []string{"port-unreach"}, true},
	{"icmp6-policy-fail", []string{"policy-fail"}, true},
	{"icmp6-reject-route", []string{"reject-route"}, true},
	{"tcp-reset", []string{"tcp-rst"}, true},
}

// unsendableReject are the types gVisor's REJECT cannot send (it has no
// ICMP protocol-unreachable, failed-policy or reject-route reply).
// tunstack parses them, so that the error names the limitation, and
// refuses them rather than send another type.
var unsendableReject = map[string]bool{
	"icmp-proto-unreachable": true,
	"icmp6-policy-fail":      true,
	"icmp6-reject-route":     true,
}

func parseRejectWith(s string, f Family) (string, error) {
	for _, t := range rejectTypes {
		if t.v6 != (f == IPv6) {
			continue
		}
		if s == t.name {
			return t.name, nil
		}
		for _, a := range t.aliases {
			if s == a {
				return t.name, nil
			}
		}
	}
	return "", fmt.Errorf("unknown reject type %q for --reject-with", s)
}

func defaultReject(f Family) string {
	if f == IPv6 {
		return "icmp6-port-unreachable"
	}
	return "icmp-port-unreachable"
}

// Name implements Target.
func (Reject) Name() string { return "REJECT" }

func (t *Reject) with(f Family) string {
	if t.With == "" {
		return defaultReject(f)
	}
	return t.With
}

func (t *Reject) saveArgs(f Family) []string { return []string{"--reject-with", t.with(f)} }

func (t *Reject) listInfo(f Family, _ bool) string { return "reject-with " + t.with(f) }

func (t *Reject) check(r *Rule, f Family, tb TableID) error {
	// The kernel's REJECT is registered for the filter table only.
	if err := onlyTable("REJECT", tb, Filter); err != nil {
		return err
	}
	w, err := parseRejectWith(t.with(f), f)
	if err != nil {
		return err
	}
	if unsendableReject[w] {
		return fmt.Errorf("REJECT --reject-with %s is not supported: tunstack's stack cannot send that ICMP type; use another --reject-with", w)
	}
	if w == "tcp-reset" && (r.Protocol != 6 || r.ProtocolInvert) {
		return fmt.Errorf("REJECT --reject-with tcp-reset is only valid with \"-p tcp\"")
	}
	return nil
}

func (*Reject) hooks() uint8 { return Input.bit() | Forward.bit() | Output.bit() }

func (t *Reject) parseOpt(c *optCtx) (bool, error) {
	if c.opt != "--reject-with" {
		return false, nil
	}
	v, err := c.tval()
	if err != nil {
		return true, err
	}
	t.With, err = parseRejectWith(v, c.fam())
	return true, err
}

func (*Reject) optNames() []string { return []string{"--reject-with"} }
