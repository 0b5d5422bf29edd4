package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

func TestIdentityMap(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []syscall.SysProcIDMap
		wantErr       bool
	}{
		{"initial namespace", "         0          0 4294967295\n",
			[]syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 4294967295}}, false},
		{"unshare -r", "         0       1000          1\n",
			[]syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}, false},
		{"container ranges", "0 100000 1\n1 200001 65535\n",
			[]syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1, HostID: 1, Size: 65535}}, false},
		{"empty: no ids", "", nil, true},
		{"garbage", "x y z\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "uid_map")
			os.WriteFile(p, []byte(tc.content), 0o644)
			got, err := identityMap(p)
			if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("identityMap(%q) = %v, %v; want %v (error %v)", tc.content, got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := identityMap("/nonexistent/uid_map"); err == nil {
		t.Error("a missing map file gave no error")
	}
}

func TestPrivilegeMode(t *testing.T) {
	mode, err := privilegeMode(false)
	switch {
	case os.Geteuid() == 0 && (err != nil || mode != modeRoot):
		t.Errorf("root: %q, %v; want %q", mode, err, modeRoot)
	case os.Geteuid() != 0 && (err != nil || mode != modeRootless):
		t.Errorf("user: %q, %v; want %q", mode, err, modeRootless)
	}
	mode, err = privilegeMode(true)
	switch {
	case os.Geteuid() == 0 && (err != nil || mode != modeHost):
		t.Errorf("root --host-caps: %q, %v; want %q", mode, err, modeHost)
	case os.Geteuid() != 0 && err == nil:
		t.Errorf("user --host-caps: %q, want an error", mode)
	}
}
