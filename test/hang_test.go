package test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hangReport describes the process tree under pid for a run that did not
// end: each process's command line, state, wait channel and kernel stack
// (root can read those). It then sends SIGABRT to every process of the
// tree running the tunstack binary, so that, started with GOTRACEBACK=all,
// each prints all its goroutines to its standard error and exits.
func hangReport(pid int) string {
	var b strings.Builder
	tree := descendants(pid)
	for _, p := range tree {
		fmt.Fprintf(&b, "pid %d ppid %d %q state=%s wchan=%s\n", p.pid, p.ppid, p.cmdline, p.state, procText(p.pid, "wchan"))
		for _, l := range strings.Split(strings.TrimSpace(procText(p.pid, "stack")), "\n") {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	for _, p := range tree {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid)); err == nil && exe == binPath {
			syscall.Kill(p.pid, syscall.SIGABRT)
		}
	}
	// Give the dumps time to reach the output pipes.
	time.Sleep(2 * time.Second)
	return b.String()
}

// procInfo is one process of a hung tree.
type procInfo struct {
	pid, ppid int
	state     string
	cmdline   string
}

// descendants returns pid and every process below it, from /proc.
func descendants(pid int) []procInfo {
	all := map[int]procInfo{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		n, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile(d + "/cmdline")
		all[n] = procInfo{pid: n, ppid: ppid, state: f[0], cmdline: strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))}
	}
	var out []procInfo
	want := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for n, p := range all {
			if !want[n] && want[p.ppid] {
				want[n], changed = true, true
			}
		}
	}
	for n := range want {
		if p, ok := all[n]; ok {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

func procText(pid int, name string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}
