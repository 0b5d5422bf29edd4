package stack_test

import (
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/vnet"
)

// A connection of a userspace stack handed to a child process as fd 3.
// The child (a shell here; C or Python alike) writes to it with write(2);
// the bytes travel over the stack's TCP connection.
func ExampleTCPConn_File() {
	s, err := vnet.NewLoopback(stack.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ln, err := s.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()

	c, err := s.Dial("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	// One end of a unix socketpair bridged to the connection; c must not
	// be used any more, and the connection closes when every copy of f
	// is closed.
	f, err := c.(*stack.TCPConn).File()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "echo hello from the child >&3")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Run(); err != nil {
		log.Fatal(err)
	}
	f.Close()
	fmt.Print(<-got)
	// Output: hello from the child
}
