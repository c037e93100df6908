# shellcheck shell=bash
# bench-lab.sh holds what scripts/bench-probe.sh and scripts/rtt-accuracy.sh share: root and tool checks,
# building tcpshake, a private lab with guaranteed teardown, and small statistics helpers.
#
# Source it, then call bench_setup NAME_PREFIX. Every packet the callers send goes to the lab server
# (198.51.100.2) from inside the lab's client namespace; the namespaces have no route anywhere else.

BENCH_SERVER=198.51.100.2

bench_die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 2
}

bench_log() {
	printf '# %s\n' "$*" >&2
}

# bench_need_tools installs the Debian packages behind the given commands when any is missing,
# running apt-get update once.
# Usage: bench_need_tools cmd:package ...
bench_need_tools() {
	local pair cmd pkg missing=()
	for pair in "$@"; do
		cmd=${pair%%:*} pkg=${pair#*:}
		if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x $cmd ]]; then
			missing+=("$pkg")
		fi
	done
	((${#missing[@]} == 0)) && return 0
	bench_log "installing ${missing[*]}"
	apt-get update -qq >/dev/null || bench_die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
		bench_die "apt-get install ${missing[*]} failed"
}

# bench_median prints the median of the numbers in file $1 (one a line), or "-" when it is empty.
bench_median() {
	sort -g "$1" | awk '{v[NR]=$1} END {
		if (NR == 0) { print "-"; exit }
		if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}

# bench_quantile prints the q-quantile (0..1, nearest rank) of the numbers in file $2.
bench_quantile() {
	sort -g "$2" | awk -v q="$1" '{v[NR]=$1} END {
		if (NR == 0) { print "-"; exit }
		r = int(q * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; print v[r] }'
}

# bench_setup checks for root, builds tcpshake unless $TCPSHAKE names a binary, creates a work
# directory and a lab named PREFIX<pid>, and arranges for all of it to be removed on any exit.
# It sets BENCH_DIR, BENCH_LAB, BENCH_CLIENT (the client namespace) and TCPSHAKE.
bench_setup() {
	local prefix=$1 repo
	((EUID == 0)) || bench_die "needs root (raw sockets, network namespaces)"
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	BENCH_DIR=$(mktemp -d "/tmp/${prefix}.XXXXXX")
	BENCH_PIDS=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	if [[ -z ${TCPSHAKE:-} ]]; then
		TCPSHAKE=$BENCH_DIR/tcpshake
		bench_log "building tcpshake from $repo"
		(cd "$repo" && CGO_ENABLED=0 go build -o "$TCPSHAKE" .) || bench_die "go build failed"
	fi
	[[ -x $TCPSHAKE ]] || bench_die "TCPSHAKE=$TCPSHAKE is not an executable"
	# Named only now, so that a failed build does not try to take down a lab that was never made.
	BENCH_LAB=$prefix$$
	BENCH_CLIENT=$BENCH_LAB-client
	"$TCPSHAKE" lab up --name "$BENCH_LAB" >"$BENCH_DIR/lab-up.log" 2>&1 ||
		{ cat "$BENCH_DIR/lab-up.log" >&2; bench_die "lab up failed"; }
	bench_check_isolated
}

# bench_check_isolated refuses to go on unless the client namespace routes only to the lab, so that
# nothing a tool tries (nmap's reverse DNS, say) can leave it.
bench_check_isolated() {
	local routes
	routes=$(ip netns exec "$BENCH_CLIENT" ip -4 route show; ip netns exec "$BENCH_CLIENT" ip -6 route show)
	if grep -qvE '^(198\.51\.100\.0/24|2001:db8::/64|fe80::/64|multicast|local) ' <<<"$routes"; then
		printf '%s\n' "$routes" >&2
		bench_die "the client namespace routes outside the lab; refusing to run"
	fi
}

bench_cleanup() {
	local rc=$? pid
	for pid in "${BENCH_PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	if [[ -n ${BENCH_LAB:-} ]]; then
		"$TCPSHAKE" lab down --name "$BENCH_LAB" >/dev/null 2>&1 ||
			printf '%s: lab down --name %s failed; remove it by hand\n' "${0##*/}" "$BENCH_LAB" >&2
	fi
	[[ -n ${BENCH_DIR:-} && ${KEEP:-0} != 1 ]] && rm -rf "$BENCH_DIR"
	[[ ${KEEP:-0} == 1 ]] && printf '# raw files kept in %s\n' "$BENCH_DIR" >&2
	exit "$rc"
}

# bench_in runs a command as the lab client.
bench_in() {
	ip netns exec "$BENCH_CLIENT" "$@"
}

# bench_capture_start starts tcpdump on the client's lab link, writing nanosecond timestamps to $1,
# and waits (at most 5 s) until it is listening. It sets BENCH_TCPDUMP to its pid.
bench_capture_start() {
	local file=$1 i
	# Not through bench_in: $! must be tcpdump itself (ip netns exec execs it), or a signal sent to it
	# would reach only a subshell. -Z root: the work directory is private to root.
	ip netns exec "$BENCH_CLIENT" tcpdump -i veth0 -n -U --immediate-mode -s 128 -Z root --time-stamp-precision nano \
		-w "$file" "host $BENCH_SERVER" 2>"$file.log" &
	BENCH_TCPDUMP=$!
	BENCH_PIDS+=("$BENCH_TCPDUMP")
	for ((i = 0; i < 100; i++)); do
		grep -q 'listening on' "$file.log" 2>/dev/null && return 0
		sleep 0.05
	done
	bench_die "tcpdump did not start: $(cat "$file.log")"
}

# bench_capture_stop stops the tcpdump started last, letting it flush its file.
bench_capture_stop() {
	sleep 0.2
	kill -TERM "$BENCH_TCPDUMP" 2>/dev/null
	wait "$BENCH_TCPDUMP" 2>/dev/null
	BENCH_PIDS=("${BENCH_PIDS[@]/$BENCH_TCPDUMP/}")
}
