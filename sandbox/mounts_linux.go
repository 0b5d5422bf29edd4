package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// prepareMounts makes the init child's mount namespace private and
// mounts what the command must see: a private resolv.conf, empty covers
// over the hidden directories and, with a PID namespace, its /proc. The
// command's mount namespace is created beneath these, in a user
// namespace of its own, so the kernel locks them: the command cannot
// unmount a cover to uncover what is under it. It returns notes for what
// could not be done and an error for what makes the sandbox unusable.
func prepareMounts(cfg *childConfig) ([]string, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	var notes []string
	if cfg.ResolvConf != "" {
		if note := mountResolvConf(cfg.ResolvConf); note != "" {
			notes = append(notes, note)
		}
	}
	for _, dir := range cfg.HidePaths {
		if note := hidePath(dir); note != "" {
			notes = append(notes, note)
		}
	}
	if cfg.PIDNS {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return notes, fmt.Errorf("mount /proc for the PID namespace: %w (run with --no-pidns where proc cannot be mounted)", err)
		}
	}
	reenterWorkingDir()
	return notes, nil
}

// reenterWorkingDir resolves the working directory again, through the
// covers: one inherited from inside a covered directory would otherwise
// still reach what the cover hides. Where it no longer resolves, "/".
func reenterWorkingDir() {
	wd, err := unix.Getwd()
	if err != nil || unix.Chdir(wd) != nil {
		unix.Chdir("/")
	}
}

// hidePath covers dir with an empty tmpfs, so the command cannot reach
// what is there (the control sockets: a rootless sandbox runs as the same
// host user, so file modes alone would not keep it out). It returns a
// note when it could not.
func hidePath(dir string) string {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	if err := unix.Mount("tunstack", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=4k"); err != nil {
		return fmt.Sprintf("%s not hidden from the sandbox: %v", dir, err)
	}
	return ""
}

// mountResolvConf bind-mounts a file with content over /etc/resolv.conf.
// It returns a note when it could not.
func mountResolvConf(content string) string {
	if _, err := os.Stat("/etc/resolv.conf"); err != nil {
		return "the host has no /etc/resolv.conf to replace; point the sandbox's resolver at the DNS address yourself"
	}
	tmp, err := os.CreateTemp("", "tunstack-resolv-*")
	if err != nil {
		return fmt.Sprintf("resolv.conf not replaced: %v", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.WriteString(content); err != nil {
		return fmt.Sprintf("resolv.conf not replaced: %v", err)
	}
	os.Chmod(tmp.Name(), 0o644)
	if err := unix.Mount(tmp.Name(), "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Sprintf("resolv.conf not replaced: bind mount: %v", err)
	}
	return ""
}
