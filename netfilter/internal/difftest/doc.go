// Package difftest compares tunstack's iptables (package netfilter)
// with the real iptables-legacy on the same input: single commands
// (accepted or refused, what the command printed, the resulting
// iptables -S text and, after each accepted command, the listings of
// Listings: -L with -n, -v, -x, --line-numbers, without -n, of one
// chain, and -S of one chain) and whole rulesets (iptables-restore then
// iptables-save, with and without -c). Both sides first create the same
// ipsets (Sets), so -m set rules are compared too.
//
// The real side runs in a network namespace the test creates (never the
// host's own tables). Gen builds commands from the grammar of every
// match, target and command tunstack supports; testdata/corpus.txt holds
// every disagreement found so far, so each stays fixed.
package difftest
