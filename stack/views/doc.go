// Package views takes snapshots of a stack for the introspection commands:
// its sockets (ss), interfaces and addresses (ip link, ip addr) and routes
// (ip route), as plain JSON-friendly values, and formats them in the layout
// of the Linux tools, so habits and scripts carry over.
//
// Snapshots are taken in the instance's process; formatting runs in the
// client, on values decoded from the control socket.
package views
