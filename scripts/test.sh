#!/usr/bin/env bash
# tcpshake's whole test suite: vet, builds (static, cross-OS), unit and seam tests, lab tests against the real
# kernel in network namespaces (needs root: CAP_NET_ADMIN, CAP_NET_RAW), and a short run of every fuzz target.
# It installs the Debian packages the tests use when they are missing. Under CI=true, lab tests never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "scripts/test.sh: run as root (the lab tests create network namespaces and raw sockets): sudo scripts/test.sh" >&2
	exit 2
fi

# sudo resets PATH: find the Go toolchain where the official install puts it.
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

need=()
command -v tshark >/dev/null || need+=(tshark)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v ss >/dev/null || need+=(iproute2)
command -v setpriv >/dev/null || need+=(util-linux)
# Real clients for tcpshake listen's lab tests.
command -v curl >/dev/null || need+=(curl)
command -v socat >/dev/null || need+=(socat)
# The lab's second peer (lab up --peer lwip) is built at lab-up time with cc against Debian's lwIP.
command -v cc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -e /usr/include/lwip/lwip/tcp.h ] || need+=(liblwip-dev)
# event's TestSVGInBrowser renders an --svg picture in headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
# app's TestReadmeRuns runs the README's install line (setcap) and captures with tcpdump (above).
command -v setcap >/dev/null || need+=(libcap2-bin)
if [ ${#need[@]} -gt 0 ]; then
	echo "== installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== go vet"
go vet ./...
echo "== builds: CGO_ENABLED=0 linux, and darwin (the non-Linux stubs compile)"
CGO_ENABLED=0 go build -o /dev/null .
GOOS=darwin go build ./...

echo "== go test -race (unit, seam and lab tests)"
go test -race -count=1 -timeout 25m ./...

# fuzz runs one target; a failure that found an input (written under testdata/fuzz) fails the suite.
# The fuzzing engine itself sometimes loses a worker on a loaded 2-core machine ("fuzzing process hung or
# terminated unexpectedly") without finding anything: that run is repeated once, and its output shown.
fuzz() {
	local out
	for attempt in 1 2; do
		if out=$(go test -run='^$' -fuzz="^$2\$" -fuzztime="$FUZZTIME" -parallel=1 "$1" 2>&1); then
			return 0
		fi
		echo "$out" | tail -20
		if echo "$out" | grep -q 'Failing input written to'; then
			return 1
		fi
		echo "(no failing input was found: the fuzzing engine failed; trying once more)"
	done
	return 1
}

echo "== fuzzing, ${FUZZTIME:=10s} per target"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "-- $pkg $target"
		fuzz "$pkg" "$target"
	done
done
echo "== all tests passed"
