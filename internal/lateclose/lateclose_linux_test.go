package lateclose_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tcpshake/internal/lateclose"
	"tcpshake/lab/labtest"
)

// packetSockets counts the packet sockets of this network namespace.
func packetSockets(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/packet")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n") - 1
}

// TestHandoff: a packet socket handed off closes at once (a plain close
// waits for an RCU grace period, several milliseconds) and is released by
// the kernel shortly after, not leaked.
func TestHandoff(t *testing.T) {
	labtest.RequireRoot(t)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	base := packetSockets(t) - 1
	done, err := lateclose.Handoff(fd)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("Handoff: %v", err)
	}
	start := time.Now()
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	done()
	if d := time.Since(start); d > 2*time.Millisecond {
		t.Errorf("close after Handoff took %v: the grace period was waited for here", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for packetSockets(t) > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d packet sockets 5 s after the close, want %d: the handed-off socket was never released", packetSockets(t), base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
