// Package harden confines the host-side tunstack process once its setup is
// done (the TUN device, control socket, forwards and capture files are
// open), the way passt and slirp4netns --enable-sandbox do:
//
//   - no_new_privs on every thread, so nothing it could still execute gains
//     privileges;
//   - started as root, a switch to an unprivileged user (nobody by default)
//     that keeps only the capabilities the running instance needs
//     (CAP_NET_BIND_SERVICE for forwards added later to ports below 1024,
//     and CAP_KILL while it must signal a command that runs as root);
//   - a seccomp filter that allows only the system calls the running stack
//     makes; every other call fails with EPERM.
//
// Apply does all three, in that order, and is irreversible. Every change
// is made on all threads at once (credentials and capabilities belong to a
// thread in Linux): the user switch with Go's all-thread set*id calls, the
// capability and prctl changes with psx, the filter with
// SECCOMP_FILTER_FLAG_TSYNC.
//
// Maintaining the allowlist: with TUNSTACK_SECCOMP_LOG=1 in tunstack's
// environment the filter allows everything and the kernel logs each call
// that the allowlist would have refused (dmesg: "audit: type=1326 ...
// syscall=N"); run the end-to-end tests that way and add what they log.
package harden
