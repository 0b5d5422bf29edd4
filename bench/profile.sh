#!/usr/bin/env bash
# bench/profile.sh - CPU profile of the tunstack process under an iperf3 load,
# taken from outside with perf (no change to tunstack, no pprof endpoint).
#
# Like bench/run.sh it works inside a throwaway "host" namespace (lo plus an
# ifb device with 198.18.0.1/24 and a dead-end default route), runs the iperf3
# server there on 127.0.0.1, and starts `$BIN run --mtu MTU -- iperf3 -c
# 10.0.2.2 ...` in it; perf samples the tunstack process (all threads) for
# the middle of the transfer, then prints the top functions by self time and
# by inclusive time (call chains from Go's frame pointers).
#
# WORKLOAD=rr or crr profiles bench/tcprr instead (1-byte request/response
# on one connection, or connect+request+close in a loop) for DURATION s.
#
# Usage (root):  BIN=$PWD/bin/tunstack bash bench/profile.sh
# Env: MTU=65520 WORKLOAD=iperf|rr|crr DIR=fwd|rev DURATION=12 PARALLEL=1
#      FREQ=999 TOP=30
#      TUNSTACK_ARGS="" (extra run flags)  OUT=/tmp/tunstack-perf.DIR.MTU.data
# Needs: perf (apt-get install linux-perf), iperf3, iproute2 (ifb).
set -euo pipefail

SELF=$(readlink -f "$0")
REPO=$(dirname "$(dirname "$SELF")")
BIN=${BIN:-$REPO/bin/tunstack}
MTU=${MTU:-65520}
DIR=${DIR:-fwd}
DURATION=${DURATION:-12}
PARALLEL=${PARALLEL:-1}
WORKLOAD=${WORKLOAD:-iperf}
FREQ=${FREQ:-999}
TOP=${TOP:-30}
PORT=${PORT:-15401}
TUNSTACK_ARGS=${TUNSTACK_ARGS:-}
[ "$WORKLOAD" = iperf ] || DIR=$WORKLOAD
OUT=${OUT:-/tmp/tunstack-perf.$DIR.$MTU.data}

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for c in perf iperf3 ip timeout; do
	command -v "$c" >/dev/null || { echo "missing $c (perf: apt-get install linux-perf)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "no tunstack binary at $BIN (make build, or set BIN)" >&2; exit 1; }

NS=tsbprof-$$
srv= ts=
cleanup() {
	trap - EXIT INT TERM
	set +e # a failing wait must not skip the namespace deletion
	[ -n "$ts" ] && kill -TERM "$ts" 2>/dev/null
	[ -n "$srv" ] && kill -TERM "$srv" 2>/dev/null
	[ -n "$ts" ] && wait "$ts" 2>/dev/null
	[ -n "$srv" ] && wait "$srv" 2>/dev/null
	ip netns del "$NS" 2>/dev/null || true
	[ -n "${TMPB:-}" ] && rm -rf "$TMPB"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip netns exec "$NS" sh -ec "
	ip link set lo up
	ip link add tsbup0 type ifb
	ip addr add 198.18.0.1/24 dev tsbup0
	ip link set tsbup0 up
	ip route add default via 198.18.0.254 dev tsbup0"
flags=(-P "$PARALLEL")
[ "$DIR" = rev ] && flags+=(-R)
client=(iperf3 -c 10.0.2.2 -p "$PORT" -t "$DURATION" "${flags[@]}" -f g)
if [ "$WORKLOAD" = iperf ]; then
	ip netns exec "$NS" timeout -k 3 $((DURATION + 60)) iperf3 -s -1 -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
else
	TMPB=$(mktemp -d /tmp/tsbprof.XXXXXX)
	(cd "$REPO/bench/tcprr" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$TMPB/tcprr" .)
	ip netns exec "$NS" timeout -k 3 $((DURATION + 60)) "$TMPB/tcprr" -s "127.0.0.1:$PORT" -lifetime $((DURATION + 50))s >/dev/null 2>&1 &
	if [ "$WORKLOAD" = rr ]; then
		client=("$TMPB/tcprr" -c "10.0.2.2:$PORT" -n $((DURATION * 20000)) -crr 0 -timeout "${DURATION}s")
	else
		client=("$TMPB/tcprr" -c "10.0.2.2:$PORT" -n 0 -crr $((DURATION * 3000)) -timeout "${DURATION}s")
	fi
fi
srv=$!
sleep 0.5
# `ip netns exec` execs timeout, whose child is the tunstack process.
# shellcheck disable=SC2086
ip netns exec "$NS" timeout -k 3 $((DURATION + 30)) "$BIN" run --mtu "$MTU" $TUNSTACK_ARGS -- \
	"${client[@]}" >/tmp/tunstack-perf.iperf.$$ 2>&1 &
ts=$!
sleep 0.2
tpid=$(pgrep -P "$ts" | head -n 1 || true)
[ -n "$tpid" ] || { echo "tunstack process not found" >&2; exit 1; }
sleep 2
perf record -e cpu-clock -F "$FREQ" -g -p "$tpid" -o "$OUT" -- sleep $((DURATION - 4)) 2>&1 | grep -v '^\[ perf record: Woken' >&2
wait "$ts" || true
ts=
echo "# tunstack run --mtu $MTU $TUNSTACK_ARGS, $WORKLOAD $DIR -P $PARALLEL, ${DURATION}s; perf data: $OUT"
grep -E 'sender|receiver' /tmp/tunstack-perf.iperf.$$ || tail -n 6 /tmp/tunstack-perf.iperf.$$
rm -f /tmp/tunstack-perf.iperf.$$
echo
echo "## self time, top $TOP"
perf report -i "$OUT" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP" || true
echo
echo "## inclusive time (children), top $TOP"
perf report -i "$OUT" --children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP" || true
