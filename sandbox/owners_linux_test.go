package sandbox

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketHolders: init's scan finds this process holding a socket it
// opened, by the socket's inode.
func TestSocketHolders(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	hs := socketHolders("/proc")[st.Ino]
	found := false
	for _, h := range hs {
		if h.PID == os.Getpid() && h.Command != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("holders of inode %d = %+v, want this process (pid %d)", st.Ino, hs, os.Getpid())
	}
}

// TestSocketHoldersAttached: an attached sandbox has no init to ask.
func TestSocketHoldersAttached(t *testing.T) {
	if _, err := (&Sandbox{attached: true}).SocketHolders(); err != ErrNoOwnerQueries {
		t.Fatalf("SocketHolders on an attached sandbox: %v, want ErrNoOwnerQueries", err)
	}
}
