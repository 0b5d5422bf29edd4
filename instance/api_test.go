package instance

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/stack/forward"
	"github.com/tunstack/tunstack/stack/views"
)

// The control API's types are the wire format the stack's types had: a
// value maps to JSON byte for byte the same, and maps back unchanged.
func TestAPIMapping(t *testing.T) {
	ap := netip.MustParseAddrPort
	sockets := []views.Socket{
		{Side: views.SideStack, Netid: "tcp", State: "ESTAB", RecvQ: 1, SendQ: 2, Local: ap("10.0.2.2:80"), Peer: ap("10.0.2.100:40000"),
			Processes: []views.Process{{PID: 7, Command: "curl", FD: 3}}, Inode: 99,
			TCP: &views.TCPInfo{Congestion: "reno", CAState: "Open", RTT: time.Millisecond, Cwnd: 10, SegsIn: 5, ReorderSeen: true}},
		{Side: views.SideSandbox, Netid: "udp", State: "UNCONN", Local: ap("[::]:53"), V6: true, V6Only: true},
	}
	links := []views.Link{{
		Index: 1, Name: "tun0", Flags: []string{"UP", "LOWER_UP"}, MTU: 1500, State: "UNKNOWN", Kind: "none",
		Offload: "vnet_hdr tso", TxQueueLen: 10000,
		Addresses: []views.Address{{Prefix: netip.MustParsePrefix("10.0.2.2/24"), Scope: "global"}},
		Stats:     views.LinkStats{RxBytes: 1, TxGSO: 2},
	}, {Index: 2, Name: "lo"}}
	routes := []views.Route{
		{Destination: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.0.2.2"), Device: "tun0", MTU: 1500},
		{Destination: netip.MustParsePrefix("10.0.2.0/24"), Device: "tun0"},
	}
	fwds := []forward.Info{{
		ID: "8080:80/tcp", Spec: forward.Spec{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, SandboxPort: 80},
		Listen: []string{"127.0.0.1:8080"}, Active: 1, Total: 3, Created: time.Unix(1700000000, 0).UTC(),
	}, {ID: "/run/a.sock:80/tcp", Spec: forward.Spec{Proto: "tcp", HostPath: "/run/a.sock", SandboxPort: 80}}}

	for _, tc := range []struct {
		name          string
		domain, wire  any
		back          any // wire mapped back to the domain type; nil if there is no way back
		wantRoundTrip any
	}{
		{"sockets", sockets, APISockets(sockets), ViewSockets(APISockets(sockets)), sockets},
		{"links", links, APILinks(links), ViewLinks(APILinks(links)), links},
		{"routes", routes, APIRoutes(routes), ViewRoutes(APIRoutes(routes)), routes},
		{"forwards", fwds, APIForwards(fwds), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := json.Marshal(tc.domain)
			if err != nil {
				t.Fatal(err)
			}
			w, err := json.Marshal(tc.wire)
			if err != nil {
				t.Fatal(err)
			}
			if string(d) != string(w) {
				t.Errorf("wire JSON differs from the stack's:\nstack: %s\nwire:  %s", d, w)
			}
			if tc.back != nil && !reflect.DeepEqual(tc.back, tc.wantRoundTrip) {
				t.Errorf("mapped back: %+v\nwant %+v", tc.back, tc.wantRoundTrip)
			}
		})
	}
}

func TestAPIFlowMapping(t *testing.T) {
	for _, f := range []netfilter.Flow{
		{Family: netfilter.IPv4, Protocol: 6, State: "ESTABLISHED",
			Orig:    netfilter.Tuple{Src: netip.MustParseAddr("10.0.2.100"), Dst: netip.MustParseAddr("198.18.0.1"), SrcPort: 40000, DstPort: 80},
			Reply:   netfilter.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("10.0.2.100"), SrcPort: 80, DstPort: 40000},
			Timeout: time.Minute, OrigPackets: 1, OrigBytes: 60, ReplyPackets: 2, ReplyBytes: 120, Assured: true, Mark: 7},
		{Family: netfilter.IPv6, Protocol: 58},
	} {
		c := APIFlow(f)
		if want := map[netfilter.Family]int{netfilter.IPv4: 4, netfilter.IPv6: 6}[f.Family]; c.Family != want {
			t.Errorf("family %v mapped to %d, want %d", f.Family, c.Family, want)
		}
		if back := NetfilterFlow(c); !reflect.DeepEqual(back, f) {
			t.Errorf("flow mapped back: %+v\nwant %+v", back, f)
		}
	}
	// Every family the server passes maps to a distinct netfilter family.
	if NetfilterFamily(4) == NetfilterFamily(6) {
		t.Error("families 4 and 6 map to the same netfilter family")
	}
	var _ control.FirewallBackend = backend{}
}
