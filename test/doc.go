// Package test holds tunstack's end-to-end tests: they build the binary
// and drive it as a user would (sandboxes, views, firewall, fd handover),
// asserting on real programs' output and exit codes. Tests that need TUN,
// namespaces or root skip with the reason where the machine lacks them.
package test
