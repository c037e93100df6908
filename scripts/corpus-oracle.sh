#!/usr/bin/env bash
# corpus-oracle.sh writes analyze/testdata/corpus/oracle.tsv: tshark's view of every capture in the corpus
# (analyze/testdata/corpus), which TestCorpus compares with `tcpshake analyze` without needing tshark itself.
#
# Usage: scripts/corpus-oracle.sh   (needs tshark; run it after adding or changing a capture, and commit the result)
# ORACLE_OUT=FILE writes elsewhere (TestCorpusLiveTshark compares a fresh oracle with the committed one).
#
# One line per TCP frame (TCP inside ICMP errors excluded, as `-z conv,tcp` excludes them):
#   F <file> <frame> <tcp.stream> <src> <dst> <frame.len> <analysis flags, comma-separated, or ->
# with the innermost IP addresses (what tshark keys tcp.stream by inside a tunnel) and the tcp.analysis.* fields
# that are present, named with dashes (retransmission, fast-retransmission, spurious-retransmission,
# out-of-order, keep-alive, keep-alive-ack, duplicate-ack, window-update, zero-window, zero-window-probe,
# zero-window-probe-ack, lost-segment, ack-lost-segment); and one line per file with the row count of tshark's
# own conversation table:
#   C <file> <rows of tshark -q -z conv,tcp>
set -euo pipefail
cd "$(dirname "$0")/.."
dir=analyze/testdata/corpus
out=${ORACLE_OUT:-$dir/oracle.tsv}
command -v tshark >/dev/null || { echo "corpus-oracle.sh: tshark is not installed (apt-get install tshark)" >&2; exit 2; }

flags=(retransmission fast_retransmission spurious_retransmission out_of_order keep_alive keep_alive_ack
	duplicate_ack window_update zero_window zero_window_probe zero_window_probe_ack lost_segment ack_lost_segment)
fields=(-e frame.number -e tcp.stream -e frame.protocols -e ip.src -e ip.dst -e ipv6.src -e ipv6.dst
	-e tcp.srcport -e tcp.dstport -e frame.len)
for f in "${flags[@]}"; do fields+=(-e "tcp.analysis.$f"); done

tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.cap"' EXIT
{
	printf '# %s\n' "$(tshark --version 2>/dev/null | head -1)"
	for path in "$dir"/*; do
		name=$(basename "$path")
		case $name in oracle.tsv | README.md) continue ;; esac
		# This tshark may not read zstd or xz itself: it gets them uncompressed.
		read=$path
		case $name in
		*.zst) zstd -q -d -c "$path" >"$tmp.cap" && read=$tmp.cap ;;
		*.xz) xz -d -c "$path" >"$tmp.cap" && read=$tmp.cap ;;
		esac
		# The addresses are those of the IP header right before the (last) TCP header: a tunnel's inner one, and
		# not an IP packet carried inside TCP (OpenFlow, say). frame.protocols says which occurrence that is.
		# A TCP header shorter than 20 bytes never reaches tshark's conversation tap (packet-tcp.c returns
		# early): such frames are left out, as -z conv,tcp leaves them out.
		tshark -n -r "$read" -Y 'tcp and not icmp and not icmpv6 and tcp.hdr_len >= 20' -T fields -E separator=/t -E occurrence=a \
			"${fields[@]}" 2>/dev/null |
			awk -F'\t' -v file="$name" -v names="${flags[*]}" '
			BEGIN { n = split(names, flag, " ") }
			function pick(list, k,   parts, m) { m = split(list, parts, ","); return parts[k > m ? m : k] }
			{
				np = split($3, proto, ":"); last = 0
				for (i = 1; i <= np; i++) if (proto[i] == "tcp") last = i
				v = ""; n4 = 0; n6 = 0
				for (i = 1; i < last; i++) {
					if (proto[i] == "ip") { v = "ip"; n4++ }
					if (proto[i] == "ipv6") { v = "ipv6"; n6++ }
				}
				sp = pick($8, 99); dp = pick($9, 99)
				if (v == "ipv6") { src = "[" pick($6, n6) "]:" sp; dst = "[" pick($7, n6) "]:" dp }
				else { src = pick($4, n4) ":" sp; dst = pick($5, n4) ":" dp }
				a = ""
				for (i = 1; i <= n; i++) if ($(10 + i) != "") { w = flag[i]; gsub("_", "-", w); a = a (a == "" ? "" : ",") w }
				if (a == "") a = "-"
				print "F\t" file "\t" $1 "\t" pick($2, 99) "\t" src "\t" dst "\t" $10 "\t" a
			}'
		rows=$(tshark -n -q -r "$read" -z conv,tcp 2>/dev/null | grep -c '<->' || true)
		printf 'C\t%s\t%s\n' "$name" "$rows"
	done
} >"$tmp"
mv "$tmp" "$out"
rm -f "$tmp.cap"
trap - EXIT
echo "wrote $out: $(grep -c '^C' "$out") captures, $(grep -c '^F' "$out") TCP frames"
