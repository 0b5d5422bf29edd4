#!/bin/sh
# Regenerates rules.golden from rules.in with the real iptables binary in a
# throwaway network namespace: sudo unshare -n sh gen-golden.sh
# The oracle is iptables-legacy (the kernel's own x_tables checks), as in
# netfilter/internal/difftest.
iptables() { iptables-legacy "$@"; }
# Each output line: VERDICT<TAB>INPUT LINE<TAB>canonical -A lines (" ;; ").
set -u
while IFS= read -r line; do
	for t in filter nat mangle raw; do iptables -t $t -F; iptables -t $t -X; done
	iptables -P INPUT ACCEPT; iptables -P FORWARD ACCEPT
	table=${line%% *}
	rest=${line#* }
	if eval "iptables -t $table $rest" >/dev/null 2>&1; then
		canon=$(iptables -t "$table" -S 2>/dev/null | grep '^-A' | sed ':a;N;$!ba;s/\n/ ;; /g')
		printf 'OK\t%s\t%s\n' "$line" "$canon"
	else
		printf 'ERR\t%s\t\n' "$line"
	fi
done < rules.in > rules.golden
