#!/usr/bin/env bash
# corpus-bench.sh times `tcpshake analyze` against tshark on the largest capture of the corpus
# (analyze/testdata/corpus), side by side in one run: the table of conversations (`tshark -q -z conv,tcp`) and the
# whole story of every packet with the analysis flags (`tshark -T fields ... tcp.analysis.flags` against
# `tcpshake analyze --json` for each conversation), and how many captures agree with tshark (TestCorpus).
#
# Usage: scripts/corpus-bench.sh   (needs tshark; RUNS=N repeats each timing, default 5, the median is reported)
# Other engineers' builds share the machine: compare the two tools' times only within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "RUNS must be 1-99" >&2; exit 2; }
command -v tshark >/dev/null || { echo "corpus-bench.sh: tshark is not installed" >&2; exit 2; }
dir=analyze/testdata/corpus
cap=$dir/$(ls -S "$dir" | grep -v -e '^oracle' -e '\.gz$' -e '\.zst$' -e '\.xz$' | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/tcpshake" .

# median prints the median of the numbers on stdin.
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# timed CMD... runs CMD RUNS times and prints the median wall time in milliseconds (process start included).
timed() {
	local r t0 t1
	for ((r = 0; r < RUNS; r++)); do
		t0=$(date +%s%N)
		"$@" >/dev/null 2>&1 || { echo "$* failed" >&2; exit 1; }
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000))
	done | median | awk '{printf "%.1f", $1 / 1000}'
}

packets=$("$tmp/tcpshake" analyze --json "$cap" | grep '"capture_summary"' | sed -E 's/.*"packets":([0-9]+).*/\1/')
convs=$("$tmp/tcpshake" analyze --json "$cap" | grep -c '"type":"connection"')
echo "largest corpus capture: $(basename "$cap"), $(stat -c %s "$cap") bytes, $packets packets, $convs TCP conversations"
ours=$(timed "$tmp/tcpshake" analyze "$cap")
theirs=$(timed tshark -n -q -r "$cap" -z conv,tcp)
printf '%-44s %8s ms\n' "tcpshake analyze (table)" "$ours" "tshark -n -q -z conv,tcp" "$theirs"
story() { for ((i = 1; i <= convs; i++)); do "$tmp/tcpshake" analyze --json --conn "$i" "$cap"; done; }
ours_s=$(timed bash -c "$(declare -f story); tmp=$tmp cap=$cap convs=$convs story")
theirs_s=$(timed tshark -n -r "$cap" -T fields -e frame.number -e tcp.stream -e tcp.analysis.flags)
printf '%-44s %8s ms\n' "tcpshake analyze --json --conn N (every N)" "$ours_s" "tshark -T fields tcp.analysis.*" "$theirs_s"
awk -v o="$ours" -v t="$theirs" -v os="$ours_s" -v ts="$theirs_s" 'BEGIN {
	printf "table: tshark takes %.1fx as long; every story against tshark'"'"'s per-packet analysis: %.1fx\n", t / o, ts / os }'
echo
echo "agreement with tshark (TestCorpus):"
go test ./analyze -run '^TestCorpus$' -count=1 -v 2>&1 | grep -E 'captures agree|^(ok|FAIL)'
