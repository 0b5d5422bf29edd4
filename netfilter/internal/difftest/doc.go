// Package difftest compares tunstack's iptables (package netfilter)
// with the real iptables-legacy on the same input: single commands
// (accepted or refused, and the resulting iptables -S text) and whole
// rulesets (iptables-restore then iptables-save, with and without -c).
//
// The real side runs in a network namespace the test creates (never the
// host's own tables). Gen builds commands from the grammar of every
// match, target and command tunstack supports; testdata/corpus.txt holds
// every disagreement found so far, so each stays fixed.
package difftest
