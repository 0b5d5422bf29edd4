// Command tunstack runs programs in a network namespace served by a
// userspace TCP/IP stack, and inspects and controls running instances.
package main

import (
	"errors"
	"fmt"
	"os"

	gvlog "gvisor.dev/gvisor/pkg/log"

	"github.com/tunstack/tunstack/harden"
	"github.com/tunstack/tunstack/sandbox"
)

// exitError carries an exit status out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	if sandbox.IsChild() {
		sandbox.ChildMain()
		return
	}
	if harden.IsCleanup() {
		harden.CleanupMain()
		return
	}
	// gVisor logs at Info to stderr by default; only its warnings matter
	// to a user.
	gvlog.SetLevel(gvlog.Warning)
	if isSlirp4netns(os.Args[0]) {
		os.Exit(runSlirp4netns(os.Args[0], os.Args[1:]))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "tunstack: %v\n", err)
	return 125
}
