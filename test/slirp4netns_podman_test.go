package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podmanImage is the local busybox image the podman tests import.
const podmanImage = "localhost/tunstack-busybox"

// podmanEnv is rootless podman for the test user, with a throwaway vfs
// store, the local busybox image, and one containers.conf per slirp4netns
// implementation (network_cmd_path).
type podmanEnv struct {
	u   *ctUser
	dir string
}

func newPodman(t *testing.T) *podmanEnv {
	t.Helper()
	needProg(t, "podman", "runc")
	u := containerUser(t)
	needTun(t, u.uid)
	p := &podmanEnv{u: u, dir: u.home}
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(p.dir, "storage"), filepath.Join(u.runtime, "containers"))
	p.write(t, "storage.conf", storage)
	tarball := busyboxRootfs(t, p.dir)
	r := p.podman(t, slirpImpl{path: "/bin/false"}, 120*time.Second, "import", tarball, podmanImage)
	if r.code != 0 {
		t.Fatalf("podman import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return p
}

func (p *podmanEnv) write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// podman runs podman as the user with impl as its slirp4netns.
func (p *podmanEnv) podman(t *testing.T, impl slirpImpl, timeout time.Duration, args ...string) ctResult {
	t.Helper()
	return p.tool(t, impl, timeout, append([]string{"podman"}, args...)...)
}

// tool runs podman or buildah (argv) as the user with impl as their
// slirp4netns.
func (p *podmanEnv) tool(t *testing.T, impl slirpImpl, timeout time.Duration, argv ...string) ctResult {
	t.Helper()
	conf := p.write(t, "containers-"+filepath.Base(impl.path)+".conf", fmt.Sprintf(`[engine]
network_cmd_path = %q
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
`, impl.path, filepath.Join(p.dir, "events.log")))
	env := []string{"CONTAINERS_CONF=" + conf, "CONTAINERS_STORAGE_CONF=" + filepath.Join(p.dir, "storage.conf")}
	return p.u.run(t, timeout, env, nil, argv...)
}

// TestSlirp4netnsPodmanFetch: podman run --network
// slirp4netns:allow_host_loopback=true with tunstack as network_cmd_path;
// the container fetches a host file intact (the real slirp4netns too;
// /bin/false fails).
func TestSlirp4netnsPodmanFetch(t *testing.T) {
	p := newPodman(t)
	port := startHTTP(t, "127.0.0.1:0")
	_, sum := testPayload()
	for _, impl := range slirpImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			r := p.podman(t, impl, 120*time.Second, "run", "--rm", "--pull=never", "--network", "slirp4netns:allow_host_loopback=true",
				podmanImage, "sh", "-c", fmt.Sprintf("wget -q -O - http://10.0.2.2:%d/file | sha256sum", port))
			ok := r.code == 0 && strings.Contains(r.stdout, sum)
			if ok != impl.works {
				t.Fatalf("podman with %s: exit %d, want success %v\nstdout: %s\nstderr: %s", impl.path, r.code, impl.works, r.stdout, r.stderr)
			}
		})
	}
}

// TestSlirp4netnsPodmanPublish: -p 127.0.0.1:HP:8080 with both port
// handlers (slirp4netns's API socket, and rootlessport) reaches httpd in
// the container; podman stop leaves no slirp4netns process behind.
func TestSlirp4netnsPodmanPublish(t *testing.T) {
	p := newPodman(t)
	for _, impl := range slirpImpls(t) {
		for _, handler := range []string{"slirp4netns", "rootlesskit"} {
			t.Run(impl.name+"/"+handler, func(t *testing.T) {
				hp := freePort(t)
				name := fmt.Sprintf("tunstack-web-%d", hp)
				t.Cleanup(func() { p.podman(t, impl, 60*time.Second, "rm", "-f", "-t", "0", name) })
				r := p.podman(t, impl, 120*time.Second, "run", "-d", "--name", name, "--pull=never",
					"--network", "slirp4netns:allow_host_loopback=true,port_handler="+handler,
					"-p", fmt.Sprintf("127.0.0.1:%d:8080", hp), podmanImage, "httpd", "-f", "-p", "8080", "-h", "/www")
				if r.code != 0 {
					if !impl.works {
						return
					}
					t.Fatalf("podman run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
				}
				body, err := pollGet(fmt.Sprintf("http://127.0.0.1:%d/", hp), nil, 20*time.Second)
				if (err == nil && strings.Contains(body, "hello from the container")) != impl.works {
					t.Fatalf("with %s: got %q, %v; want success %v", impl.path, body, err, impl.works)
				}
				// The check below must be able to see the process it
				// expects gone.
				if running := slirpProcesses(p.u.uid); len(running) == 0 {
					t.Fatalf("no slirp4netns process of uid %d found while the container runs", p.u.uid)
				}
				if r := p.podman(t, impl, 60*time.Second, "stop", "-t", "1", name); r.code != 0 {
					t.Fatalf("podman stop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
				}
				var left []string
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
					if left = slirpProcesses(p.u.uid); len(left) == 0 {
						break
					}
				}
				if len(left) > 0 {
					t.Fatalf("after podman stop, still running: %v", left)
				}
			})
		}
	}
}

// TestSlirp4netnsPodmanIPv6: with enable_ipv6 the container gets an
// fd00::/64 address by SLAAC and reaches the host's ::1 at fd00::2.
func TestSlirp4netnsPodmanIPv6(t *testing.T) {
	p := newPodman(t)
	port := startHTTP(t, "[::1]:0")
	_, sum := testPayload()
	script := fmt.Sprintf(`for i in $(seq 50); do ip -6 addr show scope global | grep -q 'inet6 fd00::' && break; sleep 0.2; done
ip -6 addr show scope global
wget -q -O - 'http://[fd00::2]:%d/file' | sha256sum`, port)
	for _, impl := range slirpImpls(t) {
		if !impl.works {
			continue // covered by the IPv4 tests
		}
		t.Run(impl.name, func(t *testing.T) {
			r := p.podman(t, impl, 120*time.Second, "run", "--rm", "--pull=never",
				"--network", "slirp4netns:allow_host_loopback=true,enable_ipv6=true", podmanImage, "sh", "-c", script)
			if r.code != 0 || !strings.Contains(r.stdout, "inet6 fd00::") || !strings.Contains(r.stdout, sum) {
				t.Fatalf("podman with %s: exit %d, want an fd00:: address and the file\nstdout: %s\nstderr: %s", impl.path, r.code, r.stdout, r.stderr)
			}
		})
	}
}

// slirpProcesses lists uid's slirp4netns processes (tunstack started
// through the symlink is named so too) and tunstack helpers.
func slirpProcesses(uid int) []string {
	return append(processesOf(uid, "slirp4netns"), processesOf(uid, "tunstack")...)
}

// TestSlirp4netnsBuildahRun: buildah run (rootless, private network: its
// slirp4netns) in a working container fetches a host file intact. Buildah
// 1.28 ignores network_cmd_path and runs the slirp4netns on PATH, so each
// implementation is put first on PATH under that name.
func TestSlirp4netnsBuildahRun(t *testing.T) {
	needProg(t, "buildah")
	p := newPodman(t)
	port := startHTTP(t, "127.0.0.1:0")
	_, sum := testPayload()
	for _, impl := range slirpImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			r := p.tool(t, impl, 60*time.Second, "buildah", "from", "--pull=never", podmanImage)
			ctr := strings.TrimSpace(r.stdout)
			if r.code != 0 || ctr == "" {
				t.Fatalf("buildah from: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			t.Cleanup(func() { p.tool(t, impl, 60*time.Second, "buildah", "rm", ctr) })
			dir := filepath.Join(p.dir, "path-"+impl.name)
			os.Mkdir(dir, 0o755)
			if err := os.Symlink(impl.path, filepath.Join(dir, "slirp4netns")); err != nil {
				t.Fatal(err)
			}
			r = p.tool(t, impl, 120*time.Second, "env", "PATH="+dir+":/usr/sbin:/usr/bin:/sbin:/bin", "buildah", "run", "--network", "private", ctr,
				"sh", "-c", fmt.Sprintf("wget -q -O - http://10.0.2.2:%d/file | sha256sum", port))
			ok := r.code == 0 && strings.Contains(r.stdout, sum)
			if ok != impl.works {
				t.Fatalf("buildah run with %s: exit %d, want success %v\nstdout: %s\nstderr: %s", impl.path, r.code, impl.works, r.stdout, r.stderr)
			}
		})
	}
}
