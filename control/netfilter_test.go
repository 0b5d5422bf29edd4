package control

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunstack/tunstack/netfilter"
)

// fwBackend is the fake backend with a real firewall (no stack).
type fwBackend struct {
	fakeBackend
	fw *netfilter.Firewall
}

// family maps the API's family (the server passes only 4 or 6).
func family(n int) netfilter.Family {
	if n == 6 {
		return netfilter.IPv6
	}
	return netfilter.IPv4
}

func (b *fwBackend) IPTables(f int, args []string) (string, error) {
	return b.fw.Exec(family(f), args)
}
func (b *fwBackend) IPTablesSave(f int, counters bool) (string, error) {
	return b.fw.Save(family(f), counters), nil
}
func (b *fwBackend) IPTablesRestore(req IPTablesRestoreRequest) error {
	if req.Test {
		return b.fw.Validate(family(req.Family), req.Text)
	}
	return b.fw.Restore(family(req.Family), req.Text, netfilter.RestoreOptions{NoFlush: req.NoFlush, Counters: req.Counters})
}
func (b *fwBackend) IPSet(args []string) (string, error) { return b.fw.IPSet(args) }
func (b *fwBackend) Conntrack() ([]Flow, error) {
	var out []Flow
	for _, f := range b.fw.Conntrack() {
		out = append(out, Flow{Protocol: f.Protocol, State: f.State, Orig: FlowTuple{Src: f.Orig.Src, Dst: f.Orig.Dst}})
	}
	return out, nil
}

func TestFirewallEndpoints(t *testing.T) {
	fw, err := netfilter.New(nil, netfilter.Config{Gateway: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tunstack")
	s, err := Listen(ServerConfig{Path: SocketPath(dir, "fw"), Backend: &fwBackend{fakeBackend: fakeBackend{name: "fw"}, fw: fw}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	c := NewClient(s.Path())
	defer c.Close()

	if _, err := c.IPTables(ctx, 4, strings.Fields("-A INPUT -p tcp --dport 22 -j DROP")); err != nil {
		t.Fatal(err)
	}
	_, err = c.IPTables(ctx, 4, strings.Fields("-A INPUT -p tcp --dportx 22 -j DROP"))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "--dportx") {
		t.Fatalf("bad rule: %v (want a 400 APIError naming --dportx)", err)
	}
	out, err := c.IPTables(ctx, 4, []string{"-S", "INPUT"})
	if err != nil || out != "-P INPUT ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j DROP\n" {
		t.Fatalf("iptables -S INPUT = %q, %v", out, err)
	}
	if _, err := c.IPTables(ctx, 6, []string{"-A", "INPUT", "-s", "10.0.0.1", "-j", "DROP"}); err == nil {
		t.Fatal("ip6tables accepted an IPv4 address")
	}
	if _, err := c.IPTables(ctx, 5, []string{"-S"}); err == nil {
		t.Fatal("family 5 accepted")
	}

	save, err := c.IPTablesSave(ctx, 4, true)
	if err != nil || !strings.Contains(save, "[0:0] -A INPUT -p tcp -m tcp --dport 22 -j DROP\n") {
		t.Fatalf("iptables-save -c = %q, %v", save, err)
	}

	bad := "*filter\n-A INPUT -j ACCEPT\n-A INPUT -j DNAT --to-destination 10.0.2.2\nCOMMIT\n"
	for _, test := range []bool{true, false} {
		err := c.IPTablesRestore(ctx, IPTablesRestoreRequest{Family: 4, Text: bad, Test: test})
		if err == nil || !strings.Contains(err.Error(), "line ") {
			t.Fatalf("restore (test=%v) of a bad file: %v (want a line number)", test, err)
		}
	}
	good := "*filter\n-A FORWARD -o host -j ACCEPT\nCOMMIT\n"
	if err := c.IPTablesRestore(ctx, IPTablesRestoreRequest{Family: 4, Text: good, Test: true}); err != nil {
		t.Fatal(err)
	}
	if out, _ := c.IPTables(ctx, 4, []string{"-S", "FORWARD"}); strings.Contains(out, "-A FORWARD") {
		t.Fatalf("restore --test changed the rules: %q", out)
	}
	if err := c.IPTablesRestore(ctx, IPTablesRestoreRequest{Family: 4, Text: good, NoFlush: true}); err != nil {
		t.Fatal(err)
	}
	out, _ = c.IPTables(ctx, 4, []string{"-S"})
	if !strings.Contains(out, "-A FORWARD -o host -j ACCEPT") || !strings.Contains(out, "--dport 22") {
		t.Fatalf("after restore --noflush: %q", out)
	}

	if _, err := c.IPSet(ctx, []string{"create", "bl", "hash:net"}); err != nil {
		t.Fatal(err)
	}
	err = c.IPSetRestore(ctx, "add bl 192.0.2.0/24\n\n# comment\nadd bl nonsense\n")
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("ipset restore with a bad line 4: %v", err)
	}
	if out, err := c.IPSet(ctx, []string{"list", "bl"}); err != nil || !strings.Contains(out, "192.0.2.0/24") {
		t.Fatalf("ipset list = %q, %v", out, err)
	}
	flows, err := c.Conntrack(ctx)
	if err != nil || flows == nil || len(flows) != 0 {
		t.Fatalf("conntrack = %v, %v (want an empty list)", flows, err)
	}
}

func TestFirewallEndpointsAbsent(t *testing.T) {
	s := serve(t, filepath.Join(t.TempDir(), "tunstack"), "nofw")
	c := NewClient(s.Path())
	defer c.Close()
	_, err := c.IPTables(context.Background(), 4, []string{"-S"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("iptables on a backend without a firewall: %v (want 404)", err)
	}
}
