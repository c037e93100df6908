package lab_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// TestLWIPPeer brings a lab up with the lwip peer and checks, with the client namespace's kernel as the client,
// that lwIP serves every port the way the Linux peer does, that the server namespace's kernel holds no lab
// address and no socket, and that Down leaves neither process nor namespace.
func TestLWIPPeer(t *testing.T) {
	t.Parallel()
	const hold = 500 * time.Millisecond
	l := labtest.NewPeer(t, lab.PeerLWIP, labtest.HoldAfterEOF(hold))

	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Peer != lab.PeerLWIP || !st.Ready() || st.DaemonPID == 0 {
		t.Fatalf("Status of an lwip lab: peer %q, ready %v, pid %d:\n%s", st.Peer, st.Ready(), st.DaemonPID, st)
	}
	if !strings.Contains(st.String(), "peer:       lwip") {
		t.Errorf("Status text does not name the peer:\n%s", st)
	}
	out, err := exec.Command("ip", "-n", l.ServerNS, "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in %s: %v\n%s", l.ServerNS, err, out)
	}
	for _, a := range []string{"198.51.100.", "2001:db8:"} {
		if strings.Contains(string(out), a) {
			t.Errorf("the server namespace's kernel holds a lab address (%s...):\n%s", a, out)
		}
	}

	for _, f := range families(l) {
		t.Run(f.name, func(t *testing.T) {
			c := mustDial(t, l, f.server, lab.PortEcho)
			// While lwIP holds this connection, the server's kernel has no TCP socket at all.
			socks, err := lab.Sockets(l.ServerNS)
			if err != nil {
				t.Fatal(err)
			}
			if len(socks) != 0 {
				t.Errorf("the server namespace's kernel has TCP sockets: %v", socks)
			}
			checkEcho(t, c)
			checkHTTP(t, mustDial(t, l, f.server, lab.PortHTTP))

			half := mustDial(t, l, f.server, lab.PortHalf)
			got, err := io.ReadAll(half) // the peer's FIN ends it: it half-closes first
			if err != nil || string(got) != lab.HalfBanner {
				t.Errorf("half: read %q, %v; want %q then EOF", got, err, lab.HalfBanner)
			}

			hc := mustDial(t, l, f.server, lab.PortHold)
			start := time.Now()
			if err := hc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(hc); err != nil {
				t.Fatalf("hold: %v", err)
			}
			if took := time.Since(start); took < hold-50*time.Millisecond || took > hold+time.Second {
				t.Errorf("hold closed %v after our FIN, want about %v", took, hold)
			}

			if _, err := dial(t, l, f.server, lab.PortClosed, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("closed port %d: %v, want connection refused (lwIP's RST)", lab.PortClosed, err)
			}
			if _, err := dial(t, l, f.server, lab.PortDropped, 300*time.Millisecond); !isTimeout(err) {
				t.Errorf("dropped port %d: %v, want no answer (a timeout)", lab.PortDropped, err)
			}
			v4only, err := dial(t, l, f.server, lab.PortV4Only, 2*time.Second)
			if f.server.Is4() {
				if err != nil {
					t.Fatalf("v4only over IPv4: %v", err)
				}
				checkEcho(t, v4only)
			} else if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("v4only over IPv6: %v, want connection refused", err)
			}
		})
	}

	pid := st.DaemonPID
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{l.ClientNS, l.ServerNS} {
		if ok, err := lab.NSExists(ns); err != nil || ok {
			t.Errorf("namespace %s after Down: exists=%v err=%v", ns, ok, err)
		}
	}
	// The test process is the peer's parent and reaps it: once reaped, the pid is gone.
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the lwip peer (pid %d) is still there after Down: %v", pid, err)
	}
}

// isTimeout reports whether a dial ended because nothing answered in time: the context's deadline or the
// socket's, whichever the dialer hit first.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// TestPeerSwitchRefused checks that a lab set up for one peer is not silently brought up as the other.
func TestPeerSwitchRefused(t *testing.T) {
	t.Parallel()
	l := labtest.NewPeer(t, lab.PeerLWIP)
	other := l
	other.Peer = lab.PeerLinux
	err := other.Up(t.Context())
	if err == nil || !strings.Contains(err.Error(), "take it down first") {
		t.Errorf("Up as linux of an lwip lab: %v, want a refusal", err)
	}
	if err := l.SetSynCookies(2); err == nil {
		t.Errorf("SetSynCookies on an lwip lab: no error")
	}
}
