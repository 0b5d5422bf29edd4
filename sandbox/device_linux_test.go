package sandbox

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/tunstack/tunstack/tun"
)

func TestDeviceConfigValidate(t *testing.T) {
	ok := DeviceConfig{MTU: 65520, Queues: 1, TxQueueLen: 10000}
	with := func(f func(*DeviceConfig)) DeviceConfig {
		d := ok
		f(&d)
		return d
	}
	for _, tc := range []struct {
		name    string
		d       DeviceConfig
		wantErr string // "" for valid
	}{
		{"defaults of the command line", ok, ""},
		{"smallest MTU", with(func(d *DeviceConfig) { d.MTU = 1280 }), ""},
		{"MTU below IPv6's minimum", with(func(d *DeviceConfig) { d.MTU = 1279 }), "MTU 1279: must be between 1280 and 65520"},
		{"MTU above TUN's", with(func(d *DeviceConfig) { d.MTU = 65521 }), "MTU 65521: must be between 1280 and 65520"},
		{"zero MTU", with(func(d *DeviceConfig) { d.MTU = 0 }), "MTU 0: must be between"},
		{"16 queues", with(func(d *DeviceConfig) { d.Queues = 16 }), ""},
		{"explicit zero queues", with(func(d *DeviceConfig) { d.Queues = 0 }), "queues 0: must be between 1 and 16"},
		{"17 queues", with(func(d *DeviceConfig) { d.Queues = 17 }), "queues 17: must be between 1 and 16"},
		{"zero txqueuelen", with(func(d *DeviceConfig) { d.TxQueueLen = 0 }), ""},
		{"negative txqueuelen", with(func(d *DeviceConfig) { d.TxQueueLen = -1 }), "txqueuelen -1: must not be negative"},
		{"15-byte name", with(func(d *DeviceConfig) { d.Name = "abcdefghijklmno" }), ""},
		{"16-byte name", with(func(d *DeviceConfig) { d.Name = "abcdefghijklmnop" }), `device name "abcdefghijklmnop": longer than 15 bytes`},
		{"addresses", with(func(d *DeviceConfig) {
			d.Addr4, d.Addr6 = netip.MustParsePrefix("10.0.2.100/24"), netip.MustParsePrefix("fd00::100/64")
		}), ""},
		{"IPv6 as Addr4", with(func(d *DeviceConfig) { d.Addr4 = netip.MustParsePrefix("fd00::100/64") }), "IPv4 address fd00::100/64: not IPv4"},
		{"IPv4 as Addr6", with(func(d *DeviceConfig) { d.Addr6 = netip.MustParsePrefix("10.0.2.100/24") }), "IPv6 address 10.0.2.100/24: not IPv6"},
		{"TAP with MAC", with(func(d *DeviceConfig) { d.TAP, d.MAC = true, "02:00:00:00:00:01" }), ""},
		{"MAC on a TUN device", with(func(d *DeviceConfig) { d.MAC = "02:00:00:00:00:01" }), `MAC address "02:00:00:00:00:01": only a TAP device has one`},
		{"bad MAC", with(func(d *DeviceConfig) { d.TAP, d.MAC = true, "02:00:zz" }), `MAC address "02:00:zz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.d.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", tc.d, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate(%+v) = %v, want an error containing %q", tc.d, err, tc.wantErr)
			}
		})
	}
}

func TestDeviceConfigPrepared(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      DeviceConfig
		want    DeviceConfig
		wantErr string
	}{
		{"zero fields get the defaults", DeviceConfig{MTU: 1500},
			DeviceConfig{Name: "tun0", MTU: 1500, TxQueueLen: 10000, Queues: 1}, ""},
		{"given fields stay", DeviceConfig{Name: "tap0", MTU: 9000, TxQueueLen: 1000, Queues: 4, Offload: tun.OffloadOff},
			DeviceConfig{Name: "tap0", MTU: 9000, TxQueueLen: 1000, Queues: 4, Offload: tun.OffloadOff}, ""},
		{"an invalid field names the device", DeviceConfig{MTU: 100}, DeviceConfig{}, "sandbox: device tun0: MTU 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.prepared()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("prepared(%+v) = %v, want an error containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("prepared(%+v) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

// The configuration crosses to the child as JSON: every field must
// survive the trip.
func TestChildConfigRoundTrip(t *testing.T) {
	in := childConfig{
		Command: []string{"sh", "-c", "true"},
		Device: DeviceConfig{
			Name: "tap0", Offload: tun.OffloadOn, MTU: 65520, TxQueueLen: 10000, Queues: 2,
			Addr4: netip.MustParsePrefix("10.0.2.100/24"), Gateway4: netip.MustParseAddr("10.0.2.2"),
			Addr6: netip.MustParsePrefix("fd00::100/64"), Gateway6: netip.MustParseAddr("fd00::2"),
			TAP: true, Unconfigured: true, MAC: "02:00:00:00:00:01",
		},
		ResolvConf: "nameserver 10.0.2.3\n", HidePaths: []string{"/run/user/0/tunstack"},
		Mode: modeRoot, PIDNS: true, Notes: []string{"a note"}, Attach: true,
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out childConfig
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestChildReplyErr(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wire     string // the child's message
		wantErr  string // "" for success
		notFound bool
	}{
		{"device", `{"tun_name":"tun0","offload":true}`, "", false},
		{"setup failure", `{"error":"set tun0 up: operation not permitted"}`, "sandbox: set tun0 up: operation not permitted", false},
		{"command not found", `{"not_found":"no-such-command"}`, "no-such-command: command not found", true},
		// A name that looks like the old string prefix is only a name.
		{"name with a colon", `{"not_found":"notfound:x"}`, "notfound:x: command not found", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r childReply
			if err := json.Unmarshal([]byte(tc.wire), &r); err != nil {
				t.Fatal(err)
			}
			err := r.err()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("%s: err() = %v, want nil", tc.wire, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || errors.Is(err, ErrNotFound) != tc.notFound {
				t.Fatalf("%s: err() = %v (ErrNotFound: %v), want %q (ErrNotFound: %v)",
					tc.wire, err, errors.Is(err, ErrNotFound), tc.wantErr, tc.notFound)
			}
		})
	}
}
