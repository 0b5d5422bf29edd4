package capture

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// filterCases are expressions and, for each packet of filterCorpus, the
// verdict tcpdump gives (checked against the real tcpdump when installed,
// in TestFilterAgreesWithTcpdump).
var filterCases = []struct {
	expr string
	want string // one digit per corpus packet: 1 matches
}{
	{"", "11111111111"},
	{"tcp", "11000100100"},
	{"udp", "00110010010"},
	{"icmp", "00001000000"},
	{"icmp6", "00000001000"},
	{"ip", "11111000111"},
	{"ip6", "00000111000"},
	{"port 53", "00110010000"},
	{"dst port 53", "00100010000"},
	{"src port 53", "00010000000"},
	{"tcp port 80", "11000000000"},
	{"udp port 80", "00000000000"},
	{"portrange 8000-8090", "00000000110"},
	{"host 10.0.2.3", "00110000000"},
	{"src host 10.0.2.100", "10101000001"},
	{"dst host 10.0.2.100", "01010000110"},
	{"host fd00::2", "00000101000"},
	{"net 10.0.2.0/24", "11111000111"},
	{"net 198.18.0.0/15", "00001000111"},
	{"src net 198.18.0.0/15", "00000000110"},
	{"net 10.0.2", "11111000111"},
	{"net 198.18.0.0 mask 255.254.0.0", "00001000111"},
	{"net fd00::/64", "00000111000"},
	{"not tcp", "00111011011"},
	{"! udp", "11001101101"},
	{"tcp and port 80", "11000000000"},
	{"tcp && dst port 443", "00000100000"},
	{"udp or icmp", "00111010010"},
	{"udp || icmp6", "00110011010"},
	{"not (tcp or udp)", "00001001001"},
	{"host 10.0.2.3 or 10.0.2.2", "11110000000"},
	{"port 53 or 80", "11110010000"},
	{"tcp port 80 or 443", "11000100000"},
	{"src or dst port 8080", "00000000100"},
	{"src and dst net 10.0.2.0/24", "11110000000"},
	{"ip and not port 53", "11001000111"},
	{"tcp or udp and port 53", "00110010000"},
	{"tcp or (udp and port 53)", "11110110100"},
	{"ip6 and tcp", "00000100000"},
	{"ip host 10.0.2.100", "11111000111"},
	{"ip6 host fd00::100", "00000111000"},
	{"udp dst port domain", "00100010000"},
	{"src host 198.18.0.2 and (port 8080 or port 8085)", "00000000110"},
	{"tcp[tcpflags] & tcp-syn != 0", "11000000100"},
	{"tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", "11000000100"},
	{"tcp[13] & 2 != 0", "11000000100"},
	{"tcp[13]&0x12=0x12", "00000000000"},
	{"ip[6:2] & 0x1fff = 0", "11111000111"},
	{"ip[0] & 0xf != 5", "00000000000"},
	{"ip[2:2] > 100", "00000000000"},
	{"ip[2:2]-20 > 60", "00011000000"},
	{"udp[4:2] - 8 >= 12", "00110000000"},
	{"udp[2:2] = 53 and not tcp", "00100000000"},
	{"icmp[icmptype] = icmp-echo", "00001000000"},
	{"icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply", "00000000000"},
	{"ip6[6] = 58", "00000001000"},
	{"ip6[40] = 128 or ip6[40] = 129", "00000001000"},
	{"icmp6[icmp6type] = icmp6-echo", "00000001000"},
	{"len > 100", "00000001000"},
	{"greater 100", "00000001000"},
	{"less 60", "11100100111"},
	{"tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "00000000000"},
	{"tcp[100:4] = 0 or tcp", "11000100100"},
	{"not tcp[100] = 1", "00111111011"},
	{"(ip[2:2] * 2) / 4 % 1000 > 10", "11111000111"},
	{"ip[1] | 3 ^ 1 = 3", "00000000000"},
	{"ip[8] << 1 >= 128", "11111000111"},
	{"tcp dst port 443 and tcp[tcpflags] & tcp-syn != 0", "00000000000"},
}

func corpusVerdicts(t *testing.T, f *Filter) string {
	t.Helper()
	var b strings.Builder
	for _, p := range filterCorpus() {
		if f.Match(p) {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

func TestFilter(t *testing.T) {
	for _, tc := range filterCases {
		t.Run(tc.expr, func(t *testing.T) {
			f, err := ParseFilter(tc.expr)
			if err != nil {
				t.Fatalf("ParseFilter(%q): %v", tc.expr, err)
			}
			if got := corpusVerdicts(t, f); got != tc.want {
				t.Errorf("ParseFilter(%q) verdicts %s, want %s", tc.expr, got, tc.want)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	for _, tc := range []struct {
		expr, mention string
	}{
		{"foo", `"foo"`},
		{"tcp prot 80", `"prot"`},
		{"host", "missing value"},
		{"port 99999", "99999"},
		{"host 10.0.2.300", `"10.0.2.300"`},
		{"(tcp", `")"`},
		{"tcp)", `")"`},
		{"tcp and", "ends early"},
		{"tcp & udp", `"&"`},
		{"src or src port 1", `"src"`},
		{"icmp port 1", "icmp"},
		{"net 10.0.2.1/24", "non-network"},
		{"ip6 host 10.0.2.1", "does not go with ip6"},
		{"portrange 1", "LOW-HIGH"},
		{"port nosuchservice", `"nosuchservice"`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := ParseFilter(tc.expr)
			if err == nil {
				t.Fatalf("ParseFilter(%q) succeeded, want an error", tc.expr)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("ParseFilter(%q) error %q does not mention %s", tc.expr, err, tc.mention)
			}
		})
	}
}

// TestFilterAgreesWithTcpdump runs every expression through the real
// tcpdump over the same packets, so the table's verdicts are tcpdump's.
func TestFilterAgreesWithTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed")
	}
	var pcap bytes.Buffer
	pw, err := NewPcapWriter(&pcap, 0)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0)
	for i, p := range filterCorpus() {
		if err := pw.WritePacket(Packet{Time: base.Add(time.Duration(i) * time.Second), Data: p, Len: len(p)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range filterCases {
		t.Run(tc.expr, func(t *testing.T) {
			cmd := exec.Command(tcpdump, "-nr", "-", "-tt", tc.expr)
			cmd.Stdin = bytes.NewReader(pcap.Bytes())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tcpdump %q: %v", tc.expr, err)
			}
			got := []byte(strings.Repeat("0", len(tc.want)))
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if line == "" {
					continue
				}
				var sec int64
				if _, err := fmtSscan(line, &sec); err != nil {
					t.Fatalf("tcpdump line %q: %v", line, err)
				}
				got[sec-base.Unix()] = '1'
			}
			if string(got) != tc.want {
				t.Errorf("tcpdump %q verdicts %s, table says %s", tc.expr, got, tc.want)
			}
		})
	}
}

// fmtSscan reads the integer seconds of a tcpdump -tt line.
func fmtSscan(line string, sec *int64) (int, error) {
	s, _, _ := strings.Cut(line, ".")
	return fmt.Sscan(s, sec)
}

// validityCases are expressions whose acceptance must agree with
// tcpdump's own filter compiler (tcpdump -d).
var validityCases = []string{
	"tcp[tcpflags] & tcp-syn != 0", "tcp[13] & 2 != 0", "ip[6:2] & 0x1fff = 0", "len >= 60",
	"greater 100", "less 1500", "icmp[icmptype] = icmp-echo", "udp[8:4] = 0xdeadbeef",
	"tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "ip[2:2] - 20 > 60", "(ip[0] & 0xf) << 2 > 20",
	"tcp[", "tcp[13", "tcp[13] &", "tcp[13:3] = 1", "ip[0] =", "len >", "greater",
	"tcp[tcpflags] & tcp-bogus != 0", "ip[0] & & 1 = 1", "ip[0] = = 1", "tcp[13] & 2 != 0 and",
	"port 99999", "portrange 1-", "host", "net 10.0.0.1/8", "tcp port 80 or", "(tcp", "tcp)",
}

func TestFilterValidityAgreesWithTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed")
	}
	var pcap bytes.Buffer
	if _, err := NewPcapWriter(&pcap, 0); err != nil {
		t.Fatal(err)
	}
	for _, expr := range validityCases {
		cmd := exec.Command(tcpdump, "-r", "-", "-d", expr)
		cmd.Stdin = bytes.NewReader(pcap.Bytes())
		out, terr := cmd.CombinedOutput()
		_, ourErr := ParseFilter(expr)
		if (terr == nil) != (ourErr == nil) {
			t.Errorf("%q: tcpdump -d says %v (%s), ParseFilter says %v", expr, terr, firstLine(out), ourErr)
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
