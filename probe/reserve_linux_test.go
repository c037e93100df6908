package probe_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"tcpshake/probe"
)

// TestReservePort checks that a reserved port is held (nobody else may bind
// it) until released, and that a port a live connection uses is refused
// with a message that says so. Loopback only; no privileges needed.
func TestReservePort(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	port, release, err := probe.ReservePort(lo, 0)
	if err != nil {
		t.Fatalf("ReservePort(0): %v", err)
	}
	if port == 0 {
		t.Fatal("ReservePort(0) gave port 0")
	}
	if _, _, err := probe.ReservePort(lo, port); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("reserving the reserved port %d again: %v, want EADDRINUSE", port, err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	_, again, err := probe.ReservePort(lo, port)
	if err != nil {
		t.Fatalf("port %d after release: %v", port, err)
	}
	again()

	// A live connection's local port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	live := netip.MustParseAddrPort(c.LocalAddr().String())
	_, _, err = probe.ReservePort(lo, live.Port())
	if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "in use by another socket of this host") {
		t.Errorf("reserving the port of a live connection %v: %v, want EADDRINUSE named as in use", live, err)
	}
}
