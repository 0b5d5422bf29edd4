package test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// required reports whether CI demands that nothing skips.
func required() bool { return os.Getenv("TUNSTACK_REQUIRE_TUN") == "1" }

// skipf skips, or fails when TUNSTACK_REQUIRE_TUN=1.
func skipf(t *testing.T, format string, args ...any) {
	t.Helper()
	if required() {
		t.Fatalf("TUNSTACK_REQUIRE_TUN=1 but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// needTun checks that a sandbox can be created by the given user
// (0: root, else an unprivileged uid).
func needTun(t *testing.T, uid int) {
	t.Helper()
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		skipf(t, "no /dev/net/tun: %v", err)
	}
	if os.Geteuid() != 0 {
		if uid == 0 {
			skipf(t, "needs root")
		}
		if err := unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK); err != nil {
			skipf(t, "/dev/net/tun not usable without root (chmod 0666 /dev/net/tun): %v", err)
		}
		return
	}
	if uid != 0 {
		var st unix.Stat_t
		if err := unix.Stat("/dev/net/tun", &st); err != nil || st.Mode&0o006 != 0o006 {
			skipf(t, "/dev/net/tun is not mode 0666, so an unprivileged user cannot open it (chmod 0666 /dev/net/tun)")
		}
		if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
			skipf(t, "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)")
		}
	}
}

// needRoot skips unless running as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipf(t, "needs root (creates network namespaces)")
	}
}

// needProg skips when a program the test drives is missing.
func needProg(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			skipf(t, "%s is not installed (apt-get install it; .ci/run does)", n)
		}
	}
}
