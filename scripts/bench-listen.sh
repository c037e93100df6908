#!/usr/bin/env bash
# bench-listen.sh measures SYN → SYN-ACK on the wire for `tcpshake listen` and, side by side, for the
# kernel's own listener (the lab server's port 7), in a private lab: tcpdump in the server namespace
# timestamps every client SYN and the server's SYN-ACK (nanoseconds, at the veth), and the script prints
# the median and 90th percentile of the difference per connection. See docs/benchmarks.md.
#
# Usage: scripts/bench-listen.sh [-n CONNECTIONS]   (as root)
# Environment: N (100 connections per server), TCPSHAKE (a built binary; default: build this repo).
#
# Every connection goes from the lab client namespace to the lab server 198.51.100.2; each loop is bounded.
set -uo pipefail
. "$(dirname "$0")/lib/bench-lab.sh"

N=${N:-100}
while getopts n: opt; do
	case $opt in
	n) N=$OPTARG ;;
	*) bench_die "usage: $0 [-n CONNECTIONS]" ;;
	esac
done
[[ $N =~ ^[1-9][0-9]{0,3}$ ]] || bench_die "CONNECTIONS must be 1-9999"

bench_need_tools tcpdump:tcpdump socat:socat
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
bench_setup bl
S=$BENCH_SERVER
SERVER_NS=$BENCH_LAB-server
PORT=8000

# measure NAME PORT: N sequential connections from the client (socat, which closes at once), captured
# in the server namespace; prints the per-connection SYN → SYN-ACK times in ms to $BENCH_DIR/NAME.ms.
measure() {
	local name=$1 port=$2 cap=$BENCH_DIR/$1.txt i
	ip netns exec "$SERVER_NS" timeout 120 tcpdump -i veth0 -n -l -tt --time-stamp-precision=nano \
		"tcp port $port and tcp[tcpflags] & tcp-syn != 0" >"$cap" 2>"$BENCH_DIR/$name.tcpdump.log" &
	local dump=$!
	BENCH_PIDS+=("$dump")
	sleep 1 # tcpdump attaches its filter
	for ((i = 0; i < N; i++)); do
		ip netns exec "$BENCH_CLIENT" timeout 5 socat -u /dev/null "TCP:$S:$port" 2>/dev/null
	done
	sleep 0.5
	kill "$dump" 2>/dev/null
	wait "$dump" 2>/dev/null
	# "T IP C.P > S.port: Flags [S], ..." then "T IP S.port > C.P: Flags [S.], ...": pair by the client port.
	awk -v S="$S.$port" '
		$5 == S":" && $7 == "[S]," { n = split($3, a, "."); p = a[n]; if (!(p in syn)) syn[p] = $1 }
		$3 == S && $7 == "[S.]," { v = $5; sub(":", "", v); n = split(v, a, "."); p = a[n]; if ((p in syn) && !(p in done)) { printf "%.6f\n", ($1 - syn[p]) * 1000; done[p] = 1 } }
	' "$cap" >"$BENCH_DIR/$name.ms"
}

# tcpshake listen on PORT for N connections; the client closes at once, so --close wait ends each.
ip netns exec "$SERVER_NS" "$TCPSHAKE" listen "$PORT" --count "$N" --close wait --time-wait 0 \
	--listen-timeout 30s --timeout 5s --json >"$BENCH_DIR/listen.json" 2>"$BENCH_DIR/listen.log" &
LISTEN=$!
BENCH_PIDS+=("$LISTEN")
for ((i = 0; i < 50; i++)); do grep -q "listening on" "$BENCH_DIR/listen.log" && break; sleep 0.1; done
measure listen "$PORT"
wait "$LISTEN"
LISTEN_RC=$?
measure kernel 7

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (before: $LOAD0)"
printf '%-26s %6s %10s %10s\n' "SYN → SYN-ACK on the wire" "n" "median ms" "p90 ms"
for name in listen kernel; do
	printf '%-26s %6s %10s %10s\n' "$name" "$(wc -l <"$BENCH_DIR/$name.ms")" \
		"$(bench_median "$BENCH_DIR/$name.ms")" "$(bench_quantile 0.9 "$BENCH_DIR/$name.ms")"
done
ml=$(bench_median "$BENCH_DIR/listen.ms") mk=$(bench_median "$BENCH_DIR/kernel.ms")
awk -v a="$ml" -v b="$mk" 'BEGIN { if (b > 0) printf "ratio listen/kernel: %.1f×\n", a / b }'
oks=$(grep -c '"outcome":"ok"' "$BENCH_DIR/listen.json")
echo "tcpshake listen: exit $LISTEN_RC, $oks of $N connections ok"
