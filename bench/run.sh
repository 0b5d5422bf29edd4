#!/usr/bin/env bash
# bench/run.sh - tunstack's peer benchmark (what `make bench` runs).
#
# Measures, in ONE run and in alternating rounds (A B C D ... A B C D ...),
# the network path between a sandbox namespace and its "host" through:
#   veth             kernel veth pair (the ceiling; no userspace stack)
#   slirp65520       slirp4netns --configure --mtu=65520   target 10.0.2.2
#   slirp1500        slirp4netns --configure (MTU 1500)    target 10.0.2.2
#   tsslirp65520     $BIN slirp4netns --configure --mtu=65520: tunstack as
#                    slirp4netns (TAP device), with the command line
#                    rootlesskit/podman use; tsslirp1500 likewise
#   pasta65520       pasta --config-net (default MTU 65520) target: its gateway,
#                    which pasta maps to host 127.0.0.1
#   pasta1500        pasta --config-net -m 1500
#   tunstack65520    $BIN run --mtu 65520                   target 10.0.2.2
#   tunstack1500     $BIN run --mtu 1500
#   tunstack1500off  $BIN run --mtu 1500 --offload off      (ablation)
#   tunstack65520q2  $BIN run --mtu 65520 --queues 2        (any row + q2: two TUN queues)
# Any tunstackMTU[off] name works in STACKS (e.g. tunstack9000).
# Suffixes for A/B runs in one run: ...base runs $BASE_BIN instead of $BIN
# (tunstack65520base: a before/after pair in alternating rounds), ...gm1
# runs the stack with --procs 1 (GOMAXPROCS=1 for the stack only; e.g.
# tunstack65520gm1).
#
# Per stack run, inside the sandbox: iperf3 sandbox->host (fwd) and
# host->sandbox (rev, -R), each with 1 and with P parallel streams (-P 4);
# tcprr (bench/tcprr): 1-byte request/response on one persistent TCP_NODELAY
# connection (p50/p99, rate) and connect+request+close (p50/p99, rate).
# Around every iperf3 run the stack process's utime+stime is read from
# /proc/PID/stat (CPU seconds per GiB moved), and tcprr reads it around its
# measured rr and crr loops (CPU µs per round trip and per connection); its
# VmHWM (peak RSS) is read at the end. veth has no stack process: those
# columns stay empty.
#
# Port forwards (FORWARD=1, the default; FORWARD=0 skips them): after the
# runs above, the sandbox starts an iperf3 server on FPORT and a tcprr server
# on FPORT+1, and a client in the host namespace connects to them through the
# stack's port forward on 127.0.0.1 (PF_ADDR): tunstack -p 127.0.0.1:P:P, pasta
# -t 127.0.0.1/P, slirp4netns add_hostfwd on its --api-socket (host_addr
# 127.0.0.1). veth has no forward: the client dials the sandbox's veth address
# 198.18.1.2 (the baseline). Measured: pfup = host client sends to the sandbox
# server, pfdown = -R (sandbox server sends), single stream, plus tcprr
# (pf_rr/pf_crr) and the stack's CPU s/GiB as above.
#
# Containment: everything runs inside a throwaway network namespace (the
# "host", tsbench-PID) holding lo plus an ifb device with 198.18.0.1/24 and a
# default route via 198.18.0.254, a dead end. The iperf3 and tcprr servers
# listen on 127.0.0.1 and 198.18.0.1 there; every stack process is started in
# it, so no packet can leave the machine or touch the real host's interfaces.
# Addresses used: 198.18.0.0/24 (host ns), 198.18.1.0/30 (veth), and 10.0.2.x
# inside the slirp4netns/tunstack sandboxes.
#
# Usage (root; from the repository root, as `make bench` does):
#   BIN=$PWD/bin/tunstack bash bench/run.sh > bench.out   (progress on stderr)
# Env:
#   ROUNDS=3 DURATION=5 (s per iperf3 run, +1 s omitted warm-up) PARALLEL=4
#   STACKS="veth slirp65520 ..." (subset/order)  RR_N=2000 CRR_N=300
#   PORT=15301 (tcprr uses PORT+1; forwards use PORT+2 and PORT+3)
#   FORWARD=1 (0: no port-forward runs)  PF_ADDR=127.0.0.1 (host address of
#   the forwards and of the client; 198.18.0.1 = a non-loopback client, which
#   pasta cannot splice)  VETH_MTU=1500  TUNSTACK_ARGS="" (extra
#   flags for every tunstack row)  KEEP=1 (keep the run directory, raw logs)
#   BIN (tunstack binary; default ./bin/tunstack, built into the run
#   directory if missing)  BASE_BIN (the binary of ...base rows)
#   IPERF=0 (skip the four sandbox iperf3 runs: latency rows only, quicker)
# Needs: iproute2 (ip, ifb), util-linux (unshare, nsenter), coreutils timeout,
# iperf3, go (to build bench/tcprr). slirp4netns and pasta (apt: slirp4netns,
# passt) are optional: rows whose binaries are missing are skipped with a note.
#
# Bounds and cleanup: every client and every stack run runs under `timeout`,
# servers have a lifetime, a watchdog ends the whole run. On exit (also
# Ctrl-C) only PIDs this script started are killed (checked against their
# recorded start time) and only the namespace it created is deleted (the veth
# and ifb devices go with the namespaces).
set -euo pipefail

SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")
REPO=$(dirname "$HERE")

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
PARALLEL=${PARALLEL:-4}
PORT=${PORT:-15301}
RRPORT=$((PORT + 1))
FORWARD=${FORWARD:-1}
FPORT=$((PORT + 2))
FRRPORT=$((PORT + 3))
PF_ADDR=${PF_ADDR:-127.0.0.1}
case $PF_ADDR in 127.0.0.1 | 198.18.0.1) ;; *) echo "PF_ADDR: 127.0.0.1 or 198.18.0.1" >&2; exit 2 ;; esac
RR_N=${RR_N:-2000}
CRR_N=${CRR_N:-300}
VETH_MTU=${VETH_MTU:-1500}
TUNSTACK_ARGS=${TUNSTACK_ARGS:-}
STACKS=${STACKS:-"veth slirp65520 slirp1500 pasta65520 pasta1500 tunstack65520 tunstack1500 tunstack1500off tsslirp65520"}
BIN=${BIN:-$REPO/bin/tunstack}

HOST_ADDR=198.18.0.1
HOST_GW=198.18.0.254
VETH_HOST=198.18.1.1
VETH_NS=198.18.1.2

# One stack run: 4 iperf3 runs of DURATION+1 s plus connect slack, tcprr, setup.
STACK_TIMEOUT=$((4 * (DURATION + 1 + 10) + 120))
# Forwards: 2 more iperf3 runs, tcprr, server start-up.
[ "$FORWARD" = 1 ] && STACK_TIMEOUT=$((STACK_TIMEOUT + 2 * (DURATION + 1 + 25) + 100))

log() { printf '%s\n' "$*" >&2; }

# track PID: remember a process this script started, with its start time, so
# that cleanup never signals a recycled PID.
track() {
	local st
	st=$(cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null) || return 0
	echo "$1 $st" >>"${TSB_PIDS:?}"
}

kill_tracked() {
	local f=$1 sig pid st cur
	[ -s "$f" ] || return 0
	for sig in TERM KILL; do
		while read -r pid st; do
			cur=$(cut -d' ' -f22 "/proc/$pid/stat" 2>/dev/null) || continue
			[ "$cur" = "$st" ] && kill -"$sig" "$pid" 2>/dev/null || true
		done < <(tac "$f")
		[ "$sig" = TERM ] && sleep 0.5
	done
	return 0
}

# utime+stime (clock ticks) of PID; fields after "(comm)" so that a comm with
# spaces cannot shift them.
cputicks() {
	[ -r "/proc/$1/stat" ] || return 0
	sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# ---------------------------------------------------------------------------
# __wait FLAG CMD...: first process of a fresh namespace; wait (bounded) until
# the wrapper has connected it, then exec CMD.
if [ "${1:-}" = __wait ]; then
	flagf=$2
	shift 2
	for _ in $(seq 400); do
		[ -e "$flagf" ] && exec "$@"
		sleep 0.025
	done
	log "__wait: namespace not set up within 10 s"
	exit 125
fi

# ---------------------------------------------------------------------------
# __inner NAME TARGET PIDFILE: the workload, inside the sandbox. Everything
# else comes from the environment of the main script (TSB_*), which every
# wrapper passes through. Prints key=value lines on stdout.
if [ "${1:-}" = __inner ]; then
	name=$2 tgt=$3 pidfile=$4
	dir=$TSB_RUN/work.$name.$TSB_ROUND
	mkdir -p "$dir"
	child=
	trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; exit 143' TERM INT
	# Background + wait, so that a TERM from the wrapper reaches the client.
	run() {
		"$@" &
		child=$!
		wait "$child" || true
		child=
	}
	spid=
	if [ "$pidfile" != - ]; then
		for _ in $(seq 200); do
			[ -s "$pidfile" ] && break
			sleep 0.025
		done
		spid=$(cat "$pidfile" 2>/dev/null || true)
		if [ "$spid" = - ]; then
			spid= # veth: no stack process
		elif [ -z "$spid" ] || [ ! -r "/proc/$spid/stat" ]; then
			log "[$name] stack PID unknown: no CPU/memory figures"
			spid=
		fi
	fi
	tck=$(getconf CLK_TCK)
	bulk="fwd rev fwdP revP"
	[ "$TSB_IPERF" = 0 ] && bulk=
	for t in $bulk; do
		flags=()
		case $t in rev*) flags+=(-R) ;; esac
		case $t in *P) flags+=(-P "$TSB_PARALLEL") ;; esac
		c0=
		[ -n "$spid" ] && c0=$(cputicks "$spid")
		run timeout -k 3 $((TSB_DURATION + 25)) iperf3 -c "$tgt" -p "$TSB_PORT" -t "$TSB_DURATION" -O 1 \
			--connect-timeout 3000 -J "${flags[@]}" >"$dir/iperf.$t.json" 2>"$dir/iperf.$t.err"
		c1=
		[ -n "$spid" ] && c1=$(cputicks "$spid")
		if out=$("$TSB_TCPRR" -iperf "$dir/iperf.$t.json" -prefix "$t" 2>&1); then
			echo "$out"
			bytes=$(sed -n "s/^${t}_bytes=//p" <<<"$out")
			if [ -n "$c0" ] && [ -n "$c1" ]; then
				awk -v a="$c0" -v b="$c1" -v hz="$tck" -v by="$bytes" -v t="$t" \
					'BEGIN {s = (b - a) / hz; printf "%s_cpu_s=%.2f\n%s_cpu_s_gib=%.3f\n", t, s, t, s / (by / 1073741824)}'
			fi
		else
			log "[$name] iperf3 $t failed: $out $(tail -c 300 "$dir/iperf.$t.err" 2>/dev/null | tr '\n' ' ')"
		fi
	done
	run timeout -k 3 70 "$TSB_TCPRR" -c "$tgt:$TSB_RRPORT" -n "$TSB_RR_N" -crr "$TSB_CRR_N" -timeout 60s ${spid:+-stackpid "$spid"} \
		>"$dir/tcprr.out" 2>"$dir/tcprr.err"
	if grep -q '^rr_p50_us=' "$dir/tcprr.out"; then
		cat "$dir/tcprr.out"
	else
		log "[$name] tcprr failed: $(tail -n 3 "$dir/tcprr.err" | tr '\n' ' ')"
		cat "$dir/tcprr.out"
	fi
	if [ "$TSB_FORWARD" = 1 ]; then
		# Servers for the host's clients (run by fwdclient in __stack, in
		# the host namespace); ready/done flags in the run directory.
		flt=$((2 * (TSB_DURATION + 1 + 25) + 90))
		timeout -k 3 "$flt" iperf3 -s -p "$TSB_FPORT" >"$dir/pf-iperf3-server.log" 2>&1 &
		ps1=$!
		timeout -k 3 "$flt" "$TSB_TCPRR" -s "0.0.0.0:$TSB_FRRPORT" -lifetime "${flt}s" >"$dir/pf-tcprr-server.log" 2>&1 &
		ps2=$!
		n=0
		for _ in $(seq 100); do
			n=$(ss -Htln 2>/dev/null | grep -cE ":($TSB_FPORT|$TSB_FRRPORT)\b" || true)
			[ "$n" -ge 2 ] && break
			sleep 0.05
		done
		[ "$n" -ge 2 ] || log "[$name] forward: only $n of 2 sandbox servers listening"
		touch "$TSB_RUN/pfready.$name.$TSB_ROUND"
		for _ in $(seq $((flt * 10))); do
			[ -e "$TSB_RUN/pfdone.$name.$TSB_ROUND" ] && break
			sleep 0.1
		done
		[ -e "$TSB_RUN/pfdone.$name.$TSB_ROUND" ] || log "[$name] forward: host client did not finish"
		kill -TERM "$ps1" "$ps2" 2>/dev/null || true
		wait "$ps1" "$ps2" 2>/dev/null || true
	fi
	if [ -n "$spid" ]; then
		awk '/^VmHWM:/ {print "hwm_kib=" $2}' "/proc/$spid/status" 2>/dev/null || true
	fi
	exit 0
fi

# ---------------------------------------------------------------------------
# fwdclient NAME TARGET SPID: in the host namespace (called from __stack,
# backgrounded): wait for the sandbox's servers, then measure through the
# forward. Prints key=value lines on stdout (the round's output file; the
# sandbox workload is idle meanwhile). Always touches the done flag.
fwdclient() {
	local name=$1 tgt=$2 spid=$3 dir t flags c0 c1 out bytes tck ok=
	dir=$TSB_RUN/work.$name.$TSB_ROUND
	mkdir -p "$dir"
	tck=$(getconf CLK_TCK)
	for _ in $(seq $((TSB_STACK_TIMEOUT * 10))); do
		[ -e "$TSB_RUN/pfready.$name.$TSB_ROUND" ] && ok=1 && break
		sleep 0.1
	done
	if [ -z "$ok" ]; then
		log "[$name] forward: sandbox servers never ready"
		touch "$TSB_RUN/pfdone.$name.$TSB_ROUND"
		return 0
	fi
	[ -n "$spid" ] && [ ! -r "/proc/$spid/stat" ] && spid=
	for t in pfup pfdown; do
		flags=()
		[ $t = pfdown ] && flags=(-R)
		c0= c1=
		[ -n "$spid" ] && c0=$(cputicks "$spid")
		timeout -k 3 $((TSB_DURATION + 25)) iperf3 -c "$tgt" -p "$TSB_FPORT" -t "$TSB_DURATION" -O 1 \
			--connect-timeout 3000 -J "${flags[@]}" >"$dir/iperf.$t.json" 2>"$dir/iperf.$t.err" || true
		[ -n "$spid" ] && c1=$(cputicks "$spid")
		if out=$("$TSB_TCPRR" -iperf "$dir/iperf.$t.json" -prefix "$t" 2>&1); then
			echo "$out"
			bytes=$(sed -n "s/^${t}_bytes=//p" <<<"$out")
			if [ -n "$c0" ] && [ -n "$c1" ]; then
				awk -v a="$c0" -v b="$c1" -v hz="$tck" -v by="$bytes" -v t="$t" \
					'BEGIN {s = (b - a) / hz; printf "%s_cpu_s=%.2f\n%s_cpu_s_gib=%.3f\n", t, s, t, s / (by / 1073741824)}'
			fi
		else
			log "[$name] forward iperf3 $t failed: $out $(tail -c 300 "$dir/iperf.$t.err" 2>/dev/null | tr '\n' ' ')"
		fi
	done
	timeout -k 3 70 "$TSB_TCPRR" -c "$tgt:$TSB_FRRPORT" -n "$TSB_RR_N" -crr "$TSB_CRR_N" -timeout 60s ${spid:+-stackpid "$spid"} \
		>"$dir/pf-tcprr.out" 2>"$dir/pf-tcprr.err" || true
	if grep -q '^rr_p50_us=' "$dir/pf-tcprr.out"; then
		sed 's/^/pf_/' "$dir/pf-tcprr.out"
	else
		log "[$name] forward tcprr failed: $(tail -n 3 "$dir/pf-tcprr.err" | tr '\n' ' ')"
	fi
	touch "$TSB_RUN/pfdone.$name.$TSB_ROUND"
}

# ---------------------------------------------------------------------------
# __stack NAME PIDFILE CMD...: run CMD in a fresh namespace connected through
# the named stack; write the stack process's PID (or -) to PIDFILE. Runs
# inside the host namespace.
if [ "${1:-}" = __stack ]; then
	stack=$2 pidfile=$3
	shift 3
	flagf=$TSB_RUN/up.$stack.$TSB_ROUND
	t="" d=""
	stop() {
		set +e
		[ -n "$t" ] && kill -TERM "$t" 2>/dev/null
		[ -n "$d" ] && kill -TERM "$d" 2>/dev/null
		[ -n "$t" ] && wait "$t" 2>/dev/null
		[ -n "$d" ] && wait "$d" 2>/dev/null
		return 0
	}
	trap 'stop; exit 143' TERM INT
	trap stop EXIT
	case $stack in
	tunstack*)
		mtu=${stack#tunstack}
		off=()
		bin=$TSB_BIN
		gm=()
		case $mtu in *gm1)
			gm=(--procs 1)
			mtu=${mtu%gm1}
			;;
		esac
		case $mtu in *base)
			bin=${TSB_BASE_BIN:?set BASE_BIN for a ...base row}
			mtu=${mtu%base}
			;;
		esac
		case $mtu in *q2)
			off=(--queues 2)
			mtu=${mtu%q2}
			;;
		esac
		case $mtu in *off)
			off+=(--offload off)
			mtu=${mtu%off}
			;;
		esac
		if [ "$TSB_FORWARD" = 1 ]; then
			off+=(-p "$TSB_PF_ADDR:$TSB_FPORT:$TSB_FPORT" -p "$TSB_PF_ADDR:$TSB_FRRPORT:$TSB_FRRPORT")
		fi
		# --no-pidns: the workload reads the stack's /proc/PID/stat for
		# its CPU figures, which a PID namespace would hide from it (a
		# ...base binary from before PID namespaces has no such flag).
		# The help is read whole first: with pipefail, grep -q quitting at
		# its match could fail the pipeline (tunstack's write gets EPIPE)
		# and start the stack with a PID namespace after all.
		pidns=()
		help=$("$bin" run --help 2>&1 || true)
		case $help in *--no-pidns*) pidns=(--no-pidns) ;; esac
		# shellcheck disable=SC2086
		"$bin" run "${pidns[@]}" --mtu "$mtu" "${gm[@]}" "${off[@]}" $TSB_TUNSTACK_ARGS -- "$@" &
		d=$!
		track "$d"
		echo "$d" >"$pidfile"
		if [ "$TSB_FORWARD" = 1 ]; then
			fwdclient "$stack" "$TSB_PF_ADDR" "$d" &
			track $!
		fi
		rc=0
		wait "$d" || rc=$?
		d=
		exit "$rc"
		;;
	esac
	# The user namespace is for pasta, which cannot join a netns owned by the
	# initial user namespace as root here ("Couldn't open user namespace");
	# used for all peers alike, it changes nothing on the data path.
	unshare --user --map-root-user --net -- "$SELF" __wait "$flagf" "$@" &
	t=$!
	track "$t"
	# Until unshare has made the namespaces and exec'd, /proc/$t/ns/net is
	# still this namespace: a stack started then would serve the host
	# namespace itself. Wait (bounded) for the exec.
	me=$(readlink /proc/self/ns/net)
	for _ in $(seq 500); do
		ns=$(readlink "/proc/$t/ns/net" 2>/dev/null) || break
		a0=$(head -z -n 1 "/proc/$t/cmdline" 2>/dev/null | tr -d '\0')
		[ "$ns" != "$me" ] && [ "${a0##*/}" != unshare ] && break
		sleep 0.01
	done
	case $stack in
	veth)
		vh=tsbv$t
		vh=${vh:0:13}
		ip link add "${vh}h" type veth peer name "${vh}n"
		ip link set "${vh}n" netns "$t"
		ip addr add "$VETH_HOST/30" dev "${vh}h"
		ip link set "${vh}h" mtu "$TSB_VETH_MTU" up
		nsenter -t "$t" -n sh -ec "
			ip link set lo up
			ip link set ${vh}n name eth0
			ip addr add $VETH_NS/30 dev eth0
			ip link set eth0 mtu $TSB_VETH_MTU up
			ip route add default via $VETH_HOST"
		echo - >"$pidfile"
		;;
	slirp*)
		api=()
		[ "$TSB_FORWARD" = 1 ] && api=(--api-socket "$TSB_RUN/slirp.$stack.$TSB_ROUND.sock")
		slirp4netns --configure --mtu="${stack#slirp}" "${api[@]}" "$t" tap0 >>"$TSB_RUN/slirp4netns.log" 2>&1 &
		d=$!
		track "$d"
		echo "$d" >"$pidfile"
		;;
	tsslirp*)
		api=()
		[ "$TSB_FORWARD" = 1 ] && api=(--api-socket "$TSB_RUN/slirp.$stack.$TSB_ROUND.sock")
		"$TSB_BIN" slirp4netns --configure --mtu="${stack#tsslirp}" "${api[@]}" "$t" tap0 >>"$TSB_RUN/tsslirp.log" 2>&1 &
		d=$!
		track "$d"
		echo "$d" >"$pidfile"
		;;
	pasta*)
		# Root outside: --runas 0:0, or pasta drops to nobody and cannot
		# open the target's namespaces.
		pf=()
		[ "$TSB_FORWARD" = 1 ] && pf=(-t "$TSB_PF_ADDR/$TSB_FPORT-$TSB_FRRPORT")
		pasta -q -f --runas 0:0 --config-net -m "${stack#pasta}" "${pf[@]}" "$t" >>"$TSB_RUN/pasta.log" 2>&1 &
		d=$!
		track "$d"
		echo "$d" >"$pidfile"
		;;
	*)
		log "__stack: unknown stack $stack"
		exit 2
		;;
	esac
	ok=
	for _ in $(seq 200); do
		[ -n "$(nsenter -t "$t" -n ip -4 route show default 2>/dev/null)" ] && ok=1 && break
		kill -0 "$t" 2>/dev/null || break
		sleep 0.05
	done
	[ -n "$ok" ] || {
		log "__stack $stack: sandbox got no default route"
		exit 125
	}
	if [ "$TSB_FORWARD" = 1 ]; then
		case $stack in
		veth) fwdclient "$stack" "$VETH_NS" "" & track $! ;;
		slirp* | tsslirp*)
			command -v socat >/dev/null || { log "[$stack] forward: no socat for the API socket"; touch "$TSB_RUN/pfdone.$stack.$TSB_ROUND"; }
			sock=$TSB_RUN/slirp.$stack.$TSB_ROUND.sock
			for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
			for p in "$TSB_FPORT" "$TSB_FRRPORT"; do
				r=$(printf '{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "%s", "host_port": %d, "guest_port": %d}}' "$TSB_PF_ADDR" "$p" "$p" |
					timeout 5 socat -t 2 - "UNIX-CONNECT:$sock" 2>&1) || true
				grep -q '"return"' <<<"$r" || log "[$stack] add_hostfwd $p: $r"
			done
			fwdclient "$stack" "$TSB_PF_ADDR" "$d" & track $! ;;
		pasta*) fwdclient "$stack" "$TSB_PF_ADDR" "$d" & track $! ;;
		esac
	fi
	touch "$flagf"
	rc=0
	wait "$t" || rc=$?
	t=
	exit "$rc"
fi

# ---------------------------------------------------------------------------
# Main.
[ "$(id -u)" = 0 ] || {
	log "bench/run.sh: run as root"
	exit 1
}
for c in ip unshare nsenter iperf3 timeout awk getconf; do
	command -v "$c" >/dev/null || {
		log "bench/run.sh: missing $c"
		exit 1
	}
done

RUN=$(mktemp -d /tmp/tsbench.XXXXXX)
chmod 755 "$RUN"
TSB_PIDS=$RUN/pids
: >"$TSB_PIDS"
HNS=tsbench-$$
HNS_MADE=
cleanup() {
	trap - EXIT INT TERM
	set +e
	kill_tracked "$TSB_PIDS"
	[ -n "$HNS_MADE" ] && ip netns del "$HNS" 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Tools.
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
TCPRR=
if command -v go >/dev/null; then
	if (cd "$HERE/tcprr" && CGO_ENABLED=0 timeout 300 go build -o "$RUN/tcprr" .) >"$RUN/build.log" 2>&1; then
		TCPRR=$RUN/tcprr
	fi
fi
[ -n "$TCPRR" ] || {
	log "bench/run.sh: cannot build bench/tcprr (needs go): $(tail -n 3 "$RUN/build.log" 2>/dev/null)"
	exit 1
}
if [ ! -x "$BIN" ]; then
	log "no tunstack binary at $BIN: building one into the run directory"
	if (cd "$REPO" && timeout 600 go build -o "$RUN/tunstack" ./cmd/tunstack) >>"$RUN/build.log" 2>&1; then
		BIN=$RUN/tunstack
	else
		BIN=
	fi
fi

declare -A TGT SKIP
ALL=()
for s in $STACKS; do
	case $s in
	veth) TGT[$s]=$HOST_ADDR ;;
	slirp[0-9]*) TGT[$s]=10.0.2.2
		command -v slirp4netns >/dev/null || SKIP[$s]="slirp4netns not installed (apt-get install slirp4netns)" ;;
	pasta[0-9]*) TGT[$s]=$HOST_GW
		command -v pasta >/dev/null || SKIP[$s]="pasta not installed (apt-get install passt)" ;;
	tunstack[0-9]*) TGT[$s]=10.0.2.2
		[ -n "$BIN" ] || SKIP[$s]="no tunstack binary (set BIN, or go build failed: see build.log)" ;;
	tsslirp[0-9]*) TGT[$s]=10.0.2.2
		[ -n "$BIN" ] || SKIP[$s]="no tunstack binary (set BIN, or go build failed: see build.log)" ;;
	*) log "unknown stack $s"; exit 2 ;;
	esac
	ALL+=("$s")
done

ver() { "$@" 2>&1 | head -n 1 | tr -s ' \t' ' ' | sed 's/ *$//'; }
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
echo "# bench/run.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "# host: $(uname -srm); $(nproc) CPUs: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); $( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null)"
echo "# loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# rounds=$ROUNDS duration=${DURATION}s (+1 s omitted) parallel=$PARALLEL rr_n=$RR_N crr_n=$CRR_N veth_mtu=$VETH_MTU"
echo "# iperf3: $(ver iperf3 --version) (deb $(pkgver iperf3))"
command -v slirp4netns >/dev/null && echo "# slirp4netns: $(ver slirp4netns --version) (deb $(pkgver slirp4netns))"
command -v pasta >/dev/null && echo "# pasta: deb passt $(pkgver passt)"
[ -n "$BIN" ] && echo "# tunstack: $BIN ($(ver "$BIN" version)); git $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') extra args: '${TUNSTACK_ARGS}'"
echo "# tcprr: bench/tcprr ($(ver go version))"

# The host namespace.
ip netns add "$HNS"
HNS_MADE=1
ip netns exec "$HNS" sh -ec "
	ip link set lo up
	ip link add tsbup0 type ifb
	ip addr add $HOST_ADDR/24 dev tsbup0
	ip link set tsbup0 up
	ip route add default via $HOST_GW dev tsbup0
	sysctl -qw net.ipv4.ping_group_range='0 2147483647'"

NRUN=0
for s in "${ALL[@]}"; do [ -z "${SKIP[$s]:-}" ] && NRUN=$((NRUN + 1)); done
LIFETIME=$((ROUNDS * NRUN * (STACK_TIMEOUT + 5) + 60))

# Watchdog for the whole run.
MAIN=$$
(
	trap 'kill -TERM "$sp" 2>/dev/null; exit 0' TERM
	sleep "$LIFETIME" &
	sp=$!
	wait "$sp" && kill -TERM "$MAIN"
) 2>/dev/null &
track $!

for a in 127.0.0.1 "$HOST_ADDR"; do
	ip netns exec "$HNS" timeout -k 5 "$LIFETIME" iperf3 -s -B "$a" -p "$PORT" >>"$RUN/iperf3-server.$a.log" 2>&1 &
	track $!
done
ip netns exec "$HNS" timeout -k 5 "$LIFETIME" "$TCPRR" -s "127.0.0.1:$RRPORT,$HOST_ADDR:$RRPORT" \
	-lifetime "${LIFETIME}s" >>"$RUN/tcprr-server.log" 2>&1 &
track $!
n=0
for _ in $(seq 100); do
	n=$(ip netns exec "$HNS" ss -Htln 2>/dev/null | grep -cE ":($PORT|$RRPORT)\b" || true)
	[ "$n" -ge 4 ] && break
	sleep 0.1
done
[ "$n" -ge 4 ] || log "warning: only $n of 4 server sockets listening"

export TSB_RUN=$RUN TSB_PIDS TSB_DURATION=$DURATION TSB_PARALLEL=$PARALLEL TSB_PORT=$PORT TSB_RRPORT=$RRPORT
export TSB_RR_N=$RR_N TSB_CRR_N=$CRR_N TSB_TCPRR=$TCPRR TSB_BIN=$BIN TSB_VETH_MTU=$VETH_MTU
export TSB_BASE_BIN=${BASE_BIN:-} TSB_IPERF=${IPERF:-1}
export TSB_TUNSTACK_ARGS=$TUNSTACK_ARGS TSB_FORWARD=$FORWARD TSB_PF_ADDR=$PF_ADDR TSB_STACK_TIMEOUT=$STACK_TIMEOUT TSB_FPORT=$FPORT TSB_FRRPORT=$FRRPORT

RES=$RUN/results
: >"$RES"
for r in $(seq "$ROUNDS"); do
	export TSB_ROUND=$r
	for s in "${ALL[@]}"; do
		if [ -n "${SKIP[$s]:-}" ]; then
			[ "$r" = 1 ] && log "[$s] skipped: ${SKIP[$s]}"
			continue
		fi
		pidf=$RUN/pid.$s.$r
		: >"$pidf"
		t0=$(date +%s.%N)
		set +e
		ip netns exec "$HNS" timeout -k 5 "$STACK_TIMEOUT" "$SELF" __stack "$s" "$pidf" \
			"$SELF" __inner "$s" "${TGT[$s]}" "$pidf" >"$RUN/out.$s.$r" 2>"$RUN/err.$s.$r" &
		p=$!
		track "$p"
		wait "$p"
		rc=$?
		set -e
		t1=$(date +%s.%N)
		sed -n "s/^\([A-Za-z0-9_]*\)=\(.*\)$/$r $s \1 \2/p" "$RUN/out.$s.$r" >>"$RES"
		log "round $r $(printf '%-16s' "$s") rc=$rc $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%5.1fs", b - a}')  $(grep -E '^(fwd|rev)P?_mbps|^rr_p50|^crr_cps|^pf(up|down)_mbps|^pf_rr_p50' "$RUN/out.$s.$r" | tr '\n' ' ')"
		[ -s "$RUN/err.$s.$r" ] && sed 's/^/    /' "$RUN/err.$s.$r" | head -n 20 >&2
		sleep 1
	done
done

# ---------------------------------------------------------------------------
# Summary (markdown).
P=$PARALLEL
awk -v order="${ALL[*]}" -v pfaddr="$PF_ADDR" -v P="$P" -v rounds="$ROUNDS" '
function median(s, m,   n, i, j, t, a) {
	n = cnt[s, m]
	if (n == 0) return ""
	for (i = 1; i <= n; i++) a[i] = val[s, m, i]
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
	return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function f(v, fmt) { return v == "" ? "-" : sprintf(fmt, v) }
function g(v) { return v == "" ? "-" : sprintf("%.2f", v / 1000) }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
{ cnt[$2, $3]++; val[$2, $3, cnt[$2, $3]] = $4; seen[$3] = 1 }
END {
	ns = split(order, st, " ")
	split("fwd_mbps rev_mbps fwdP_mbps revP_mbps rr_p50_us rr_p99_us rr_tps crr_p50_us crr_p99_us crr_cps fwd_cpu_s_gib rev_cpu_s_gib fwdP_cpu_s_gib revP_cpu_s_gib hwm_kib fwd_stall_s rev_stall_s fwdP_stall_s revP_stall_s pfup_mbps pfdown_mbps pfup_cpu_s_gib pfdown_cpu_s_gib pf_rr_p50_us pf_rr_p99_us pf_crr_p50_us pf_crr_cps pfup_stall_s pfdown_stall_s rr_cpu_us crr_cpu_us pf_rr_cpu_us pf_crr_cpu_us", M, " ")
	for (i = 1; i <= ns; i++) for (k in M) med[st[i], M[k]] = median(st[i], M[k])
	for (i = 1; i <= ns; i++) { stall[st[i]] = 0
		for (k = 16; k <= 19; k++) for (j = 1; j <= cnt[st[i], M[k]]; j++) stall[st[i]] += val[st[i], M[k], j] }
	v = "veth"
	print "### Throughput, Gbit/s (median of " rounds " rounds; fwd = sandbox->host, rev = host->sandbox)"
	print ""
	print "| stack | fwd | rev | fwd -P" P " | rev -P" P " | fwd/veth | rev/veth | fwd -P" P "/veth | rev -P" P "/veth | stall s | n |"
	print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
	for (i = 1; i <= ns; i++) { s = st[i]
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", s,
			g(med[s, "fwd_mbps"]), g(med[s, "rev_mbps"]), g(med[s, "fwdP_mbps"]), g(med[s, "revP_mbps"]),
			ratio(med[s, "fwd_mbps"], med[v, "fwd_mbps"]), ratio(med[s, "rev_mbps"], med[v, "rev_mbps"]),
			ratio(med[s, "fwdP_mbps"], med[v, "fwdP_mbps"]), ratio(med[s, "revP_mbps"], med[v, "revP_mbps"]),
			stall[s], cnt[s, "fwd_mbps"] }
	print ""
	print "### Latency (tcprr: 1-byte messages, TCP_NODELAY; crr = connect + request/response + close)"
	print ""
	print "| stack | rr p50 µs | rr p99 µs | rr/s | crr p50 µs | crr p99 µs | crr/s | rr p50/veth | crr p50/veth | CPU µs/rr | CPU µs/crr |"
	print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
	for (i = 1; i <= ns; i++) { s = st[i]
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s,
			f(med[s, "rr_p50_us"], "%.0f"), f(med[s, "rr_p99_us"], "%.0f"), f(med[s, "rr_tps"], "%.0f"),
			f(med[s, "crr_p50_us"], "%.0f"), f(med[s, "crr_p99_us"], "%.0f"), f(med[s, "crr_cps"], "%.0f"),
			ratio(med[s, "rr_p50_us"], med[v, "rr_p50_us"]), ratio(med[s, "crr_p50_us"], med[v, "crr_p50_us"]),
			f(med[s, "rr_cpu_us"], "%.1f"), f(med[s, "crr_cpu_us"], "%.0f") }
	print ""
	print "### Cost of the stack process (CPU seconds, utime+stime, per GiB received; peak RSS = VmHWM)"
	print ""
	print "| stack | CPU s/GiB fwd | rev | fwd -P" P " | rev -P" P " | peak RSS MiB |"
	print "|---|--:|--:|--:|--:|--:|"
	for (i = 1; i <= ns; i++) { s = st[i]
		printf "| %s | %s | %s | %s | %s | %s |\n", s,
			f(med[s, "fwd_cpu_s_gib"], "%.2f"), f(med[s, "rev_cpu_s_gib"], "%.2f"),
			f(med[s, "fwdP_cpu_s_gib"], "%.2f"), f(med[s, "revP_cpu_s_gib"], "%.2f"),
			f(med[s, "hwm_kib"] == "" ? "" : med[s, "hwm_kib"] / 1024, "%.1f") }
	print ""
	npf = 0
	for (i = 1; i <= ns; i++) npf += cnt[st[i], "pfup_mbps"] + cnt[st[i], "pf_rr_p50_us"]
	if (npf > 0) {
		print "### Port forward: host client -> server in the sandbox, through the stack port forward on " pfaddr " (veth: direct to the sandbox address); single stream, median"
		print ""
		print "| stack | up Gbit/s | down Gbit/s | up/veth | down/veth | rr p50 µs | rr p99 µs | crr p50 µs | crr/s | CPU s/GiB up | CPU s/GiB down | CPU µs/rr | CPU µs/crr | stall s | n |"
		print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
		for (i = 1; i <= ns; i++) { s = st[i]
			ps = 0
			for (k = 28; k <= 29; k++) for (j = 1; j <= cnt[s, M[k]]; j++) ps += val[s, M[k], j]
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", s,
				g(med[s, "pfup_mbps"]), g(med[s, "pfdown_mbps"]),
				ratio(med[s, "pfup_mbps"], med[v, "pfup_mbps"]), ratio(med[s, "pfdown_mbps"], med[v, "pfdown_mbps"]),
				f(med[s, "pf_rr_p50_us"], "%.0f"), f(med[s, "pf_rr_p99_us"], "%.0f"),
				f(med[s, "pf_crr_p50_us"], "%.0f"), f(med[s, "pf_crr_cps"], "%.0f"),
				f(med[s, "pfup_cpu_s_gib"], "%.2f"), f(med[s, "pfdown_cpu_s_gib"], "%.2f"),
				f(med[s, "pf_rr_cpu_us"], "%.1f"), f(med[s, "pf_crr_cpu_us"], "%.0f"), ps, cnt[s, "pfup_mbps"] }
		print ""
		print "Port forward, tunstack against its peers at the same MTU (ratio of medians; throughput >1 = tunstack faster; latency, CPU <1 = tunstack better)"
		print ""
		print "| tunstack row | vs | up | down | rr p50 | crr p50 | CPU/GiB up | CPU/GiB down |"
		print "|---|---|--:|--:|--:|--:|--:|--:|"
		for (i = 1; i <= ns; i++) { s = st[i]
			if (s !~ /^(tunstack|tsslirp)/) continue
			mtu = s; sub(/^(tunstack|tsslirp)/, "", mtu); sub(/[^0-9].*$/, "", mtu)
			np = split("pasta" mtu " slirp" mtu, peers, " ")
			for (k = 1; k <= np; k++) { q = peers[k]
				if (cnt[q, "pfup_mbps"] == 0 && cnt[q, "pf_rr_p50_us"] == 0) continue
				printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", s, q,
					ratio(med[s, "pfup_mbps"], med[q, "pfup_mbps"]), ratio(med[s, "pfdown_mbps"], med[q, "pfdown_mbps"]),
					ratio(med[s, "pf_rr_p50_us"], med[q, "pf_rr_p50_us"]), ratio(med[s, "pf_crr_p50_us"], med[q, "pf_crr_p50_us"]),
					ratio(med[s, "pfup_cpu_s_gib"], med[q, "pfup_cpu_s_gib"]), ratio(med[s, "pfdown_cpu_s_gib"], med[q, "pfdown_cpu_s_gib"]) }
		}
		print ""
	}
	print "### tunstack against its peers at the same MTU (ratio of medians; throughput: >1 = tunstack faster; latency and CPU: <1 = tunstack better)"
	print ""
	print "| tunstack row | vs | fwd | rev | fwd -P" P " | rev -P" P " | rr p50 | crr p50 | CPU/GiB fwd | CPU/GiB rev |"
	print "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
	for (i = 1; i <= ns; i++) { s = st[i]
		if (s !~ /^(tunstack|tsslirp)/) continue
		mtu = s; sub(/^(tunstack|tsslirp)/, "", mtu); sub(/[^0-9].*$/, "", mtu)
		np = split("pasta" mtu " slirp" mtu, peers, " ")
		for (k = 1; k <= np; k++) { q = peers[k]
			if (cnt[q, "fwd_mbps"] == 0 && cnt[q, "rr_p50_us"] == 0) continue
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s, q,
				ratio(med[s, "fwd_mbps"], med[q, "fwd_mbps"]), ratio(med[s, "rev_mbps"], med[q, "rev_mbps"]),
				ratio(med[s, "fwdP_mbps"], med[q, "fwdP_mbps"]), ratio(med[s, "revP_mbps"], med[q, "revP_mbps"]),
				ratio(med[s, "rr_p50_us"], med[q, "rr_p50_us"]), ratio(med[s, "crr_p50_us"], med[q, "crr_p50_us"]),
				ratio(med[s, "fwd_cpu_s_gib"], med[q, "fwd_cpu_s_gib"]), ratio(med[s, "rev_cpu_s_gib"], med[q, "rev_cpu_s_gib"]) }
	}
	print ""
	print "### Per-round raw values (round order; throughput in Mbit/s)"
	print ""
	print "```"
	for (i = 1; i <= ns; i++) { s = st[i]
		for (k = 1; k in M; k++) { m = M[k]
			if (cnt[s, m] == 0) continue
			line = sprintf("%-16s %-16s", s, m)
			for (j = 1; j <= cnt[s, m]; j++) line = line " " val[s, m, j]
			print line }
	}
	print "```"
}' "$RES"
echo
echo "# fwd = sandbox -> host (iperf3 client sends), rev = host -> sandbox (-R); -P$P = $P parallel streams."
echo "# Targets: veth $HOST_ADDR; slirp4netns and tunstack 10.0.2.2 (host 127.0.0.1); pasta its gateway $HOST_GW (mapped to host 127.0.0.1)."
echo "# stall s = 1 s iperf3 intervals under 1 Mbit/s, summed over rounds and the four runs. n = rounds with a fwd result."
[ "$FORWARD" = 1 ] && echo "# Port forward: pfup = host client sends to the sandbox's server on port $FPORT (tcprr on $FRRPORT), pfdown = -R; client in the host namespace to $PF_ADDR (veth: $VETH_NS)."
echo "# CPU is the stack process only (veth: none); kernel TUN/tap work in the iperf3 processes is not in it."
for s in "${ALL[@]}"; do
	[ -n "${SKIP[$s]:-}" ] && echo "# $s: not run: ${SKIP[$s]}"
done
echo "# loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)  finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0
