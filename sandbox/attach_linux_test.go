package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestIDMapsToRoot(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		id            int
		want          bool
	}{
		{"unshare -r of uid 1000", "         0       1000          1\n", 1000, true},
		{"another uid", "         0       1000          1\n", 1001, false},
		{"initial namespace, root", "         0          0 4294967295\n", 0, true},
		{"our id maps to a non-root id", "0 100000 1\n1000 1000 1\n", 1000, false},
		{"second line maps to root", "1 200001 65535\n0 1000 1\n", 1000, true},
		{"empty range", "0 1000 0\n", 1000, false},
		{"empty file", "", 1000, false},
		{"garbage", "x y z\n", 1000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "uid_map")
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := idMapsToRoot(p, tc.id); got != tc.want {
				t.Fatalf("idMapsToRoot(%q, %d) = %v, want %v", tc.content, tc.id, got, tc.want)
			}
		})
	}
	if idMapsToRoot("/nonexistent/uid_map", 0) {
		t.Error("a missing map file maps to root")
	}
}

func TestNsenterArgs(t *testing.T) {
	netns := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(netns, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	userArgs := []string{"--net=" + netns, "--user=/proc/1/ns/user"}
	if os.Geteuid() != 0 {
		userArgs = append(userArgs, "--preserve-credentials")
	}
	for _, tc := range []struct {
		name    string
		cfg     AttachConfig
		want    []string
		wantErr string
	}{
		{"namespace path", AttachConfig{NetNS: netns}, []string{"--net=" + netns}, ""},
		{"namespace and user namespace paths", AttachConfig{NetNS: netns, UserNS: "/proc/1/ns/user"}, userArgs, ""},
		// Our own process shares our user namespace: nothing to join.
		{"our own pid", AttachConfig{PID: os.Getpid()}, []string{fmt.Sprintf("--net=/proc/%d/ns/net", os.Getpid())}, ""},
		{"missing namespace file", AttachConfig{NetNS: netns + ".missing"}, nil, "sandbox: attach to " + netns + ".missing"},
		{"no target", AttachConfig{}, nil, "sandbox: attach needs a PID or a namespace path"},
		{"pid that does not exist", AttachConfig{PID: 1 << 30}, nil, fmt.Sprintf("sandbox: attach to pid %d", 1<<30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nsenterArgs(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("nsenterArgs(%+v) = %q, %v; want an error starting %q", tc.cfg, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("nsenterArgs(%+v) = %q, %v; want %q", tc.cfg, got, err, tc.want)
			}
		})
	}
}

func TestExplainStart(t *testing.T) {
	other := errors.New("fork/exec: exec format error")
	for _, tc := range []struct {
		name     string
		mode     string
		err      error
		contains string
	}{
		{"rootless EPERM names the sysctls", modeRootless, syscall.EPERM, "unprivileged user namespaces are disabled"},
		{"rootless ENOSPC", modeRootless, syscall.ENOSPC, "sysctl -w user.max_user_namespaces=15000"},
		{"root EPERM points at --host-caps", modeRoot, syscall.EPERM, "--host-caps"},
		{"host mode refusal", modeHost, syscall.EINVAL, "sandbox: cannot create a namespace"},
		{"not a refusal", modeRootless, other, "sandbox: start child: fork/exec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := explainStart(tc.mode, tc.err)
			if !strings.Contains(got.Error(), tc.contains) {
				t.Fatalf("explainStart(%s, %v) = %q, want it to contain %q", tc.mode, tc.err, got, tc.contains)
			}
		})
	}
	for _, tc := range []struct {
		mode     string
		err      error
		contains string
	}{
		{modeRoot, syscall.EPERM, "--host-caps runs without one"},
		{modeRootless, syscall.EPERM, "nested user namespaces may be limited"},
		{modeHost, syscall.EPERM, "create the command's namespaces"},
		{modeRoot, other, "start the command's namespaces"},
	} {
		if got := explainInner(tc.mode, tc.err); !strings.Contains(got.Error(), tc.contains) || !errors.Is(got, tc.err) {
			t.Errorf("explainInner(%s, %v) = %q, want it to wrap the error and contain %q", tc.mode, tc.err, got, tc.contains)
		}
	}
}
