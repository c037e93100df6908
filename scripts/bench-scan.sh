#!/usr/bin/env bash
# bench-scan.sh times a scan of every port (1-65535) of the lab server with tcpshake probe, nmap -sS -p- -n -Pn
# and masscan, side by side in one run: wall-clock medians, peak RSS, and whether each found exactly the server's
# open and filtered ports. It also measures the physical limit of this machine: how many SYNs a second one core
# and both cores push through the veth pair when the server drops them at once (the send path alone), and how
# many SYN->RST round trips a second they complete. Then 16 hosts × 65,535 ports, tcpshake beside masscan. See
# docs/scan.md.
#
# Usage: scripts/bench-scan.sh   (as root)
# Environment: RUNS (5), RATE (tcpshake's fast rate, 1000000), MASSCAN_RATE (100000, its best in NOTES.md),
# MASSCAN_TIMEOUT (30 s: masscan's "waiting" countdown can run negative and never end here), HOSTS16 (1: also
# the 16-host scan), TCPSHAKE (a built binary; default: build this repo), KEEP=1 keeps the raw outputs.
#
# Every packet goes from the lab client namespace to the lab server's addresses (198.51.100.2-17); each tool
# is bounded by its own rate and by timeout.
set -uo pipefail
. "$(dirname "$0")/lib/bench-lab.sh"

RUNS=${RUNS:-5}
RATE=${RATE:-1000000}
MASSCAN_RATE=${MASSCAN_RATE:-100000}
MASSCAN_TIMEOUT=${MASSCAN_TIMEOUT:-30}
HOSTS16=${HOSTS16:-1}
[[ $RUNS =~ ^[1-9][0-9]?$ && $RATE =~ ^[1-9][0-9]*$ && $MASSCAN_RATE =~ ^[1-9][0-9]*$ ]] ||
	bench_die "RUNS must be 1-99, RATE and MASSCAN_RATE positive numbers"

bench_need_tools nmap:nmap masscan:masscan /usr/bin/time:time taskset:util-linux
bench_setup bs
S=$BENCH_SERVER
SERVER_NS=$BENCH_LAB-server
MAC=$(ip netns exec "$SERVER_NS" cat /sys/class/net/veth0/address) || bench_die "no server MAC"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# The lab server's truth: open where something listens on its address (or the wildcard), filtered where the
# lab's nftables input chain drops or rejects the port.
OPEN=$(ip netns exec "$SERVER_NS" ss -ltnH | awk '{print $4}' | grep -E "^($S|0\.0\.0\.0|\*):" | sed 's/.*://' | sort -n | tr '\n' ' ')
FILTERED=$(ip netns exec "$SERVER_NS" nft list chain inet tcpshake_lab input | grep -oE 'tcp dport [0-9]+' | awk '{print $3}' | sort -n | tr '\n' ' ')
bench_log "server truth: open ${OPEN}; filtered ${FILTERED}; every other port closed"

# timed NAME CMD...: runs CMD as the lab client under /usr/bin/time, appends the wall time (s) to NAME.s, the
# peak RSS (KiB) to NAME.kb, and keeps the output in NAME.out.
timed() {
	local name=$1
	shift
	ip netns exec "$BENCH_CLIENT" /usr/bin/time -f '%e %M' -o "$BENCH_DIR/time.txt" "$@" >"$BENCH_DIR/$name.out" 2>"$BENCH_DIR/$name.err"
	local rc=$?
	read -r wall kb <"$BENCH_DIR/time.txt" 2>/dev/null || { wall=-; kb=-; }
	[[ $wall =~ ^[0-9.]+$ ]] || wall=$(grep -oE '^[0-9.]+ [0-9]+$' "$BENCH_DIR/time.txt" | tail -1 | cut -d' ' -f1)
	[[ $kb =~ ^[0-9]+$ ]] || kb=$(grep -oE '^[0-9.]+ [0-9]+$' "$BENCH_DIR/time.txt" | tail -1 | cut -d' ' -f2)
	echo "$wall" >>"$BENCH_DIR/$name.s"
	echo "$kb" >>"$BENCH_DIR/$name.kb"
	return $rc
}

# exact NAME: did the last output of NAME find exactly the truth? (masscan reports open ports only.)
exact() {
	local name=$1 out=$BENCH_DIR/$1.out open filtered
	case $name in
	tcpshake*)
		open=$(grep -E '^[0-9]+/tcp +open ' "$out" | cut -d/ -f1 | sort -n | tr '\n' ' ')
		filtered=$(grep -E '^[0-9]+/tcp +filtered ' "$out" | cut -d/ -f1 | sort -n | tr '\n' ' ')
		grep -q "Not shown: $((65535 - $(wc -w <<<"$OPEN") - $(wc -w <<<"$FILTERED"))) closed tcp ports" "$out" || filtered="(closed count wrong)"
		;;
	nmap*)
		open=$(grep -E '^[0-9]+/tcp +open ' "$out" | cut -d/ -f1 | sort -n | tr '\n' ' ')
		filtered=$(grep -E '^[0-9]+/tcp +filtered ' "$out" | cut -d/ -f1 | sort -n | tr '\n' ' ')
		grep -q "Not shown: $((65535 - $(wc -w <<<"$OPEN") - $(wc -w <<<"$FILTERED"))) closed tcp ports" "$out" || filtered="(closed count wrong)"
		;;
	masscan*)
		open=$(grep -oE 'open port [0-9]+/tcp' "$out" | awk '{print $3}' | cut -d/ -f1 | sort -n | uniq | tr '\n' ' ')
		filtered=$FILTERED
		;;
	esac
	if [[ $open == "$OPEN" && $filtered == "$FILTERED" ]]; then echo exact; else echo "WRONG(open:${open}filtered:${filtered})"; fi >>"$BENCH_DIR/$name.exact"
}

declare -A CMD=(
	[tcpshake-fast]="$TCPSHAKE probe $S -p 1-65535 --rate $RATE"
	[tcpshake-default]="$TCPSHAKE probe $S -p 1-65535"
	[nmap]="nmap -sS -p- -n -Pn $S"
	[masscan]="timeout $MASSCAN_TIMEOUT masscan -p1-65535 $S --rate $MASSCAN_RATE --interface veth0 --router-mac $MAC --wait 1"
)
CASES=(tcpshake-fast nmap masscan tcpshake-default)
bench_log "65535 ports of $S, $RUNS runs each, interleaved (load average at start: $LOAD0)"
for ((i = 1; i <= RUNS; i++)); do
	for c in "${CASES[@]}"; do
		# shellcheck disable=SC2086
		timed "$c" ${CMD[$c]}
		exact "$c"
	done
	grep -oE 'the first SYNs at [0-9]+ per second' "$BENCH_DIR/tcpshake-fast.out" | awk '{print $5}' >>"$BENCH_DIR/fast.pps"
done

# The physical limit: one core (taskset -c 0: one sender, the scan loop) and both cores (taskset -c 0,1: a
# sender thread pinned to each), no rate limit. First the server drops our SYNs in its prerouting hook (only the
# send path and the veth), then it answers them (SYN -> RST round trips). On a veth pair the server's answer is
# made on the CPU that sent the SYN, so the round trips are what the cores complete.
bench_log "physical limit: one core and both cores, --rate 100000000"
ip netns exec "$SERVER_NS" nft -f - <<EOF || bench_die "nft failed"
table inet bench_scan_drop {
	chain pre { type filter hook prerouting priority -300; tcp sport 49991 drop; }
}
EOF
for ((i = 1; i <= RUNS; i++)); do
	for cores in 0 0,1; do
		n=${cores//,/}
		timed "limit-send$n" taskset -c "$cores" "$TCPSHAKE" probe "$S" -p 1-65535 --rate 100000000 --sport 49991 --retries 0 --timeout 100ms
		grep -oE 'the first SYNs at [0-9]+ per second' "$BENCH_DIR/limit-send$n.out" | awk '{print $5}' >>"$BENCH_DIR/limit-send$n.pps"
		timed "limit-rtt$n" taskset -c "$cores" "$TCPSHAKE" probe "$S" -p 1-65535 --rate 100000000 --sport 49992
		grep -oE 'the first SYNs at [0-9]+ per second' "$BENCH_DIR/limit-rtt$n.out" | awk '{print $5}' >>"$BENCH_DIR/limit-rtt$n.pps"
	done
done
ip netns exec "$SERVER_NS" nft delete table inet bench_scan_drop

if [[ $HOSTS16 == 1 ]]; then
	bench_log "16 hosts x 65535 ports (198.51.100.2-17), once each"
	timed tcpshake-16 "$TCPSHAKE" probe 198.51.100.2-17 -p 1-65535 --rate "$RATE"
	timed masscan-16 timeout $((MASSCAN_TIMEOUT * 4)) masscan -p1-65535 198.51.100.2-198.51.100.17 --rate "$MASSCAN_RATE" \
		--interface veth0 --router-mac "$MAC" --wait 1
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

med() { bench_median "$BENCH_DIR/$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\nscan benchmark, %s, %s runs (median), kernel %s, %s CPUs, load average %s at start, %s at end\n' \
	"$(date -u +%FT%TZ)" "$RUNS" "$(uname -r)" "$(nproc)" "$LOAD0" "$LOAD1"
printf '%-18s %10s %12s  %s\n' case "wall (s)" "peak RSS" "exact runs"
for c in "${CASES[@]}"; do
	printf '%-18s %10s %9s KiB  %s/%s\n' "$c" "$(med "$c.s")" "$(med "$c.kb")" \
		"$(grep -c '^exact$' "$BENCH_DIR/$c.exact")" "$(wc -l <"$BENCH_DIR/$c.exact")"
done
printf 'tcpshake (--rate %s) / nmap: %s; / masscan: %s\n' "$RATE" \
	"$(ratio "$(med tcpshake-fast.s)" "$(med nmap.s)")" "$(ratio "$(med tcpshake-fast.s)" "$(med masscan.s)")"
printf 'per round, tcpshake / nmap: %s\n' "$(paste -d' ' "$BENCH_DIR/tcpshake-fast.s" "$BENCH_DIR/nmap.s" |
	awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), ($2 > 0 ? $1 / $2 : 0) }')"
printf 'physical limit, one core: %s SYNs/s sent (server drops them), %s SYN->RST round trips/s\n' \
	"$(med limit-send0.pps)" "$(med limit-rtt0.pps)"
printf 'physical limit, both cores: %s SYNs/s sent, %s SYN->RST round trips/s (%s s for 65535 ports); the fast scan'"'"'s first SYNs: %s/s\n' \
	"$(med limit-send01.pps)" "$(med limit-rtt01.pps)" "$(med limit-rtt01.s)" "$(med fast.pps)"
if [[ $HOSTS16 == 1 ]]; then
	printf '16 hosts x 65535: tcpshake %s s (%s), %s KiB; masscan %s s (%s open ports found, ' \
		"$(med tcpshake-16.s)" "$(grep -oE 'ledger: .*' "$BENCH_DIR/tcpshake-16.out" | sed 's/ledger: //; s/ answered at the first probe.*= / answered at the first probe, of /')" \
		"$(med tcpshake-16.kb)" "$(med masscan-16.s)" "$(grep -c 'open port' "$BENCH_DIR/masscan-16.out")"
	printf 'the truth has %s)\n' "$(($(wc -w <<<"$OPEN") + 15))"
	grep -E '^--- scan|^ledger' "$BENCH_DIR/tcpshake-16.out"
	# The truth of 16 hosts: the server's open ports, port 85 (a wildcard listener) on the 15 others, the
	# firewalled ports on all 16 (filtered, by ICMP or by silence: the server rate-limits its ICMP errors).
	open16=$(($(wc -w <<<"$OPEN") + 15)) filt16=$((16 * $(wc -w <<<"$FILTERED")))
	want16="--- scan: $((16 * 65535)) probes, $open16 open, $((16 * 65535 - open16 - filt16)) closed, $filt16 filtered, 0 undecided ---"
	if grep -qF -- "$want16" "$BENCH_DIR/tcpshake-16.out"; then echo "16 hosts: tcpshake exact"; else echo "16 hosts: tcpshake WRONG, want: $want16"; fi
fi
for c in "${CASES[@]}"; do grep -v '^exact$' "$BENCH_DIR/$c.exact" | sed "s/^/$c: /"; done
exit 0
