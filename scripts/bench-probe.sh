#!/usr/bin/env bash
# bench-probe.sh times `tcpshake probe` against nmap -sS and hping3 -S in a private lab and prints
# medians, ratios and tcpshake's peak RSS. See docs/benchmarks.md for the method and the figures.
#
# Usage: scripts/bench-probe.sh [-n RUNS]   (as root)
# Environment: RUNS (20), PLAIN_RUNS (3: plain nmap spends ~13 s on reverse DNS), ANATOMY_RUNS (5),
# TCPSHAKE (a built binary; default: build this repo), KEEP=1 keeps the raw files.
#
# Every packet goes from the lab client namespace to the lab server 198.51.100.2; each loop is bounded.
set -uo pipefail
. "$(dirname "$0")/lib/bench-lab.sh"

RUNS=${RUNS:-20}
PLAIN_RUNS=${PLAIN_RUNS:-3}
ANATOMY_RUNS=${ANATOMY_RUNS:-5}
while getopts n: opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	*) bench_die "usage: $0 [-n RUNS]" ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]{0,3}$ && $PLAIN_RUNS =~ ^[0-9]{1,3}$ && $ANATOMY_RUNS =~ ^[0-9]{1,3}$ ]] ||
	bench_die "RUNS must be 1-9999, PLAIN_RUNS and ANATOMY_RUNS 0-999"

bench_need_tools hping3:hping3 nmap:nmap tcpdump:tcpdump /usr/bin/time:time
bench_setup bp
S=$BENCH_SERVER
FAILS=0

# The cases: name, then the command run as the client, then an extended regexp its output must match
# (every verdict checked, so a fast wrong answer cannot win).
declare -A CMD CHECK
CASES=()
add_case() { CASES+=("$1"); CMD[$1]=$2; CHECK[$1]=$3; }
OK3='(80/tcp +open.*|81/tcp +closed.*|7/tcp +open.*){3}'
add_case ns-exec        "true" ''
add_case tcpshake-help  "$TCPSHAKE --help" 'USAGE'
add_case tcpshake-3     "$TCPSHAKE probe $S -p 80,81,7 -q" "$OK3"
add_case nmap-fair-3    "nmap -sS -Pn -n --max-retries 1 -p 80,81,7 $S" "$OK3"
add_case nmap-n-3       "nmap -sS -n -p 80,81,7 $S" "$OK3"
add_case hping3-1       "hping3 -S -p 80 -c 1 $S" 'flags=SA'
add_case tcpshake-1     "$TCPSHAKE probe $S:80 -q" '80/tcp +open'
add_case tcpshake-82    "$TCPSHAKE probe $S:82 -q" '82/tcp +filtered +no-response'
add_case tcpshake-82-to "$TCPSHAKE probe $S:82 -q --timeout 100ms" '82/tcp +filtered +no-response'
add_case nmap-82        "nmap -sS -Pn -n -p 82 $S" '82/tcp +filtered'
add_case nmap-82-sendip "nmap -sS -Pn -n --send-ip -p 82 $S" '82/tcp +filtered'
add_case nmap-plain-3   "nmap -sS -p 80,81,7 $S" "$OK3"

# run_case NAME [WRAPPER...] runs one case once as the client, appends its wall time in µs to
# $BENCH_DIR/NAME.us and checks its output.
run_case() {
	local name=$1 out=$BENCH_DIR/out.txt t0 t1 flat
	shift
	t0=$(date +%s%N)
	# shellcheck disable=SC2086 # CMD holds a simple word list on purpose
	ip netns exec "$BENCH_CLIENT" "$@" ${CMD[$name]} >"$out" 2>&1
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000)) >>"$BENCH_DIR/$name.us"
	echo "$t0 $t1" >>"$BENCH_DIR/$name.win"
	flat=$(tr '\n' ' ' <"$out" | tr -s ' ')
	if [[ -n ${CHECK[$name]} ]] && ! check_output "$name" "$out"; then
		printf '%s: %s gave an unexpected answer: %s\n' "${0##*/}" "$name" "${flat:0:300}" >&2
		FAILS=$((FAILS + 1))
	fi
}

# check_output tests a case's output against its pattern; the three-port pattern needs each
# verdict on its own line.
check_output() {
	local name=$1 out=$2
	if [[ ${CHECK[$name]} == "$OK3" ]]; then
		grep -qE '^80/tcp +open' "$out" && grep -qE '^81/tcp +closed' "$out" && grep -qE '^7/tcp +open' "$out"
	else
		grep -qE "${CHECK[$name]}" "$out"
	fi
}

bench_log "lab $BENCH_LAB up; warming up (ARP and page caches)"
for c in tcpshake-3 nmap-fair-3 hping3-1 tcpshake-82-to; do run_case "$c"; done
rm -f "$BENCH_DIR"/*.us "$BENCH_DIR"/*.win

FAST=(ns-exec tcpshake-help tcpshake-3 nmap-fair-3 nmap-n-3 hping3-1 tcpshake-1)
SLOW=(tcpshake-82 tcpshake-82-to nmap-82 nmap-82-sendip)
bench_log "timing: $RUNS rounds, tools interleaved in each round"
for ((i = 1; i <= RUNS; i++)); do
	for c in "${FAST[@]}" "${SLOW[@]}"; do run_case "$c"; done
	printf '.' >&2
done
printf '\n' >&2
if ((PLAIN_RUNS > 0)); then
	bench_log "plain nmap (reverse DNS on; the lab has no resolver), $PLAIN_RUNS runs"
	for ((i = 1; i <= PLAIN_RUNS; i++)); do run_case nmap-plain-3; done
fi

# Peak RSS: GNU time's "Maximum resident set size" of the process itself (ip netns exec execs it).
bench_log "peak RSS over $RUNS runs each"
rss() {
	local name=$1 i f=$BENCH_DIR/$1.rss
	for ((i = 1; i <= RUNS; i++)); do
		# shellcheck disable=SC2086
		ip netns exec "$BENCH_CLIENT" /usr/bin/time -v -o "$BENCH_DIR/time.txt" ${CMD[$name]} >/dev/null 2>&1
		awk -F': ' '/Maximum resident set size/ {print $2}' "$BENCH_DIR/time.txt" >>"$f"
	done
}
for c in tcpshake-3 tcpshake-82-to nmap-fair-3 hping3-1; do rss "$c"; done

# Anatomy: where the wall time goes, from tcpdump timestamps (CLOCK_REALTIME, like date +%s%N):
# process start → first packet on the lab link, first → last packet, last packet → process exit.
anatomy() {
	local name=$1 pcap=$BENCH_DIR/anatomy-$1.pcap i
	rm -f "$BENCH_DIR/$name.win"
	bench_capture_start "$pcap"
	for ((i = 1; i <= ANATOMY_RUNS; i++)); do run_case "$name"; sleep 0.05; done
	bench_capture_stop
	tcpdump -r "$pcap" -n -tt --nano 2>/dev/null | awk '{split($1, p, "."); print p[1] p[2]}' >"$pcap.ts"
	awk -v name="$name" -v dir="$BENCH_DIR" '
		NR == FNR { ts[++n] = $1; next }
		{
			first = ""; last = ""
			for (k = 1; k <= n; k++) if (ts[k] >= $1 && ts[k] <= $2) { if (first == "") first = ts[k]; last = ts[k] }
			if (first == "") next
			printf "%.0f\n", (first - $1) / 1000 >> (dir "/" name ".pre")
			printf "%.0f\n", (last - first) / 1000 >> (dir "/" name ".wire")
			printf "%.0f\n", ($2 - last) / 1000 >> (dir "/" name ".post")
		}' "$pcap.ts" "$BENCH_DIR/$name.win"
}
if ((ANATOMY_RUNS > 0)); then
	bench_log "anatomy: $ANATOMY_RUNS runs each under tcpdump"
	for c in tcpshake-3 nmap-fair-3 hping3-1; do anatomy "$c"; done
fi

ms() { [[ $1 == - ]] && echo - || awk -v v="$1" 'BEGIN { printf "%.1f", v / 1000 }'; }
med() { bench_median "$BENCH_DIR/$1.us"; }
ratio() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN { if (b <= 0) print "-"; else if (a / b < 0.01) printf "%.4f", a / b; else printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t) ? "met" : "MISSED" }'; }

KVER=$(uname -r)
printf '\ntcpshake probe benchmark, %s, %s runs (median), lab %s, kernel %s, %s CPUs\n' \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$RUNS" "$BENCH_LAB" "$KVER" "$(nproc)"
printf 'every time includes `ip netns exec` (see ns-exec)\n\n'
printf '%-9s %-50s %10s %7s  %s\n' tool case "median ms" ratio "(ratio = tcpshake case ÷ this row)"
row() {
	local name=$1 tool=$2 desc=$3 ts=${4:-} r=''
	[[ -s $BENCH_DIR/$name.us ]] || return 0
	[[ -n $ts && -s $BENCH_DIR/$ts.us ]] && r=$(ratio "$ts" "$name")
	printf '%-9s %-50s %10s %7s  %s\n' "$tool" "$desc" "$(ms "$(med "$name")")" "${r:--}" "${ts:+$ts ÷ this}"
}
row ns-exec        ip       'ip netns exec true (baseline)'
row tcpshake-help  tcpshake '--help (Go start-up, no sockets)'
row tcpshake-1     tcpshake 'probe 198.51.100.2:80 (one probe)'
row tcpshake-3     tcpshake 'probe 198.51.100.2 -p 80,81,7'
row nmap-fair-3    nmap     '-sS -Pn -n --max-retries 1 -p 80,81,7' tcpshake-3
row nmap-n-3       nmap     '-sS -n -p 80,81,7 (default discovery)' tcpshake-3
row nmap-plain-3   nmap     "-sS -p 80,81,7 (plain: reverse DNS; $PLAIN_RUNS runs)" tcpshake-3
row hping3-1       hping3   '-S -p 80 -c 1 (one probe)' tcpshake-3
row tcpshake-82    tcpshake 'probe 198.51.100.2:82 (filtered, defaults)'
row tcpshake-82-to tcpshake 'probe 198.51.100.2:82 --timeout 100ms'
row nmap-82        nmap     '-sS -Pn -n -p 82' tcpshake-82
row nmap-82-sendip nmap     '-sS -Pn -n --send-ip -p 82 (no ARP RTT seed)' tcpshake-82

printf '\npeak RSS (max of %s runs; median)\n' "$RUNS"
for c in tcpshake-3 tcpshake-82-to nmap-fair-3 hping3-1; do
	printf '  %-15s %6s KiB max  %6s KiB median\n' "$c" "$(bench_quantile 1 "$BENCH_DIR/$c.rss")" \
		"$(bench_median "$BENCH_DIR/$c.rss")"
done

if ((ANATOMY_RUNS > 0)); then
	printf '\nwhere the time goes (median of %s runs under tcpdump, ms)\n' "$ANATOMY_RUNS"
	printf '  %-12s %18s %18s %18s\n' case 'start→1st packet' '1st→last packet' 'last packet→exit'
	for c in tcpshake-3 nmap-fair-3 hping3-1; do
		[[ -s $BENCH_DIR/$c.pre ]] || continue
		printf '  %-12s %18s %18s %18s\n' "$c" "$(ms "$(bench_median "$BENCH_DIR/$c.pre")")" \
			"$(ms "$(bench_median "$BENCH_DIR/$c.wire")")" "$(ms "$(bench_median "$BENCH_DIR/$c.post")")"
	done
fi

r_nmap=$(ratio tcpshake-3 nmap-fair-3)
r_hping=$(ratio tcpshake-3 hping3-1)
r_filt=$(ratio tcpshake-82 nmap-82)
rss_max=$(bench_quantile 1 "$BENCH_DIR/tcpshake-3.rss")
printf '\ntargets\n'
printf '  3 ports vs nmap -sS (fair flags)   %5s  (<= 0.40)  %s\n' "$r_nmap" "$(verdict "$r_nmap" 0.40)"
printf '  3 ports vs one hping3 probe        %5s  (<= 1.50)  %s\n' "$r_hping" "$(verdict "$r_hping" 1.50)"
printf '  filtered :82 vs nmap -sS -Pn -n    %5s  (<= 1.00)  %s\n' "$r_filt" "$(verdict "$r_filt" 1.00)"
printf '  tcpshake peak RSS              %6s KiB  (<= 15360) %s\n' "$rss_max" "$(verdict "$rss_max" 15360)"
if ((FAILS > 0)); then
	printf '\n%d runs gave an unexpected answer (see above): the figures are suspect\n' "$FAILS"
	exit 1
fi
