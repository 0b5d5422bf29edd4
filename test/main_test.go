// Package test holds tunstack's end-to-end tests: they build the tunstack
// binary and drive it with real programs (curl, dig, ping, getent) inside
// real sandboxes, as root and as an unprivileged user.
//
// Tests that need /dev/net/tun, namespaces or root skip with the reason,
// unless TUNSTACK_REQUIRE_TUN=1 (set by CI), where a skip is a failure.
package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binPath is the tunstack binary built for this test run.
var binPath string

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode, os.Args))
	}
	os.Exit(mainWithBinary(m))
}

func mainWithBinary(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tunstack-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// World-readable so the unprivileged tests can run the binaries.
	os.Chmod(dir, 0o755)
	binPath = filepath.Join(dir, "tunstack")
	build := exec.Command("go", "build", "-o", binPath, "../cmd/tunstack")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tunstack:", err)
		return 1
	}
	// A copy of the test binary for helper programs run as another user.
	self, err := os.Executable()
	if err == nil {
		helperPath = filepath.Join(dir, "helper")
		if data, err := os.ReadFile(self); err == nil {
			os.WriteFile(helperPath, data, 0o755)
		}
	}
	return m.Run()
}
