package stack_test

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/netdev"
	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

// TestOnLinkRoute checks that AddNIC and AddAddress make an address's
// prefix reachable, as `ip addr add` does, and that NoPrefixRoute opts out.
func TestOnLinkRoute(t *testing.T) {
	stacktest.CheckLeaks(t)
	cases := []struct {
		name      string
		addr      string // the dialer's address
		noPrefix  bool
		later     bool // AddAddress after AddNIC instead of NICConfig.Addresses
		wantErr   error
		wantRoute string // the dialer's route table, as "dst nic"
	}{
		{name: "/24 reaches the /24", addr: "198.18.0.1/24", wantRoute: "198.18.0.0/24 1"},
		{name: "AddAddress /24", addr: "198.18.0.1/24", later: true, wantRoute: "198.18.0.0/24 1"},
		{name: "NoPrefixRoute", addr: "198.18.0.1/24", noPrefix: true, wantErr: syscall.ENETUNREACH},
		{name: "/32 adds no route", addr: "198.18.0.1/32", wantErr: syscall.ENETUNREACH},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			da, db := netdev.Pipe(1500)
			a, err := stack.New(stack.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := stack.New(stack.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			cfg := stack.NICConfig{Name: "eth0", Endpoint: netdev.NewEndpoint(da, netdev.EndpointOptions{}), NoPrefixRoute: tc.noPrefix}
			if !tc.later {
				cfg.Addresses = []netip.Prefix{netip.MustParsePrefix(tc.addr)}
			}
			id, err := a.AddNIC(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.later {
				if err := a.AddAddress(id, netip.MustParsePrefix(tc.addr)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := b.AddNIC(stack.NICConfig{Name: "eth0", Endpoint: netdev.NewEndpoint(db, netdev.EndpointOptions{}),
				Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}}); err != nil {
				t.Fatal(err)
			}
			ln, err := b.Listen("tcp", "198.18.0.2:80")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			var routes string
			for _, r := range a.GVisor().GetRouteTable() {
				routes += r.Destination.String() + " " + string(rune('0'+r.NIC))
			}
			if routes != tc.wantRoute {
				t.Errorf("routes %q, want %q", routes, tc.wantRoute)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := a.DialContext(ctx, "tcp", "198.18.0.2:80")
			if c != nil {
				c.Close()
			}
			if !errors.Is(err, tc.wantErr) && !(err == nil && tc.wantErr == nil) {
				t.Errorf("dial: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestAddRouteTwice checks that adding a route that exists (as AddNIC's
// on-link route often will be) leaves one copy in the table.
func TestAddRouteTwice(t *testing.T) {
	s, err := stacktest.NewLoopback(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := len(s.GVisor().GetRouteTable())
	if err := s.AddRoute(netip.MustParsePrefix("127.0.0.0/8"), netip.Addr{}, 1); err != nil {
		t.Fatal(err)
	}
	if after := len(s.GVisor().GetRouteTable()); after != before {
		t.Errorf("routes: %d before, %d after adding an existing route", before, after)
	}
}
