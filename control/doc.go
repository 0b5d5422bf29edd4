// Package control is the control plane of a running tunstack instance:
// an HTTP+JSON API served on a unix socket (mode 0600, in a 0700
// directory), and the client the views and "tunstack ps" use.
//
// Each instance serves $XDG_RUNTIME_DIR/tunstack/NAME.sock (as root,
// /run/tunstack/NAME.sock; TUNSTACK_CONTROL_DIR overrides the directory).
// Paths are versioned (/v1/...); docs/CONTROL.md documents them. Only
// connections from the instance's own user (or root) that do not come from
// inside the sandbox's network namespace are served.
//
// The v1 request and response types are this package's own and it
// imports nothing of the stack, the firewall or gVisor, so a client (the
// views, "tunstack ps") links none of them; package instance maps the
// wire types to and from the stack's.
package control
