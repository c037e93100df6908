#!/usr/bin/env bash
# bench-session.sh: the session-engine benchmarks of issue 8, side by side in one run, in a private lab.
#
#   sudo scripts/bench-session.sh            # RUNS=10 FAST_RUNS=20 LOSS_RUNS=11 OBSERVE_RUNS=5 RUN_TIMEOUT=20
#   sudo scripts/bench-session.sh -n 5       # RUNS=5 (and the other counts scaled down with it)
#   KEEP=1 sudo scripts/bench-session.sh     # keep captures, outputs and the raw results in /tmp
#   TCPSHAKE=/path/to/tcpshake sudo scripts/bench-session.sh   # an existing binary instead of building one
#
# Cases (each alternates its variants round by round; medians of whole-process wall times unless said):
#   1. observing: the SYN-ACK→ACK gap on the wire (tcpdump in the client namespace, nanosecond kernel
#      timestamps) of `handshake 198.51.100.2:7 --send hi` with and without `--observe-netns SERVER`
#      (target ≤ 1.5×), and a 1 MB `--send-file` echo with and without observing (target ≤ 1.2×);
#   2. transfer: a 1 MB echo, `handshake --send-file` vs `socat -t 10 - TCP:198.51.100.2:7` (target ≤ 3×);
#   3. loss: 100 KB echoed through 5% and 20% random loss on the server's input (`lab loss`, nftables numgen),
#      tcpshake vs socat on the same link (targets ≤ 3× and ≤ 5×), and tcpshake's summary srtt against the
#      wire RTT of the same connection read off the capture (target within 2×); `probe -c 10` RTT beside it;
#   4. `handshake` + 6 bytes + close vs the scapy script scripts/bench_handshake_scapy.py (target ≤ 0.2×),
#      as scripts/bench-handshake.sh measures it.
#
# Every run is checked: tcpshake's --json summary must say outcome ok with as many bytes sent and received as
# the file holds, and the echoed bytes (its steps' data, placed by sequence number) must equal the file;
# socat's output must equal its input (cmp); scapy's script checks its echo itself. A wrong or timed-out run
# counts as infinitely slow and its target as missed (a reference tool's failure makes it undecided), so a fast
# wrong run cannot win. Once more than half a case's runs have failed its median is decided and the rest of
# its runs are skipped. Each run is bounded by RUN_TIMEOUT seconds.
#
# Exit status: 0 every target met, 1 some target missed or undecided, 2 the benchmark could not run.
# Every packet goes from the lab client namespace (198.51.100.1) to the lab server (198.51.100.2); the lab
# (named bsess<pid>) is removed on any exit.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
while getopts n:h opt; do
	case $opt in
	n) RUNS=$OPTARG FAST_RUNS=$((2 * OPTARG)) LOSS_RUNS=$((OPTARG + OPTARG / 2)) OBSERVE_RUNS=$(((OPTARG + 1) / 2)) ;;
	*) usage ;;
	esac
done
RUNS=${RUNS:-10}
FAST_RUNS=${FAST_RUNS:-20}
LOSS_RUNS=${LOSS_RUNS:-11}
OBSERVE_RUNS=${OBSERVE_RUNS:-5}
RUN_TIMEOUT=${RUN_TIMEOUT:-20}

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/bench-lab.sh
. "$HERE/lib/bench-lab.sh"

bench_need_tools tcpdump:tcpdump socat:socat nft:nftables timeout:coreutils /usr/bin/python3:python3
PY=
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import scapy' 2>/dev/null; then PY=$p; break; fi
done
if [[ -z $PY ]]; then
	bench_log "installing python3-scapy"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-scapy >/dev/null || true
	/usr/bin/python3 -c 'import scapy' 2>/dev/null || bench_die "no python3 with scapy (apt-get install -y python3-scapy)"
	PY=/usr/bin/python3
fi
HELPER=("$PY" "$HERE/bench_session.py")

bench_setup bsess
SERVER_NS=$BENCH_LAB-server
R=$BENCH_DIR
RESULTS=$R/results.tsv CASES=$R/cases.tsv CMPS=$R/cmps.tsv
: >"$RESULTS"
: >"$CASES"
: >"$CMPS"
head -c 1000000 /dev/urandom >"$R/1m"
head -c 100000 /dev/urandom >"$R/100k"
printf 'hi' >"$R/hi"
printf 'hello\n' >"$R/hello"
started=$(date +%s)

# case ID TOOL WHAT: declare a row of the table.
case_def() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$CASES"; }
# compare KIND A B LIMIT WHAT: declare a target (see bench_session.py report).
compare() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$CMPS"; }
# record CASE RUN VALUE STATUS NOTE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$RESULTS"; }

# failures CASE: how many runs of CASE failed so far.
failures() { awk -F'\t' -v c="$1" '$1 == c && $4 != "ok" && $4 != "skipped" {n++} END {print n + 0}' "$RESULTS"; }

# decided CASE N: true when more than half of CASE's N runs have failed, so its median is a failure whatever
# the rest do; the caller then records the run as skipped.
decided() { (($(failures "$1") * 2 > $2)); }

# timed_client OUT IN CMD...: runs CMD in the client namespace with stdin IN and stdout OUT, bounded by
# RUN_TIMEOUT; sets MS (wall time in ms) and RC.
timed_client() {
	local out=$1 in=$2 t0 t1
	shift 2
	t0=$(date +%s%N)
	RC=0
	timeout -k 5 "$RUN_TIMEOUT" ip netns exec "$BENCH_CLIENT" "$@" <"$in" >"$out" 2>"$out.err" || RC=$?
	t1=$(date +%s%N)
	MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e6}')
}

# run_tcpshake CASE RUN FILE EXTRA...: one `handshake --send-file FILE` (or --send when EXTRA has it), checked.
# Sets CHECK to the checker's line ("ok SPORT SRTT CONTENT" or "wrong ...").
run_tcpshake() {
	local case=$1 run=$2 file=$3 out
	shift 3
	out=$R/$case.$run.json
	timed_client "$out" /dev/null "$TCPSHAKE" handshake "$BENCH_SERVER:7" --time-wait 1ms --json "$@"
	if ((RC == 124 || RC == 137)); then
		CHECK="wrong timed out after ${RUN_TIMEOUT}s"
	else
		CHECK=$("${HELPER[@]}" check-json "$out" "$file") || true
		((RC == 0)) || [[ $CHECK == wrong* ]] || CHECK="wrong exit status $RC: $(tail -c 200 "$out.err")"
	fi
	if [[ $CHECK == ok* ]]; then
		record "$case" "$run" "$MS" ok "${CHECK#ok }"
	else
		record "$case" "$run" 0 wrong "${CHECK#wrong }"
	fi
}

# run_socat CASE RUN FILE: one socat echo of FILE, checked with cmp.
run_socat() {
	local case=$1 run=$2 file=$3 out
	out=$R/$case.$run.out
	timed_client "$out" "$file" socat -t 10 - "TCP:$BENCH_SERVER:7"
	if ((RC == 124 || RC == 137)); then
		record "$case" "$run" 0 wrong "timed out after ${RUN_TIMEOUT}s"
	elif ((RC != 0)); then
		record "$case" "$run" 0 wrong "exit status $RC: $(tail -c 200 "$out.err")"
	elif ! cmp -s "$file" "$out"; then
		record "$case" "$run" 0 wrong "echoed $(wc -c <"$out") bytes, not the $(wc -c <"$file") sent (or different bytes)"
	else
		record "$case" "$run" "$MS" ok
	fi
}

# skip_or CASE N RUN CMD...: records RUN of CASE as skipped when the case is decided, else runs CMD.
skip_or() {
	local case=$1 n=$2 run=$3
	shift 3
	if decided "$case" "$n"; then
		record "$case" "$run" 0 skipped "more than half of the runs had failed"
	else
		"$@"
	fi
}

# gaps_from CAPTURE: turns the sports recorded for the gap-* cases into SYN-ACK→ACK gaps.
gaps_from() {
	local cap=$1 case run ms status note sport g
	while IFS=$'\t' read -r case run ms status note; do
		[[ $case == hi-* ]] || continue
		local gcase=gap-${case#hi-}
		if [[ $status != ok ]]; then
			record "$gcase" "$run" 0 "$status" "the run itself: $note"
			continue
		fi
		sport=${note%% *}
		if g=$("${HELPER[@]}" gap "$cap" "$sport"); then
			record "$gcase" "$run" "$g" ok
		else
			record "$gcase" "$run" 0 unmeasured "${g#unmeasured }"
		fi
	done < <(cat "$RESULTS")
}

bench_log "lab $BENCH_LAB up; client $BENCH_CLIENT, server $SERVER_NS; tcpshake $TCPSHAKE"
bench_log "warm-up (ARP, page cache)"
run_tcpshake warm 0 "$R/hi" --send hi
run_socat warm 1 "$R/hi"
ip netns exec "$BENCH_CLIENT" "$PY" "$HERE/bench_handshake_scapy.py" --dst "$BENCH_SERVER" --dport 7 >/dev/null ||
	bench_die "the scapy script failed in the warm-up"
grep -q $'\tok\t' "$RESULTS" || bench_die "the warm-up failed: $(cat "$RESULTS")"
: >"$RESULTS"

# 1a. SYN-ACK→ACK gap with and without observing.
bench_log "1. observing: $FAST_RUNS rounds of --send hi, $OBSERVE_RUNS of a 1 MB --send-file"
case_def hi-plain tcpshake "\`handshake :7 --send hi\` (wall ms)"
case_def hi-observe tcpshake "\`handshake :7 --send hi --observe-netns SERVER\` (wall ms)"
case_def gap-plain tcpshake "SYN-ACK→ACK gap on the wire, not observing (ms)"
case_def gap-observe tcpshake "SYN-ACK→ACK gap on the wire, \`--observe-netns\` (ms)"
compare ratio gap-observe gap-plain 1.5 "SYN-ACK→ACK gap, observing ÷ not"
bench_capture_start "$R/observe.pcap"
for ((i = 1; i <= FAST_RUNS; i++)); do
	run_tcpshake hi-plain "$i" "$R/hi" --send hi
	run_tcpshake hi-observe "$i" "$R/hi" --send hi --observe-netns "$SERVER_NS"
done
bench_capture_stop
gaps_from "$R/observe.pcap"

# 1b. 1 MB with and without observing.
bench_log "   1 MB --send-file with and without --observe-netns: $OBSERVE_RUNS rounds"
case_def 1m-plain tcpshake "\`handshake :7 --send-file 1MB\` (wall ms)"
case_def 1m-observe tcpshake "\`handshake :7 --send-file 1MB --observe-netns SERVER\` (wall ms)"
compare ratio 1m-observe 1m-plain 1.2 "1 MB echo, observing ÷ not"
for ((i = 1; i <= OBSERVE_RUNS; i++)); do
	run_tcpshake 1m-plain "$i" "$R/1m" --send-file "$R/1m"
	skip_or 1m-observe "$OBSERVE_RUNS" "$i" run_tcpshake 1m-observe "$i" "$R/1m" --send-file "$R/1m" --observe-netns "$SERVER_NS"
done

# 2. 1 MB echo: tcpshake vs socat.
bench_log "2. transfer: $RUNS rounds of a 1 MB echo"
case_def 1m-tcpshake tcpshake "\`handshake :7 --send-file 1MB\` (wall ms)"
case_def 1m-socat socat "\`socat -t 10 - TCP::7 < 1MB\` (wall ms)"
compare ratio 1m-tcpshake 1m-socat 3 "1 MB echo, tcpshake ÷ socat"
for ((i = 1; i <= RUNS; i++)); do
	run_tcpshake 1m-tcpshake "$i" "$R/1m" --send-file "$R/1m"
	run_socat 1m-socat "$i" "$R/1m"
done

# 3. 100 KB through 5% and 20% loss.
for loss in 5 20; do
	bench_log "3. loss $loss%: $LOSS_RUNS rounds of a 100 KB echo"
	"$TCPSHAKE" lab loss "$loss" --name "$BENCH_LAB" >/dev/null || bench_die "lab loss $loss failed"
	limit=3
	((loss == 20)) && limit=5
	case_def "loss$loss-tcpshake" tcpshake "\`handshake :7 --send-file 100KB\`, $loss% loss (wall ms)"
	case_def "loss$loss-socat" socat "\`socat -t 10 - TCP::7 < 100KB\`, $loss% loss (wall ms)"
	compare ratio "loss$loss-tcpshake" "loss$loss-socat" "$limit" "100 KB through $loss% loss, tcpshake ÷ socat"
	((loss == 5)) && bench_capture_start "$R/loss5.pcap"
	for ((i = 1; i <= LOSS_RUNS; i++)); do
		skip_or "loss$loss-tcpshake" "$LOSS_RUNS" "$i" run_tcpshake "loss$loss-tcpshake" "$i" "$R/100k" --send-file "$R/100k"
		run_socat "loss$loss-socat" "$i" "$R/100k"
	done
	if ((loss == 5)); then
		# The idle path's RTT under the same loss, as `tcpshake probe` sees it.
		ip netns exec "$BENCH_CLIENT" timeout -k 5 "$RUN_TIMEOUT" "$TCPSHAKE" probe "$BENCH_SERVER:7" -c 10 -i 20ms --json \
			>"$R/probe5.json" 2>"$R/probe5.err" || true
		bench_capture_stop
	fi
done
"$TCPSHAKE" lab loss 0 --name "$BENCH_LAB" >/dev/null || bench_die "lab loss 0 failed"

# srtt against the wire RTT of the same connection.
case_def srtt5 tcpshake "summary srtt, 5% loss (ms)"
case_def wire5 capture "median wire RTT of the same connections' data, Karn-valid samples (ms)"
case_def srtt5-ratio tcpshake "srtt ÷ wire RTT, per connection"
compare within srtt5-ratio - 2 "srtt under 5% loss ÷ wire RTT"
while IFS=$'\t' read -r case run ms status note; do
	[[ $case == loss5-tcpshake && $status != skipped ]] || continue
	if [[ $status != ok ]]; then
		record srtt5-ratio "$run" 0 unmeasured "the run itself failed: $note"
		continue
	fi
	read -r sport srtt _ <<<"$note"
	if w=$("${HELPER[@]}" wire-rtt "$R/loss5.pcap" "$sport"); then
		record wire5 "$run" "${w%% *}" ok "${w#* } samples"
		if [[ $srtt == - ]]; then
			record srtt5 "$run" 0 wrong "the summary has no srtt_ms"
			record srtt5-ratio "$run" 0 wrong "the summary has no srtt_ms"
		else
			record srtt5 "$run" "$srtt" ok
			record srtt5-ratio "$run" "$(awk -v s="$srtt" -v w="${w%% *}" 'BEGIN {printf "%.4f", s / w}')" ok
		fi
	else
		record srtt5-ratio "$run" 0 unmeasured "${w#unmeasured }"
	fi
done < <(cat "$RESULTS")
case_def probe5 tcpshake "\`probe :7 -c 10 -i 20ms\` RTT of each answer, 5% loss (ms)"
"$PY" - "$R/probe5.json" >>"$RESULTS" <<'EOF' || true
import json, sys
n = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("type") == "step" and "rtt_ms" in o and not o.get("icmp"):  # not the ICMP echo seed
        n += 1
        print(f"probe5\t{n}\t{o['rtt_ms']}\tok\t")
if n == 0:
    print("probe5\t1\t0\tunmeasured\tno answer carried an rtt_ms")
EOF

# 4. handshake + 6 bytes + close vs scapy.
bench_log "4. handshake + 6 bytes + close: $FAST_RUNS rounds against scapy"
case_def hello-tcpshake tcpshake "\`handshake :7 --send 'hello\\n'\` (wall ms)"
case_def hello-scapy scapy "scripts/bench_handshake_scapy.py (wall ms)"
compare ratio hello-tcpshake hello-scapy 0.2 "handshake + 6 bytes + close, tcpshake ÷ scapy"
for ((i = 1; i <= FAST_RUNS; i++)); do
	run_tcpshake hello-tcpshake "$i" "$R/hello" --send 'hello\n'
	timed_client "$R/scapy.$i.out" /dev/null "$PY" "$HERE/bench_handshake_scapy.py" --dst "$BENCH_SERVER" --dport 7
	if ((RC == 0)); then
		record hello-scapy "$i" "$MS" ok
	else
		record hello-scapy "$i" 0 wrong "exit status $RC: $(tail -c 200 "$R/scapy.$i.out.err")"
	fi
done

printf '# %s, lab %s, %d s; RUNS=%d FAST_RUNS=%d LOSS_RUNS=%d OBSERVE_RUNS=%d RUN_TIMEOUT=%d\n' \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$BENCH_LAB" "$(($(date +%s) - started))" \
	"$RUNS" "$FAST_RUNS" "$LOSS_RUNS" "$OBSERVE_RUNS" "$RUN_TIMEOUT"
rc=0
"${HELPER[@]}" report "$RESULTS" "$CASES" "$CMPS" || rc=1
if grep -q $'\t\(wrong\|unmeasured\)\t' "$RESULTS"; then
	printf '\nfailed runs (case, run, status, reason):\n'
	awk -F'\t' '$4 == "wrong" || $4 == "unmeasured" {printf "  %s #%s %s: %s\n", $1, $2, $4, $5}' "$RESULTS" | head -40
fi
if grep -q 'unchecked' "$RESULTS"; then
	printf '\nruns whose echoed content could not be compared byte by byte (their sizes were checked):\n'
	awk -F'\t' '$5 ~ /unchecked/ {printf "  %s #%s: %s\n", $1, $2, $5}' "$RESULTS" | head -20
fi
exit "$rc"
