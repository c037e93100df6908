#!/usr/bin/env bash
# bench-analyze.sh records a large capture in a private lab (real Go clients against the lab server, many short
# conversations) and times `tcpshake analyze` against `tshark -q -z conv,tcp` on it: packets per second, the ratio,
# peak RSS of both, and whether they found the same number of conversations. It also runs the Go benchmark of the
# per-packet decode loop (allocations per packet). See docs/analyze.md for the method and the figures.
#
# Usage: scripts/bench-analyze.sh   (as root)
# Environment: CONNS (120000 conversations, about 10 packets each), MIN_PACKETS (1000000), RUNS (3),
# TCPSHAKE (a built binary; default: build this repo), KEEP=1 keeps the capture and raw outputs.
#
# Every packet goes from the lab client namespace to the lab server (198.51.100.2, 2001:db8::2); the traffic
# generator makes at most CONNS connections and then stops.
set -uo pipefail
. "$(dirname "$0")/lib/bench-lab.sh"

CONNS=${CONNS:-120000}
MIN_PACKETS=${MIN_PACKETS:-1000000}
RUNS=${RUNS:-3}
[[ $CONNS =~ ^[1-9][0-9]{0,6}$ && $RUNS =~ ^[1-9][0-9]?$ && $MIN_PACKETS =~ ^[0-9]+$ ]] ||
	bench_die "CONNS must be 1-9999999, RUNS 1-99"

bench_need_tools tcpdump:tcpdump tshark:tshark /usr/bin/time:time
bench_setup ba
REPO=$(cd "$(dirname "$0")/.." && pwd)
CAP=$BENCH_DIR/big.pcap

bench_log "building the traffic generator"
(cd "$REPO" && go test -c -o "$BENCH_DIR/analyze.test" ./analyze) || bench_die "go test -c failed"

bench_log "recording $CONNS conversations"
# Not through bench_in: a backgrounded shell function is a subshell, and $! would be its pid, not tcpdump's.
ip netns exec "$BENCH_CLIENT" tcpdump -i veth0 -n -s 128 -B 262144 -w "$CAP" 'tcp or icmp or icmp6' 2>"$CAP.log" &
TD=$!
BENCH_PIDS+=("$TD")
for ((i = 0; i < 100; i++)); do
	grep -q 'listening on' "$CAP.log" 2>/dev/null && break
	sleep 0.05
done
t0=$(date +%s)
ANALYZE_BENCH_TRAFFIC=$CONNS bench_in "$BENCH_DIR/analyze.test" -test.run '^TestBenchTraffic$' -test.timeout 30m \
	>"$BENCH_DIR/traffic.log" 2>&1 || { cat "$BENCH_DIR/traffic.log" >&2; bench_die "traffic generator failed"; }
sleep 0.5
kill -TERM "$TD" 2>/dev/null # background jobs of a script ignore SIGINT; tcpdump flushes on SIGTERM too
wait "$TD" 2>/dev/null
BENCH_PIDS=()
bench_log "traffic took $(($(date +%s) - t0)) s; $(grep -E 'captured|dropped' "$CAP.log" | tr '\n' ' ')"

# summary_field FILE KEY prints one number from tcpshake's capture_summary JSON line.
summary_field() {
	grep '"type":"capture_summary"' "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\\1/"
}

"$TCPSHAKE" analyze --json "$CAP" >"$BENCH_DIR/ours.json" || bench_die "tcpshake analyze failed"
PACKETS=$(summary_field "$BENCH_DIR/ours.json" packets)
CONVS=$(summary_field "$BENCH_DIR/ours.json" conversations)
SIZE=$(stat -c %s "$CAP")
bench_log "capture: $PACKETS packets, $CONVS conversations, $((SIZE / 1048576)) MiB"
((PACKETS >= MIN_PACKETS)) || bench_die "only $PACKETS packets (< $MIN_PACKETS): raise CONNS"

# timed NAME CMD... runs CMD RUNS times under /usr/bin/time, appending "seconds maxrss_kb" lines to NAME.t.
timed() {
	local name=$1 r
	shift
	for ((r = 0; r < RUNS; r++)); do
		/usr/bin/time -f '%e %M' -o "$BENCH_DIR/one.t" "$@" >"$BENCH_DIR/$name.out" 2>/dev/null ||
			bench_die "$name failed"
		cat "$BENCH_DIR/one.t" >>"$BENCH_DIR/$name.t"
	done
}
bench_log "timing tcpshake analyze and tshark, $RUNS runs each"
timed tcpshake "$TCPSHAKE" analyze "$CAP"
timed tshark tshark -n -q -r "$CAP" -z conv,tcp

TS_CONVS=$(grep -c '<->' "$BENCH_DIR/tshark.out")
awk '{print $1}' "$BENCH_DIR/tcpshake.t" >"$BENCH_DIR/tcpshake.s"
awk '{print $1}' "$BENCH_DIR/tshark.t" >"$BENCH_DIR/tshark.s"
awk '{print $2}' "$BENCH_DIR/tcpshake.t" >"$BENCH_DIR/tcpshake.rss"
awk '{print $2}' "$BENCH_DIR/tshark.t" >"$BENCH_DIR/tshark.rss"
OURS_S=$(bench_median "$BENCH_DIR/tcpshake.s")
TS_S=$(bench_median "$BENCH_DIR/tshark.s")

echo "capture: $PACKETS packets, $CONVS TCP conversations (tshark: $TS_CONVS), $((SIZE / 1048576)) MiB"
awk -v p="$PACKETS" -v o="$OURS_S" -v t="$TS_S" \
	-v orss="$(bench_median "$BENCH_DIR/tcpshake.rss")" -v trss="$(bench_median "$BENCH_DIR/tshark.rss")" 'BEGIN {
	if (o <= 0) o = 0.01
	if (t <= 0) t = 0.01
	printf "%-22s %10s %14s %12s\n", "tool", "median s", "packets/s", "peak RSS MiB"
	printf "%-22s %10.2f %14.0f %12.1f\n", "tcpshake analyze", o, p / o, orss / 1024
	printf "%-22s %10.2f %14.0f %12.1f\n", "tshark -z conv,tcp", t, p / t, trss / 1024
	printf "speed ratio: %.1fx tshark'"'"'s packets per second (target >= 10x)\n", t / o
}'
[[ $CONVS == "$TS_CONVS" ]] || echo "WARNING: conversation counts differ (tcpshake $CONVS, tshark $TS_CONVS)"

echo
echo "decode loop (go test -bench DecodeLoop -benchmem):"
(cd "$REPO" && go test -run '^$' -bench 'DecodeLoop' -benchmem ./analyze | grep -E '^Benchmark')
