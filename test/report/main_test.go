package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	const pkg = "example.test/p"
	ev := func(action, test, output string) string {
		return `{"Action":"` + action + `","Package":"` + pkg + `","Test":"` + test + `","Output":` + quote(output) + "}\n"
	}
	for _, tc := range []struct {
		name       string
		in         string
		wantOut    []string // substrings of the plain output
		notOut     []string
		wantSkips  []string // "Test: reason"
		wantFailed bool
	}{
		{
			name: "pass and skip",
			in: ev("run", "TestA", "") + ev("output", "TestA", "=== RUN   TestA\n") + ev("output", "TestA", "--- PASS: TestA (0.00s)\n") + ev("pass", "TestA", "") +
				ev("run", "TestB", "") + ev("output", "TestB", "=== RUN   TestB\n") + ev("output", "TestB", "    b_test.go:9: needs root\n") +
				ev("output", "TestB", "--- SKIP: TestB (0.00s)\n") + ev("skip", "TestB", "") +
				ev("output", "", "PASS\n") + ev("output", "", "ok  \t"+pkg+"\t0.01s\n") + ev("pass", "", ""),
			wantOut:   []string{"ok  \t" + pkg},
			notOut:    []string{"--- PASS", "=== RUN", "PASS\n"},
			wantSkips: []string{"TestB: b_test.go:9: needs root"},
		},
		{
			name: "failure shows its output",
			in: ev("run", "TestC", "") + ev("output", "TestC", "    c_test.go:3: got 1, want 2\n") + ev("output", "TestC", "--- FAIL: TestC (0.00s)\n") +
				ev("fail", "TestC", "") + ev("output", "", "FAIL\n") + ev("output", "", "FAIL\t"+pkg+"\t0.01s\n") + ev("fail", "", ""),
			wantOut:    []string{"got 1, want 2", "--- FAIL: TestC", "FAIL\t" + pkg},
			wantFailed: true,
		},
		{
			name:       "build failure",
			in:         `{"ImportPath":"example.test/p","Action":"build-output","Output":"p.go:1: syntax error\n"}` + "\n" + `{"ImportPath":"example.test/p","Action":"build-fail"}` + "\n",
			wantFailed: true,
		},
		{
			name:    "plain lines pass through",
			in:      "go: downloading x\n",
			wantOut: []string{"go: downloading x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			skips, failed := report(strings.NewReader(tc.in), &out)
			for _, s := range tc.wantOut {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.notOut {
				if strings.Contains(out.String(), s) {
					t.Errorf("output has %q:\n%s", s, out.String())
				}
			}
			var got []string
			for _, s := range skips {
				got = append(got, s.test+": "+strings.Join(s.reason, " | "))
			}
			if strings.Join(got, "\n") != strings.Join(tc.wantSkips, "\n") {
				t.Errorf("skips %q, want %q", got, tc.wantSkips)
			}
			if failed != tc.wantFailed {
				t.Errorf("failed = %v, want %v", failed, tc.wantFailed)
			}
		})
	}
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
