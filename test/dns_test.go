package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// startDNS serves A records for *.tunstack.test (198.18.7.7) on 127.0.0.1,
// over UDP and TCP on the same port, and refuses everything else.
func startDNS(t *testing.T) string {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; i < 20; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if ln == nil {
		t.Fatal("no port free for UDP and TCP together")
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if strings.HasSuffix(q.Name, "tunstack.test.") && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 60 IN A 198.18.7.7")
			m.Answer = append(m.Answer, rr)
		} else if !strings.HasSuffix(q.Name, "tunstack.test.") {
			m.Rcode = dns.RcodeRefused
		}
		w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return pc.LocalAddr().String()
}

func TestDNSRelay(t *testing.T) {
	needTun(t, 0)
	needProg(t, "dig", "getent")
	up := startDNS(t)
	tests := []struct {
		name string
		cmd  string
	}{
		{"udp", "dig +short +time=2 +tries=1 @10.0.2.3 www.tunstack.test A"},
		{"tcp", "dig +tcp +short +time=2 +tries=1 @10.0.2.3 www.tunstack.test A"},
		{"udp over ipv6", "dig +short +time=2 +tries=1 @fd00::3 www.tunstack.test A"},
		{"resolv.conf via getent", "getent ahostsv4 www.tunstack.test | head -n1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRun(t, runOpts{}, "run", "--dns-upstream", up, "--", "sh", "-c", tt.cmd)
			if !strings.HasPrefix(strings.TrimSpace(r.stdout), "198.18.7.7") {
				t.Fatalf("%s: got %q, want 198.18.7.7\nstderr: %s", tt.cmd, r.stdout, r.stderr)
			}
		})
	}
}

// TestOfflineStart runs tunstack on a "host" with no network at all (a
// namespace with only lo and no routes) and no resolv.conf nameserver: it
// must start, say what is missing, and answer DNS with SERVFAIL at once.
func TestOfflineStart(t *testing.T) {
	needTun(t, 0)
	needRoot(t)
	needProg(t, "ip", "unshare", "dig")
	ns := fmt.Sprintf("tso%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	empty := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(empty, nil, 0o644)
	script := fmt.Sprintf("mount --bind %s /etc/resolv.conf && exec %s run -- dig +time=2 +tries=1 @10.0.2.3 www.example.test", empty, binPath)
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("offline tunstack: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "status: SERVFAIL") {
		t.Fatalf("want SERVFAIL from the relay with no upstream, got:\n%s", out)
	}
	if !strings.Contains(string(out), "no upstream resolver") {
		t.Errorf("tunstack did not say DNS has no upstream:\n%s", out)
	}
}
