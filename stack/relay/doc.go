// Package relay carries byte streams between a stack's connections and
// host sockets, the one way tunstack's egress, port forwards and DNS relay
// all need it: an adaptive copy loop (Copy), a two-way relay that passes
// half-closes and resets through (Pipe), the set of live connections a
// service closes when it stops (Group), caps on concurrent flows with
// counters of what they refused (Limit), and the back-off an accept loop
// needs when the process runs out of file descriptors (AcceptBackoff).
//
// Invariant: Pipe returns only when both directions have ended and both
// connections are closed, so a goroutine running Pipe under a Group is all
// the Group has to wait for.
package relay
