#!/usr/bin/env bash
# rtt-accuracy.sh compares the round-trip times that tcpshake, hping3 and nping report with the wire RTT
# of the same probes, taken from a tcpdump capture on the lab link (SYN out → SYN-ACK in, matched by
# the reply's ack = the SYN's seq + 1). See docs/benchmarks.md for the method and the figures.
#
# Usage: scripts/rtt-accuracy.sh [-c COUNT]   (as root)
# Environment: COUNT (100 probes per tool), INTERVAL_MS (20), TCPSHAKE (a built binary; default:
# build this repo), KEEP=1 keeps the captures and the tools' output.
#
# Every packet goes from the lab client namespace to the lab server 198.51.100.2 port 7; each tool
# sends exactly COUNT probes.
set -uo pipefail
. "$(dirname "$0")/lib/bench-lab.sh"

COUNT=${COUNT:-100}
INTERVAL_MS=${INTERVAL_MS:-20}
while getopts c: opt; do
	case $opt in
	c) COUNT=$OPTARG ;;
	*) bench_die "usage: $0 [-c COUNT]" ;;
	esac
done
[[ $COUNT =~ ^[1-9][0-9]{0,3}$ && $INTERVAL_MS =~ ^[1-9][0-9]{0,3}$ ]] ||
	bench_die "COUNT must be 1-9999 and INTERVAL_MS 1-9999"

bench_need_tools hping3:hping3 nping:nmap tcpdump:tcpdump
bench_setup rtt
S=$BENCH_SERVER
D=$BENCH_DIR
bench_log "lab $BENCH_LAB up; $COUNT probes to $S:7 per tool, ${INTERVAL_MS} ms apart"
bench_in "$TCPSHAKE" probe "$S:7" -q >/dev/null 2>&1 # warm the neighbour cache

# wire PCAP [FILTER] prints one line per SYN, in sending order: SYN seq, SYN time, wire RTT in µs ("-" when
# unanswered).
wire() {
	tcpdump -r "$1" -n -S -tt --nano "${2:-tcp port 7}" 2>/dev/null | awk '
		function num(s) { gsub(/[^0-9]/, "", s); return s + 0 }
		/Flags \[S\],/ { for (i = 1; i <= NF; i++) if ($i == "seq") { seq = num($(i+1)); t[seq] = $1; order[++n] = seq } }
		/Flags \[[SR]\.\],/ {
			for (i = 1; i <= NF; i++) if ($i == "ack") ack = num($(i+1))
			s = (ack + 4294967295) % 4294967296
			if ((s in t) && !(s in rtt)) {
				split(t[s], a, "."); split($1, b, ".")
				rtt[s] = (b[1] - a[1]) * 1e6 + (b[2] - a[2]) / 1e3
			}
		}
		END { for (k = 1; k <= n; k++) if (order[k] in rtt) printf "%.0f %s %.3f\n", order[k], t[order[k]], rtt[order[k]]; else printf "%.0f %s -\n", order[k], t[order[k]] }'
}

# errors REPORTED WIRE OUT: REPORTED has lines "key rtt_µs", WIRE "key ... wire_µs"; OUT gets
# "reported-wire" in µs for every key in both. Prints how many matched.
errors() {
	awk 'NR == FNR { r[$1] = $2; next } ($1 in r) && $NF != "-" { printf "%.3f\n", r[$1] - $NF; m++ } END { print m + 0 > "/dev/stderr" }' \
		"$1" "$2" 2>"$3.n" >"$3"
	cat "$3.n"
}

# 1. tcpshake: "sent" steps carry the SYN's seq, "received" ones the ack and rtt_ms.
bench_capture_start "$D/tcpshake.pcap"
bench_in "$TCPSHAKE" probe "$S:7" -c "$COUNT" -i "${INTERVAL_MS}ms" --json >"$D/tcpshake.json" 2>"$D/tcpshake.stderr" ||
	bench_log "tcpshake exited $?: $(head -c 300 "$D/tcpshake.stderr")"
bench_capture_stop
# tcprep JSON prints "SYN seq, reported RTT in µs" for every answer (SYN-ACK or RST-ACK) with an rtt_ms.
tcprep() {
	awk '/"direction":"received"/ && /"flags":"[SR]\."/ && /"rtt_ms"/ {
		match($0, /"ack":[0-9]+/); a = substr($0, RSTART + 6, RLENGTH - 6) + 0
		match($0, /"rtt_ms":[0-9.eE+-]+/); r = substr($0, RSTART + 9, RLENGTH - 9) * 1000
		printf "%.0f %.3f\n", (a + 4294967295) % 4294967296, r }' "$1"
}
tcprep "$D/tcpshake.json" >"$D/tcpshake.rep"
wire "$D/tcpshake.pcap" >"$D/tcpshake.wire"
n_ts=$(errors "$D/tcpshake.rep" "$D/tcpshake.wire" "$D/tcpshake.err.us")

# 2. hping3: seq=K in its output is the K-th SYN it sent (its source port counts up), 0.1 ms resolution.
bench_capture_start "$D/hping3.pcap"
bench_in hping3 -S -p 7 -c "$COUNT" -i "u$((INTERVAL_MS * 1000))" "$S" >"$D/hping3.out" 2>&1
bench_capture_stop
sed -n 's/.* seq=\([0-9]*\) .* rtt=\([0-9.]*\) ms.*/\1 \2/p' "$D/hping3.out" |
	awk '{ printf "%d %.3f\n", $1 + 1, $2 * 1000 }' >"$D/hping3.rep"
wire "$D/hping3.pcap" | awk '{ print NR, $0 }' >"$D/hping3.wire"
n_hp=$(errors "$D/hping3.rep" "$D/hping3.wire" "$D/hping3.err.us")

# 3. nping: every probe has the same port and seq, so its K-th SENT/RCVD pair is the K-th SYN on the wire.
# It prints per-probe times at 0.1 ms resolution and the min/avg/max RTT in µs.
bench_capture_start "$D/nping.pcap"
bench_in nping --tcp -p 7 --flags syn -c "$COUNT" --delay "${INTERVAL_MS}ms" "$S" >"$D/nping.out" 2>&1
bench_capture_stop
awk '/^SENT/ { gsub(/[()s]/, "", $2); sent[++ns] = $2 } /^RCVD/ && / SA / { gsub(/[()s]/, "", $2); printf "%d %.3f\n", ns, ($2 - sent[ns]) * 1e6 }' \
	"$D/nping.out" >"$D/nping.rep"
# nping reuses one seq, so the reply to every SYN matches the last one seen: pair them in order.
tcpdump -r "$D/nping.pcap" -n -tt --nano 'tcp port 7' 2>/dev/null | awk '
	/Flags \[S\],/ { split($1, a, "."); s1 = a[1]; s2 = a[2]; pending = 1; next }
	/Flags \[S\.\],/ && pending { split($1, b, "."); printf "%d x %.3f\n", ++k, (b[1] - s1) * 1e6 + (b[2] - s2) / 1e3; pending = 0 }' >"$D/nping.wire"
n_np=$(errors "$D/nping.rep" "$D/nping.wire" "$D/nping.err.us")

# 4. tcpshake probing three ports per round (80 open, 81 closed, 7 open): the RTT of each port's answer.
M=$(((COUNT + 2) / 3))
bench_capture_start "$D/tcpshake-3.pcap"
bench_in "$TCPSHAKE" probe "$S" -p 80,81,7 -c "$M" -i "${INTERVAL_MS}ms" --json >"$D/tcpshake-3.json" 2>&1
bench_capture_stop
tcprep "$D/tcpshake-3.json" >"$D/tcpshake-3.rep"
wire "$D/tcpshake-3.pcap" 'tcp and (port 7 or port 80 or port 81)' >"$D/tcpshake-3.wire"
n_t3=$(errors "$D/tcpshake-3.rep" "$D/tcpshake-3.wire" "$D/tcpshake-3.err.us")

summary() {
	local name=$1 n=$2 f=$D/$1.err.us
	awk '{ a = $1 < 0 ? -$1 : $1; print a }' "$f" >"$f.abs"
	printf '%-10s %7s %9s %9s %9s %10s %10s\n' "$name" "$n/$COUNT" \
		"$(bench_median "$f.abs")" "$(bench_quantile 0.9 "$f.abs")" "$(bench_quantile 1 "$f.abs")" \
		"$(bench_median "$f")" "$(awk '$NF != "-" { print $NF }' "$D/$name.wire" >"$f.w"; bench_median "$f.w")"
}
printf '\nRTT accuracy, %s, %s probes to %s:7 every %s ms, lab %s, kernel %s\n' \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$COUNT" "$S" "$INTERVAL_MS" "$BENCH_LAB" "$(uname -r)"
printf 'error = reported RTT − wire RTT of the same probe (tcpdump on the client veth, ns timestamps), µs\n\n'
printf '%-10s %7s %9s %9s %9s %10s %10s\n' tool matched '|err| med' '|err| p90' '|err| max' 'err median' 'wire med'
summary tcpshake "$n_ts"
summary hping3 "$n_hp"
summary nping "$n_np"
C3=$COUNT COUNT=$((M * 3))
summary tcpshake-3 "$n_t3"
COUNT=$C3
nsum=$(grep -o 'Max rtt: .*' "$D/nping.out")
wsum=$(awk '$NF != "-" { s += $NF; if (min == "" || $NF < min) min = $NF; if ($NF > max) max = $NF } END { if (NR) printf "max %.1f µs, min %.1f µs, avg %.1f µs", max, min, s / NR }' "$D/nping.wire")
printf '\nnping summary: %s   wire: %s\n' "$nsum" "$wsum"
med_ts=$(bench_median "$D/tcpshake.err.us.abs")
printf '\ntarget: tcpshake median |error| %s µs (<= 10 µs) %s\n' "$med_ts" \
	"$(awk -v v="$med_ts" 'BEGIN { print (v != "-" && v <= 10) ? "met" : "MISSED" }')"
((n_ts * 10 >= COUNT * 9)) || { printf 'only %s of %s tcpshake probes matched the capture\n' "$n_ts" "$COUNT"; exit 1; }
