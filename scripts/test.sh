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

echo "== go test (unit, seam and lab tests)"
go test -count=1 -timeout 20m ./...

echo "== fuzzing, ${FUZZTIME:=10s} per target"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "-- $pkg $target"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" >/dev/null
	done
done
echo "== all tests passed"
