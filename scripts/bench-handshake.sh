#!/usr/bin/env bash
# bench-handshake.sh [N]: time one whole TCP connection played by hand —
# three-way handshake, 6 bytes to the echo service, the echo back, FIN close —
# with tcpshake and with the equivalent scapy script
# (scripts/bench_handshake_scapy.py), N runs each (default 20), and print the
# medians and the ratio tcpshake/scapy (target: at most 0.2).
#
# Each run is a whole process, started inside the client namespace of a lab
# this script creates (tcpshake lab up --name bh<random>) and removes on exit.
# Both talk only to the lab server 198.51.100.2. Needs root, Go,
# python3-scapy and nft (apt-get install -y python3-scapy nftables).
set -euo pipefail

N=${1:-20}
cd "$(dirname "$0")/.."
for tool in go nft ip; do
	command -v "$tool" >/dev/null || { echo "bench-handshake: $tool not found" >&2; exit 2; }
done
# The first python3 that can import scapy (Debian's package installs it for /usr/bin/python3).
PY=
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import scapy' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "bench-handshake: no python3 with scapy (apt-get install -y python3-scapy)" >&2; exit 2; }

WORK=$(mktemp -d)
BIN=$WORK/tcpshake
NAME=bh$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
	"$BIN" lab down --name "$NAME" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$BIN" .
"$BIN" lab up --name "$NAME" >/dev/null
CLIENT=$NAME-client
SERVER=198.51.100.2

now_ns() { date +%s%N; }
# ms T0 T1: the milliseconds between two now_ns readings
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", (b - a) / 1e6}'; }

# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

run_tcpshake() {
	ip netns exec "$CLIENT" "$BIN" handshake "$SERVER:7" --send 'hello\n' --time-wait 1ms --view list >"$WORK/ts.out"
	grep -q '6 bytes sent, 6 bytes received' "$WORK/ts.out" || { cat "$WORK/ts.out" >&2; return 1; }
}

run_scapy() {
	ip netns exec "$CLIENT" "$PY" scripts/bench_handshake_scapy.py --dst "$SERVER" --dport 7 >>"$WORK/scapy_inner.txt"
}

: >"$WORK/ts.txt"; : >"$WORK/scapy.txt"; : >"$WORK/scapy_inner.txt"
run_tcpshake; run_scapy; : >"$WORK/scapy_inner.txt" # warm-up: page cache, ARP
for _ in $(seq "$N"); do
	t0=$(now_ns); run_tcpshake; t1=$(now_ns)
	ms "$t0" "$t1" >>"$WORK/ts.txt"
	t0=$(now_ns); run_scapy; t1=$(now_ns)
	ms "$t0" "$t1" >>"$WORK/scapy.txt"
done

ts=$(median <"$WORK/ts.txt")
sc=$(median <"$WORK/scapy.txt")
sci=$(median <"$WORK/scapy_inner.txt")
ratio=$(awk -v a="$ts" -v b="$sc" 'BEGIN {printf "%.3f", a / b}')
printf 'runs: %d each (handshake + 6 bytes echoed + FIN close, lab %s)\n' "$N" "$NAME"
printf 'tcpshake  median %8.1f ms per connection (whole process, TIME-WAIT 1 ms)\n' "$ts"
printf 'scapy     median %8.1f ms per connection (whole process; %.1f ms after the import)\n' "$sc" "$sci"
printf 'ratio tcpshake/scapy: %s (target <= 0.2)\n' "$ratio"
