//go:build linux

package probe_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
	"tcpshake/probe"
)

// TestLabSessionLWIP plays whole connections with the session engine against the lab's second stack, lwIP
// (lab.PeerLWIP), and checks what must hold for any TCP stack: the handshake completes, what the service sends is
// received exactly, every close mode ends the connection, and a closed or dropped port is said to be so. The
// server namespace's kernel holds no socket with this peer, so nothing about the peer's state is asserted.
func TestLabSessionLWIP(t *testing.T) {
	l := labtest.NewPeer(t, lab.PeerLWIP, labtest.HoldAfterEOF(300*time.Millisecond))
	big := strings.Repeat("0123456789abcdef", 8192) // 128 KiB: more than lwIP's 64 KiB window
	tests := []struct {
		name     string
		port     uint16
		send     string
		close    probe.CloseMode
		wantData func(got string) bool
	}{
		{"echo, active close", lab.PortEcho, "hello\n", probe.CloseFIN, func(got string) bool { return got == "hello\n" }},
		{"echo 128 KiB, we half-close", lab.PortEcho, big, probe.CloseHalf, func(got string) bool { return got == big }},
		{"hold, we half-close", lab.PortHold, "x", probe.CloseHalf, func(got string) bool { return got == "" }},
		{"http, passive close", lab.PortHTTP, "GET / HTTP/1.0\r\n\r\n", probe.CloseWait,
			func(got string) bool {
				return strings.HasPrefix(got, "HTTP/1.0 200 OK\r\n") && strings.HasSuffix(got, "\r\n\r\nhello from the tcpshake lab\n")
			}},
		{"half, the server half-closes first", lab.PortHalf, "", probe.CloseWait,
			func(got string) bool { return got == "tcpshake lab: half-close demo\r\n" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := labSession(t, l, tt.port, nil)
			if err := handshakeScript(tt.send, tt.close)(t.Context(), s); err != nil {
				s.Abort(err)
				t.Fatalf("session: %v", err)
			}
			s.End()
			if got := string(s.Received()); !tt.wantData(got) {
				if len(got) > 200 {
					got = fmt.Sprintf("%d bytes", len(got))
				}
				t.Errorf("received %s", got)
			}
		})
	}
	// The closed and dropped ports, and loss: TestLabSessionRefused and TestLabSessionLoss run against both peers.
}
