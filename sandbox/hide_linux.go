package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// hidePath covers dir with an empty tmpfs in the child's private mount
// namespace, so the command cannot reach what is there (the control
// sockets: a rootless sandbox runs as the same host user, so file modes
// alone would not keep it out). It returns a note when it could not.
func hidePath(dir string) string {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Sprintf("%s not hidden from the sandbox: make mounts private: %v", dir, err)
	}
	if err := unix.Mount("tunstack", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=4k"); err != nil {
		return fmt.Sprintf("%s not hidden from the sandbox: %v", dir, err)
	}
	return ""
}
