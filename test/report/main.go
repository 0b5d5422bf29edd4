// Command report reads `go test -json` on standard input and prints what
// a plain `go test` prints (each package's ok/FAIL line, the output of
// failed tests), then a summary of every skipped test with its reason, so
// a run that passed only because tests were skipped says so. It exits 1
// when a test or package failed. `make test` runs the tests through it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// skip is a skipped test and the lines it logged.
type skip struct {
	pkg, test string
	reason    []string
}

// report consumes the stream and writes the plain output to w; it returns
// the skipped tests and whether anything failed.
func report(r io.Reader, w io.Writer) ([]skip, bool) {
	var skips []skip
	failed := false
	buf := map[string][]string{} // output per package and test
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, sc.Text()) // not an event: pass it on
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Action == "output" && e.Test == "":
			if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
				fmt.Fprint(w, e.Output)
			}
		case e.Action == "output" || e.Action == "build-output":
			buf[key] = append(buf[key], e.Output)
		case e.Action == "fail" || e.Action == "build-fail":
			failed = true
			for _, l := range buf[key] {
				fmt.Fprint(w, l)
			}
			delete(buf, key)
		case e.Action == "skip" && e.Test != "":
			skips = append(skips, skip{pkg: e.Package, test: e.Test, reason: reasons(buf[key])})
			delete(buf, key)
		case e.Action == "pass":
			delete(buf, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "report: reading go test -json: %v\n", err)
		failed = true
	}
	return skips, failed
}

// reasons keeps what a skipped test logged, without go test's own
// === RUN and --- SKIP lines.
func reasons(lines []string) []string {
	var out []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		out = append(out, t)
	}
	return out
}

func printSkips(w io.Writer, skips []skip) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "No test was skipped.")
		return
	}
	fmt.Fprintf(w, "\n%d skipped tests:\n", len(skips))
	for _, s := range skips {
		reason := strings.Join(s.reason, " | ")
		if reason == "" {
			reason = "(no reason given)"
		}
		fmt.Fprintf(w, "  SKIP %s %s: %s\n", s.pkg, s.test, reason)
	}
}

func main() {
	skips, failed := report(os.Stdin, os.Stdout)
	printSkips(os.Stdout, skips)
	if failed {
		os.Exit(1)
	}
}
