package stack

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestAddrHeaderRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		ap   string
		want []byte // the header's bytes
	}{
		{"198.18.0.1:40000", []byte{4, 0x9c, 0x40, 198, 18, 0, 1}},
		{"[::ffff:198.18.0.1]:53", []byte{4, 0, 53, 198, 18, 0, 1}},
		{"[2001:db8::1]:65535", append([]byte{16, 0xff, 0xff}, netip.MustParseAddr("2001:db8::1").AsSlice()...)},
		{"0.0.0.0:0", []byte{4, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.ap, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tc.ap)
			hdr := AppendAddrHeader([]byte("x"), ap)
			if !bytes.Equal(hdr[1:], tc.want) {
				t.Fatalf("header % x, want % x", hdr[1:], tc.want)
			}
			got, payload, err := ParseAddrHeader(append(hdr[1:], "payload"...))
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()); got != want {
				t.Errorf("address %v, want %v", got, want)
			}
			if string(payload) != "payload" {
				t.Errorf("payload %q, want payload", payload)
			}
		})
	}
}

func TestParseAddrHeaderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"empty", nil, "message of 0 bytes"},
		{"short", []byte{4, 0}, "message of 2 bytes"},
		{"bad length", []byte{5, 0, 80, 1, 2, 3, 4, 5}, "address length 5"},
		{"truncated ipv4", []byte{4, 0, 80, 1, 2, 3}, "want at least 7"},
		{"truncated ipv6", []byte{16, 0, 80, 1, 2, 3, 4}, "want at least 19"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseAddrHeader(tc.msg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseAddrHeader(% x): %v, want an error containing %q", tc.msg, err, tc.want)
			}
		})
	}
}

func FuzzParseAddrHeader(f *testing.F) {
	f.Add([]byte{4, 0, 80, 1, 2, 3, 4, 'x'})
	f.Add([]byte{16, 0, 80})
	f.Fuzz(func(t *testing.T, msg []byte) {
		ap, payload, err := ParseAddrHeader(msg)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		if got := append(AppendAddrHeader(nil, ap), payload...); !bytes.Equal(got, msg) && !ap.Addr().Is4In6() {
			t.Errorf("re-encoded % x, want % x", got, msg)
		}
	})
}
