// Package hostsock dials host TCP connections without the Go runtime's
// system-call bookkeeping, for egress's one-connection-per-flow traffic.
//
// Every ordinary system call (syscall.Syscall, and so every call of Go's
// net package) enters the runtime through entersyscall, which wakes the
// runtime's monitor thread (sysmon) when it sleeps; the monitor then polls
// every 20 µs while any P is busy. A host dial through net.Dialer is seven
// such calls (connect, getsockopt, five setsockopt), and a small flow's
// shutdown and close two more: a profile of connect+request+close traffic
// had the monitor's wake-ups at a sixth of the stack process and half of
// its context switches (docs/PERFORMANCE.md, "Host sockets on a private
// epoll set").
//
// A Poller makes every per-connection call raw (unix.RawSyscall): socket,
// setsockopt, connect, recvfrom and sendto with MSG_DONTWAIT, shutdown,
// close. Its connections are registered, edge-triggered, on a private epoll
// set, and the runtime's poller watches that set as one descriptor: when
// it becomes readable, the Poller's goroutine collects the events with a
// non-blocking epoll_pwait and wakes the goroutines waiting on those
// connections. No call blocks: a raw call holds its thread's P until it
// returns.
//
// It is Linux-only; elsewhere NewPoller fails and callers keep net.Dialer.
package hostsock
