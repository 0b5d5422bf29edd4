package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DirEnv overrides the control socket directory.
const DirEnv = "TUNSTACK_CONTROL_DIR"

// Dir returns the directory holding control sockets: $TUNSTACK_CONTROL_DIR,
// /run/tunstack as root, $XDG_RUNTIME_DIR/tunstack, or, without
// XDG_RUNTIME_DIR, /tmp/tunstack-UID.
func Dir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/tunstack"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "tunstack")
	}
	return fmt.Sprintf("/tmp/tunstack-%d", os.Geteuid())
}

// DefaultName is the instance name used without --name.
func DefaultName(pid int) string { return fmt.Sprintf("ts-%d", pid) }

// ValidateName checks an instance name: 1 to 64 letters, digits, '.', '_'
// or '-', not starting with '.' or '-'.
func ValidateName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("instance name %q: must be 1 to 64 characters", name)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("instance name %q: must not start with %q", name, name[0])
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			return fmt.Errorf("instance name %q: character %q not allowed (use letters, digits, '.', '_', '-')", name, r)
		}
	}
	return nil
}

// SocketPath returns the control socket of instance name in dir.
func SocketPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// ensureDir creates dir with mode 0700, or checks that an existing one is
// ours and not open to others.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control: create %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("control: %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		// Tighten a directory we own; refuse one we do not.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("control: %s is mode %v and cannot be made 0700: %w", dir, st.Mode().Perm(), err)
		}
	}
	return nil
}

// errNoInstance is returned when no running instance matches.
var errNoInstance = errors.New("no running tunstack instance")
