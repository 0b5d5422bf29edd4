package test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ctUserName is the unprivileged user the container tests run as.
const ctUserName = "tunstack-ct"

// ctUser is an unprivileged user with subordinate uid and gid ranges, as
// rootlesskit and rootless podman need, and a private home.
type ctUser struct {
	name     string
	uid, gid int
	home     string // owned by the user; also XDG_RUNTIME_DIR's parent
	runtime  string // XDG_RUNTIME_DIR (0700)
}

// containerUser returns the test user, creating it and its subordinate id
// ranges if missing; all of it is undone when the test ends.
func containerUser(t *testing.T) *ctUser {
	t.Helper()
	needRoot(t)
	needProg(t, "useradd", "userdel", "newuidmap", "newgidmap")
	if _, err := user.Lookup(ctUserName); err != nil {
		out, err := exec.Command("useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", ctUserName).CombinedOutput()
		if err != nil {
			t.Fatalf("useradd %s: %v\n%s", ctUserName, err, out)
		}
		t.Cleanup(func() { exec.Command("userdel", ctUserName).Run() })
	}
	u, err := user.Lookup(ctUserName)
	if err != nil {
		t.Fatalf("look up %s: %v", ctUserName, err)
	}
	c := &ctUser{name: ctUserName}
	c.uid, _ = strconv.Atoi(u.Uid)
	c.gid, _ = strconv.Atoi(u.Gid)
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		ensureSubIDs(t, f, ctUserName)
	}
	c.home, err = os.MkdirTemp("", "tsct-") // short: podman's API socket path must stay under 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	c.runtime = filepath.Join(c.home, "r")
	os.Mkdir(c.runtime, 0o700)
	for _, d := range []string{c.home, c.runtime} {
		if err := os.Chown(d, c.uid, c.gid); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(c.home, 0o755)
	t.Cleanup(func() {
		// Rootless podman leaves a pause process holding its namespaces.
		if b, err := os.ReadFile(filepath.Join(c.runtime, "libpod", "tmp", "pause.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(c.home)
	})
	return c
}

// ensureSubIDs gives name a 65536-id range in file (/etc/subuid or
// /etc/subgid) unless it has one, and removes the added line at cleanup.
func ensureSubIDs(t *testing.T, file, name string) {
	t.Helper()
	data, _ := os.ReadFile(file)
	next := 100000
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 3 {
			continue
		}
		if f[0] == name {
			return
		}
		start, _ := strconv.Atoi(f[1])
		n, _ := strconv.Atoi(f[2])
		next = max(next, start+n)
	}
	line := fmt.Sprintf("%s:%d:65536\n", name, next)
	fh, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("add %s range: %v", file, err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		fh.WriteString("\n") // the last entry must stay on its own line
	}
	fh.WriteString(line)
	fh.Close()
	t.Cleanup(func() {
		b, _ := os.ReadFile(file)
		os.WriteFile(file, bytes.Replace(b, []byte(line), nil, 1), 0o644)
	})
}

// ctResult is one program's outcome.
type ctResult struct {
	stdout, stderr string
	code           int
}

// run runs a program as the user with the given environment additions;
// stdin may be nil.
func (c *ctUser) run(t *testing.T, timeout time.Duration, env []string, stdin io.Reader, argv ...string) ctResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := c.command(ctx, env, argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, stdin
	err := cmd.Run()
	r := ctResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if r.code < 0 {
			r.code = 255
		}
	default:
		t.Fatalf("run %v: %v", argv, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%v did not finish within %v\nstdout: %s\nstderr: %s", argv, timeout, r.stdout, r.stderr)
	}
	return r
}

// command prepares argv to run as the user.
func (c *ctUser) command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + c.home, "XDG_RUNTIME_DIR=" + c.runtime, "TMPDIR=" + c.home, "USER=" + c.name,
	}, env...)
	cmd.Dir = c.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid), Groups: []uint32{}}}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// slirpImpl is a program offered to the callers as slirp4netns.
type slirpImpl struct {
	name  string
	path  string
	works bool // false: the callers must fail with it
}

// slirpImpls are tunstack (through a symlink named slirp4netns, as a user
// installs it), the real slirp4netns (so the harness is known to test what
// the callers need) and /bin/false (so it is known to be able to fail).
func slirpImpls(t *testing.T) []slirpImpl {
	t.Helper()
	dir := sharedDir(t, "tunstack-slirp-", 0o755)
	link := filepath.Join(dir, "slirp4netns")
	if err := os.Symlink(binPath, link); err != nil {
		t.Fatal(err)
	}
	impls := []slirpImpl{{"tunstack", link, true}}
	real, err := exec.LookPath("slirp4netns")
	if err != nil {
		skipf(t, "slirp4netns is not installed (the reference the harness is checked against; .ci/run installs it)")
	}
	return append(impls, slirpImpl{"slirp4netns", real, true}, slirpImpl{"false", "/bin/false", false})
}

// busyboxRootfs writes a tarball of a root filesystem holding the static
// busybox and its applets, for podman import.
func busyboxRootfs(t *testing.T, dir string) string {
	t.Helper()
	needProg(t, "busybox")
	path, _ := exec.LookPath("busybox")
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	static := f.Section(".interp") == nil
	f.Close()
	if !static {
		skipf(t, "%s is not statically linked (install busybox-static)", path)
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "etc/", "tmp/", "proc/", "sys/", "dev/", "www/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	for _, a := range []string{"sh", "wget", "httpd", "sha256sum", "ip", "sleep", "grep", "cat", "echo", "seq"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	page := []byte("hello from the container\n")
	tw.WriteHeader(&tar.Header{Name: "www/index.html", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(page))})
	tw.Write(page)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// processesOf lists the user's processes whose command name is comm.
func processesOf(uid int, comm string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || int(st.Uid) != uid {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(b)) == comm {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			found = append(found, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}
