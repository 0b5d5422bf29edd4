package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tunstack/tunstack/control"
)

// synFilter is the filter both tunstack's capture and real tcpdump's
// reading apply in TestCaptureAnyCookedLikeTcpdump.
const synFilter = "tcp[tcpflags] & tcp-syn != 0"

// TestCaptureAnyCookedLikeTcpdump captures a curl in the sandbox with -i
// any three ways at once: a pcap (-w), text, and text through a SYN
// filter. Real tcpdump reads the pcap as LINUX_SLL2 with both directions
// and tun0's index (as "tunstack ip link" lists it), and prints every
// line as tunstack printed it, the interface column aside (tcpdump -r
// names an index by the reader's own interfaces); reading it through the
// same filter gives the lines the filtered capture printed.
func TestCaptureAnyCookedLikeTcpdump(t *testing.T) {
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			needTun(t, u.uid)
			needProg(t, "curl", "tcpdump")
			testCaptureAny(t, u.uid)
		})
	}
}

func testCaptureAny(t *testing.T, uid int) {
	port := startHTTP(t, "127.0.0.1:0")
	ctl := controlDir(t, uid)
	env := []string{control.DirEnv + "=" + ctl}
	// Not t.TempDir: its parent is private to root, and the sandbox may
	// run as nobody.
	dir := sharedDir(t, "tunstack-capany-", 0o755)
	gofile := filepath.Join(dir, "go")
	name := fmt.Sprintf("capany%d", os.Getpid())
	script := fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; curl -sS --fail --max-time 10 http://10.0.2.2:%d/", gofile, port)
	run := startBG(t, uid, env, binPath, "run", "--name", name, "--", "sh", "-c", script)
	waitControlSocket(t, run, control.SocketPath(ctl, name))
	links := mustRun(t, runOpts{env: env}, "ip", "--name", name, "link").stdout
	m := regexp.MustCompile(`(?m)^(\d+): tun0:`).FindStringSubmatch(links)
	if m == nil {
		t.Fatalf("tunstack ip link lists no tun0:\n%s", links)
	}
	tunIndex := m[1]

	// The handshake, the request and its acknowledgement: 4 packets in
	// both directions whatever the timing of the rest; the SYN filter
	// keeps the SYN and the SYN-ACK.
	pcap := startTcpdump(t, env, "--name", name, "-i", "any", "-w", "-", "-c", "4", "tcp")
	text := startTcpdump(t, env, "--name", name, "-i", "any", "-nn", "-c", "4", "tcp")
	syns := startTcpdump(t, env, "--name", name, "-i", "any", "-nn", "-c", "2", synFilter)
	for _, p := range []*tcpdumpProc{pcap, text, syns} {
		p.waitListening(t, "-i any")
		if s := p.stderr.String(); !strings.Contains(s, "listening on any, link-type LINUX_SLL2 (Linux cooked v2)") {
			t.Errorf("tunstack tcpdump -i any stderr %q, want LINUX_SLL2", s)
		}
	}
	if err := os.WriteFile(gofile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*tcpdumpProc{pcap, text, syns} {
		select {
		case <-p.done:
			if p.err != nil {
				t.Fatalf("tunstack tcpdump -i any: %v\nstderr: %s", p.err, p.stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("tunstack tcpdump -i any: no end after -c; stderr: %s", p.stderr.String())
		}
	}
	select {
	case <-run.done:
	case <-time.After(20 * time.Second):
		t.Fatal("tunstack run did not end after curl")
	}
	if !strings.HasPrefix(run.stdout.String(), "hello from 10.0.2.2:") {
		t.Errorf("curl: %q\nstderr: %s", run.stdout.String(), run.stderr.String())
	}

	// -e: the link type, the index and both directions.
	eOut, eErr := readPcap(t, pcap.stdout.String(), "-nn", "-e")
	if !strings.Contains(eErr, "link-type LINUX_SLL2") {
		t.Errorf("tcpdump -r -e: %q, want link-type LINUX_SLL2", eErr)
	}
	for _, dir := range []string{"In ", "Out"} {
		want := regexp.MustCompile(`(?m)^\S+ \S+\s+` + dir + ` ifindex ` + tunIndex + ` ethertype IPv4 \(0x0800\), length \d+: 10\.0\.2\.`)
		if !want.MatchString(eOut) {
			t.Errorf("tcpdump -r -e shows no %q packet on ifindex %s:\n%s", dir, tunIndex, eOut)
		}
	}

	// Without -e, tcpdump's lines are tunstack's, the interface aside.
	// (-S: tunstack prints absolute sequence numbers.)
	all, _ := readPcap(t, pcap.stdout.String(), "-nn", "-S")
	compareCooked(t, "tcp", text.stdout.String(), all, 4)
	// The filter agrees with tcpdump's: the same SYN and SYN-ACK.
	filtered, _ := readPcap(t, pcap.stdout.String(), "-nn", "-S", synFilter)
	compareCooked(t, synFilter, syns.stdout.String(), filtered, 2)
	if !strings.Contains(syns.stdout.String(), "tun0  In  IP 10.0.2.100.") || !strings.Contains(syns.stdout.String(), "tun0  Out IP 10.0.2.2.") ||
		!strings.Contains(syns.stdout.String(), "Flags [S]") || !strings.Contains(syns.stdout.String(), "Flags [S.]") {
		t.Errorf("%s: want the SYN In and the SYN-ACK Out on tun0:\n%s", synFilter, syns.stdout.String())
	}
}

// readPcap has real tcpdump read a pcap with args and returns its output
// and its stderr.
func readPcap(t *testing.T, pcap string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rd := exec.CommandContext(ctx, "tcpdump", append([]string{"-r", "-"}, args...)...)
	rd.Stdin = strings.NewReader(pcap)
	var out, errb bytes.Buffer
	rd.Stdout, rd.Stderr = &out, &errb
	if err := rd.Run(); err != nil {
		t.Fatalf("tcpdump -r - %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// cookedLine splits "TIME IFACE DIR REST" into the interface and the
// line without it.
var cookedLine = regexp.MustCompile(`^(\S+) (\S+)\s+(In |Out) (.*)$`)

// compareCooked checks that tunstack printed n lines and that tcpdump
// -r printed the same ones: time, direction and packet, with tunstack
// naming the interface tun0.
func compareCooked(t *testing.T, what, ours, theirs string, n int) {
	t.Helper()
	o := strings.Split(strings.TrimSpace(ours), "\n")
	th := strings.Split(strings.TrimSpace(theirs), "\n")
	if len(o) != n || len(th) != n {
		t.Fatalf("%s: tunstack printed %d lines, tcpdump -r %d, want %d:\n%s\ntcpdump -r:\n%s", what, len(o), len(th), n, ours, theirs)
	}
	for i := range o {
		mo, mt := cookedLine.FindStringSubmatch(o[i]), cookedLine.FindStringSubmatch(th[i])
		if mo == nil || mt == nil || mo[2] != "tun0" || mo[1] != mt[1] || mo[3] != mt[3] || mo[4] != mt[4] {
			t.Errorf("%s, packet %d:\ntunstack  %q\ntcpdump -r %q", what, i, o[i], th[i])
			continue
		}
		// The columns line up as tcpdump's: only the name differs.
		if pad := 5 - len(mt[2]); pad > 0 && strings.Replace(th[i], mt[2]+strings.Repeat(" ", pad), "tun0 ", 1) != o[i] {
			t.Errorf("%s, packet %d: columns differ:\ntunstack  %q\ntcpdump -r %q", what, i, o[i], th[i])
		}
	}
}
