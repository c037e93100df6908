#!/usr/bin/env bash
# bench-watch.sh measures what `tcpshake watch` costs the traffic it watches: a loop of N HTTP/1.0
# connections (ab, one at a time, a new connection each: ten state changes per connection on the two
# ends) from the lab client to the lab server, timed in runs alternating without and with a watch of
# every namespace, unfiltered, its lines written to a file (the watch command as a user runs it). It
# prints every run, the medians and their ratio (the issue's target: at most 1.05), and the load
# average before each run, since this machine is shared. See docs/benchmarks.md and docs/watch.md.
#
# Usage: scripts/bench-watch.sh [-n CONNECTIONS] [-r RUNS]   (as root)
# Environment: N (10000 connections per run), RUNS (10: five without, five with, alternating),
#   NONE=1 adds a third arm, a watch whose kernel filter excludes every record (--port 9: programs
#   attached, nothing delivered), TCPSHAKE (a built binary; default: build this repo).
#
# Every connection goes from the lab client namespace to the lab server 198.51.100.2; each loop is
# bounded by N and by a timeout.
set -uo pipefail
. "$(dirname "$0")/lib/bench-lab.sh"

N=${N:-10000}
RUNS=${RUNS:-10}
NONE=${NONE:-0}
while getopts n:r: opt; do
	case $opt in
	n) N=$OPTARG ;;
	r) RUNS=$OPTARG ;;
	*) bench_die "usage: $0 [-n CONNECTIONS] [-r RUNS]" ;;
	esac
done
[[ $N =~ ^[1-9][0-9]{0,5}$ ]] || bench_die "CONNECTIONS must be 1-999999"
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || bench_die "RUNS must be 1-99"

bench_need_tools ab:apache2-utils
bench_setup bwt
URL=http://$BENCH_SERVER/

# loop NAME: one timed run of N connections; appends its seconds to $BENCH_DIR/NAME.s.
loop() {
	local t0 t1 failed
	t0=$(date +%s.%N)
	ip netns exec "$BENCH_CLIENT" timeout 300 ab -q -n "$N" -c 1 "$URL" >"$BENCH_DIR/ab.out" 2>&1 ||
		bench_die "ab failed: $(tail -3 "$BENCH_DIR/ab.out")"
	t1=$(date +%s.%N)
	failed=$(awk '/^Failed requests:/ { print $3 }' "$BENCH_DIR/ab.out")
	[[ ${failed:-1} == 0 ]] || bench_die "ab: ${failed:-?} failed requests"
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }' >>"$BENCH_DIR/$1.s"
}

# start_watch NAME ARGS...: starts `tcpshake watch ARGS`, its lines to a file, and waits until it
# says it is watching; sets W to its pid. A watch that has not said so within 10 s is killed and
# started again (at most three tries): on this machine a process has been seen stuck at start-up, in
# the Go runtime before main, for as long as anyone waited.
start_watch() {
	local name=$1 try i
	shift
	for ((try = 1; try <= 3; try++)); do
		# The last round's log says "watching" too: empty it before the start, or the loop could begin
		# before this watch does (the redirection below happens in the child, after the check may run).
		: >"$BENCH_DIR/$name.log"
		"$TCPSHAKE" watch "$@" >"$BENCH_DIR/$name.lines" 2>>"$BENCH_DIR/$name.log" &
		W=$!
		BENCH_PIDS+=("$W")
		for ((i = 0; i < 200; i++)); do
			grep -qs "watching" "$BENCH_DIR/$name.log" && return 0
			kill -0 "$W" 2>/dev/null || break
			sleep 0.05
		done
		kill -9 "$W" 2>/dev/null
		wait "$W" 2>/dev/null
		bench_log "watch did not start within 10 s (try $try): $(head -c 300 "$BENCH_DIR/$name.log")"
	done
	bench_die "watch did not start in three tries"
}

# watched NAME ARGS...: a run of loop while `tcpshake watch ARGS` watches; the watch's summary line
# (its count of state changes) goes to $BENCH_DIR/NAME.sum.
watched() {
	local name=$1 c0 c1
	start_watch "$@"
	c0=$(cpu_ticks "$W")
	loop "$name"
	sleep 0.2 # the last changes
	c1=$(cpu_ticks "$W")
	kill -INT "$W" 2>/dev/null
	wait "$W"
	# The watch's own CPU time (user + system) while the loop ran, in ms.
	awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f\n", (b - a) * 1000 / hz }' >>"$BENCH_DIR/$name.cpu"
	tail -1 "$BENCH_DIR/$name.log" >"$BENCH_DIR/$name.sum"
}

# cpu_ticks PID: the process's user + system time so far, in clock ticks (proc(5): fields 14, 15;
# the name in field 2 has no spaces here).
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

ip netns exec "$BENCH_CLIENT" timeout 60 ab -q -n 200 -c 1 "$URL" >/dev/null 2>&1 # warm up: ARP, the server
arms=(off all)
((NONE)) && arms+=(none)
printf '%-4s %-5s %6s %10s %10s  %s\n' run arm load seconds "watch CPU" watch
for ((r = 0; r < RUNS; r++)); do
	arm=${arms[r % ${#arms[@]}]}
	load=$(cut -d' ' -f1 /proc/loadavg)
	case $arm in
	off) loop off ;;
	all) watched all ;;
	none) watched none --port 9 ;;
	esac
	what=- cpu=-
	[[ $arm != off ]] && what=$(cat "$BENCH_DIR/$arm.sum") cpu="$(tail -1 "$BENCH_DIR/$arm.cpu") ms"
	printf '%-4s %-5s %6s %10s %10s  %s\n' "$((r + 1))" "$arm" "$load" "$(tail -1 "$BENCH_DIR/$arm.s")" "$cpu" "$what"
done
off=$(bench_median "$BENCH_DIR/off.s")
printf '%-22s %10s %14s %18s\n' "median of $N connections" seconds "µs/connection" "watch CPU µs/conn"
for arm in "${arms[@]}"; do
	[[ -s $BENCH_DIR/$arm.s ]] || continue
	m=$(bench_median "$BENCH_DIR/$arm.s") c=-
	[[ -s $BENCH_DIR/$arm.cpu ]] && c=$(bench_median "$BENCH_DIR/$arm.cpu")
	awk -v arm="$arm" -v m="$m" -v n="$N" -v o="$off" -v c="$c" 'BEGIN {
		printf "%-22s %10.3f %14.1f %18s", arm, m, m * 1e6 / n, (c == "-" ? "-" : sprintf("%.1f", c * 1000 / n))
		if (arm != "off" && o > 0) printf "   ratio %s/off: %.3f", arm, m / o
		printf "\n" }'
done
