package gateway

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/egress"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAddressesFor(t *testing.T) {
	tests := []struct {
		cidr                  string
		sandbox, gateway, dns string
		wantErr               bool
	}{
		{cidr: "10.0.2.0/24", sandbox: "10.0.2.100", gateway: "10.0.2.2", dns: "10.0.2.3"},
		{cidr: "10.9.0.77/24", sandbox: "10.9.0.100", gateway: "10.9.0.2", dns: "10.9.0.3"},
		{cidr: "192.168.0.0/16", sandbox: "192.168.0.100", gateway: "192.168.0.2", dns: "192.168.0.3"},
		{cidr: "10.0.2.0/25", sandbox: "10.0.2.100", gateway: "10.0.2.2", dns: "10.0.2.3"},
		{cidr: "10.0.2.0/26", wantErr: true},
		{cidr: "fd00::/64", sandbox: "fd00::100", gateway: "fd00::2", dns: "fd00::3"},
		{cidr: "fd00:1:2::/119", sandbox: "fd00:1:2::100", gateway: "fd00:1:2::2", dns: "fd00:1:2::3"},
		{cidr: "fd00::/120", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			a, err := AddressesFor(netip.MustParsePrefix(tt.cidr))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("AddressesFor(%s) = %+v, want an error", tt.cidr, a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := [3]string{a.Sandbox.String(), a.Gateway.String(), a.DNS.String()}
			if want := [3]string{tt.sandbox, tt.gateway, tt.dns}; got != want {
				t.Errorf("sandbox, gateway, DNS = %v, want %v", got, want)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	v4, _ := AddressesFor(DefaultCIDR)
	v6, _ := AddressesFor(DefaultCIDR6)
	tests := []struct {
		dst          string
		disableLoop  bool
		want         string
		wantVerdict  egress.Verdict
		wantPingDial bool
	}{
		{dst: "10.0.2.2", want: "127.0.0.1", wantVerdict: egress.Dial, wantPingDial: true},
		{dst: "fd00::2", want: "::1", wantVerdict: egress.Dial, wantPingDial: true},
		{dst: "10.0.2.2", disableLoop: true, wantVerdict: egress.Refuse},
		{dst: "10.0.2.3", wantVerdict: egress.Refuse},
		{dst: "fd00::3", wantVerdict: egress.Refuse},
		{dst: "10.0.2.77", wantVerdict: egress.Unreachable},
		{dst: "fd00::77", wantVerdict: egress.Unreachable},
		{dst: "127.0.0.1", wantVerdict: egress.Refuse},
		{dst: "::1", wantVerdict: egress.Refuse},
		{dst: "0.0.0.0", wantVerdict: egress.Refuse},
		{dst: "224.0.0.251", wantVerdict: egress.Drop},
		{dst: "ff02::fb", wantVerdict: egress.Drop},
		{dst: "255.255.255.255", wantVerdict: egress.Drop},
		{dst: "198.18.0.1", want: "198.18.0.1", wantVerdict: egress.Dial, wantPingDial: true},
		{dst: "2001:db8::1", want: "2001:db8::1", wantVerdict: egress.Dial, wantPingDial: true},
	}
	for _, tt := range tests {
		name := tt.dst
		if tt.disableLoop {
			name += " with host loopback disabled"
		}
		t.Run(name, func(t *testing.T) {
			g := &Gateway{cfg: Config{V4: v4, V6: v6, DisableHostLoopback: tt.disableLoop}}
			to, v := g.translate("tcp", netip.AddrPortFrom(netip.MustParseAddr(tt.dst), 80))
			if v != tt.wantVerdict {
				t.Fatalf("verdict %d, want %d", v, tt.wantVerdict)
			}
			if v == egress.Dial && to != netip.AddrPortFrom(netip.MustParseAddr(tt.want), 80) {
				t.Errorf("dials %s, want %s:80", to, tt.want)
			}
			if _, ok := g.translatePing(netip.MustParseAddr(tt.dst)); ok != tt.wantPingDial {
				t.Errorf("ping relayed: %v, want %v", ok, tt.wantPingDial)
			}
		})
	}
}

// TestStartAssignsAndStops: Start gives the NIC the gateway and DNS
// addresses of each enabled family and enables it; Close stops every
// relay (goleak checks their goroutines are gone).
func TestStartAssignsAndStops(t *testing.T) {
	tests := []struct {
		name string
		v6   bool
		want []string
	}{
		{"IPv4 only", false, []string{"10.0.2.2", "10.0.2.3"}},
		{"dual stack", true, []string{"10.0.2.2", "10.0.2.3", "fd00::2", "fd00::3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := stack.New(stack.Options{NoLocalDelivery: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			a, _ := pipe.New("", "", 1500)
			nic, err := s.AddNIC(stack.NICConfig{Name: "tun0", Endpoint: a, Promiscuous: true, Spoofing: true, Disabled: true})
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Dialer: &egress.LoopbackDialer{}}
			cfg.V4, _ = AddressesFor(DefaultCIDR)
			if tt.v6 {
				cfg.V6, _ = AddressesFor(DefaultCIDR6)
			}
			g, err := Start(s, nic, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if !s.GVisor().CheckNIC(nic) {
				t.Error("NIC not enabled after Start")
			}
			got := map[string]bool{}
			for _, pa := range s.GVisor().AllAddresses()[nic] {
				got[pa.AddressWithPrefix.Address.String()] = true
			}
			for _, w := range tt.want {
				if !got[w] {
					t.Errorf("address %s missing on the NIC (has %v)", w, got)
				}
			}
			if !tt.v6 && (got["fd00::2"] || got["fd00::3"]) {
				t.Errorf("IPv6 disabled, yet the NIC has %v", got)
			}
		})
	}
}
