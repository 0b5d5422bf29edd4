package forward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack"
)

// TestResetPassesThrough: a reset on one side of a forward reaches the
// other side as a reset, not as a FIN (EOF), and a half-close stays a
// half-close.
func TestResetPassesThrough(t *testing.T) {
	tests := []struct {
		name string
		// server runs in the sandbox on an accepted connection and
		// reports what it saw.
		server func(c *stack.TCPConn) error
		// client runs on the host side.
		client func(c *net.TCPConn) error
		// wantServer is the error the server must see (nil: none).
		wantServer error
		// wantClient is the error the client must see.
		wantClient error
	}{
		{
			name: "sandbox reset reaches the host client",
			server: func(c *stack.TCPConn) error {
				buf := make([]byte, 1)
				if _, err := io.ReadFull(c, buf); err != nil {
					return err
				}
				c.SetLinger(0)
				return c.Close()
			},
			client: func(c *net.TCPConn) error {
				c.Write([]byte("x"))
				_, err := c.Read(make([]byte, 10))
				return err
			},
			wantClient: syscall.ECONNRESET,
		},
		{
			name: "host client reset reaches the sandbox",
			server: func(c *stack.TCPConn) error {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.Copy(io.Discard, c)
				return err
			},
			client: func(c *net.TCPConn) error {
				c.Write([]byte("x"))
				time.Sleep(100 * time.Millisecond) // let the data through first
				c.SetLinger(0)
				return c.Close()
			},
			wantServer: syscall.ECONNRESET,
		},
		{
			name: "half-close stays a half-close",
			server: func(c *stack.TCPConn) error {
				n, err := io.Copy(io.Discard, c)
				if err != nil {
					return err
				}
				fmt.Fprintf(c, "got %d", n)
				return c.Close()
			},
			client: func(c *net.TCPConn) error {
				c.Write([]byte("hello"))
				c.CloseWrite()
				got, err := io.ReadAll(c)
				if err == nil && string(got) != "got 5" {
					return fmt.Errorf("reply %q, want %q", got, "got 5")
				}
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, sb := pair(t)
			ln, err := sb.Listen("tcp4", ":8080")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			served := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					served <- err
					return
				}
				defer c.Close()
				served <- tt.server(c.(*stack.TCPConn))
			}()
			hp := freePort(t, "tcp")
			specs, _ := ParseSpec(fmt.Sprintf("127.0.0.1:%d:8080", hp))
			if _, err := m.Add(specs); err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hp))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tt.client(c.(*net.TCPConn)); !matches(err, tt.wantClient) {
				t.Errorf("client saw %v, want %v", err, tt.wantClient)
			}
			if err := <-served; !matches(err, tt.wantServer) {
				t.Errorf("sandbox server saw %v, want %v", err, tt.wantServer)
			}
		})
	}
}

func matches(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}
