package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"runtime"
	"testing"
	"time"

	"tcpshake/lab"
)

// skipReason says why lab tests cannot run without privileges.
const skipReason = "lab tests need root (CAP_NET_ADMIN, CAP_NET_RAW) to create network namespaces"

// readyTimeout bounds the wait for the in-process server's listeners.
const readyTimeout = 5 * time.Second

// RequireRoot skips t when the process is not root on Linux, or fails it when the environment variable CI is
// "true", where a skipped privileged test would hide a broken setup.
func RequireRoot(t testing.TB) {
	t.Helper()
	reason := ""
	switch {
	case runtime.GOOS != "linux":
		reason = skipReason + " on Linux"
	case os.Geteuid() != 0:
		reason = skipReason
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

// Name returns a fresh lab name: "t" and 8 random hex digits, so parallel tests and packages never collide.
func Name(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("labtest: random name: %v", err)
	}
	return "t" + hex.EncodeToString(b)
}

// Option changes the lab New builds.
type Option func(*config)

type config struct {
	peer       string
	lab        func(*lab.Lab)
	synCookies int // -1: the kernel's default
	sysctls    []sysctl
	loss       int
}

// Forger joins client and server through the forger namespace's bridge (lab.Lab.Forger), for Flood and Forge.
func Forger() Option {
	return func(c *config) { prev := c.lab; c.lab = func(l *lab.Lab) { prev(l); l.Forger = true } }
}

// HoldAfterEOF sets how long the hold service (port 9) stays in CLOSE-WAIT after the peer's FIN.
func HoldAfterEOF(d time.Duration) Option {
	return func(c *config) { prev := c.lab; c.lab = func(l *lab.Lab) { prev(l); l.HoldAfterEOF = d } }
}

// SynCookies sets net.ipv4.tcp_syncookies in the server namespace (2: every SYN-ACK carries a cookie).
func SynCookies(mode int) Option { return func(c *config) { c.synCookies = mode } }

// Sysctl sets net.ipv4.NAME in the Linux server's namespace (lab.Lab.SetTCPSysctl): tcp_timestamps, tcp_sack,
// tcp_window_scaling, tcp_ecn, tcp_syncookies.
func Sysctl(name string, value int) Option {
	return func(c *config) { c.sysctls = append(c.sysctls, sysctl{name, value}) }
}

type sysctl struct {
	name  string
	value int
}

// Peer chooses the TCP stack that serves the lab (lab.PeerLinux, the default, or lab.PeerLWIP). The lwip peer is
// built with the system's C compiler when missing (scripts/test.sh installs liblwip-dev and gcc) and runs as a
// separate process, stopped by the cleanup.
func Peer(name string) Option { return func(c *config) { c.peer = name } }

// Loss makes the server drop percent % of the TCP segments it receives (lab.Lab.SetLoss).
func Loss(percent int) Option { return func(c *config) { c.loss = percent } }

// NewPeer is New with the lab served by peer (see Peer).
func NewPeer(t testing.TB, peer string, opts ...Option) lab.Lab {
	t.Helper()
	return New(t, append(opts, Peer(peer))...)
}

// New creates a uniquely named lab, brings it up (changed by opts), serves it and waits until it answers: the Linux
// peer from a goroutine of the test process once every listener is open, the lwip peer (Peer) as its own process
// once it answers on both addresses. t.Cleanup stops the server and tears the lab down, also when the test fails.
func New(t testing.TB, opts ...Option) lab.Lab {
	t.Helper()
	RequireRoot(t)
	cfg := config{lab: func(*lab.Lab) {}, synCookies: -1}
	for _, o := range opts {
		o(&cfg)
	}
	l := lab.New(Name(t))
	l.Peer = cfg.peer
	cfg.lab(&l)
	if err := lab.ValidatePeer(l.Peer); err != nil {
		t.Fatalf("labtest: %v", err)
	}
	if l.Peer == lab.PeerLWIP && cfg.synCookies >= 0 {
		t.Fatalf("labtest: SynCookies is a Linux peer setting; the lwip peer has none")
	}
	var argv []string
	if l.Peer == lab.PeerLWIP {
		l.RunDir = t.TempDir()
		var err error
		if argv, err = l.DaemonCommand(t.Context(), ""); err != nil {
			t.Fatalf("labtest: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("labtest: %v", err)
		}
	})
	if err := l.Up(t.Context()); err != nil {
		t.Fatalf("labtest: %v", err)
	}
	if l.Peer == lab.PeerLWIP {
		if _, err := l.StartDaemon(argv); err != nil {
			t.Fatalf("labtest: %v", err)
		}
		// After the daemon's readiness check, which a lossy link would fail.
		if cfg.loss > 0 {
			if err := l.SetLoss(cfg.loss); err != nil {
				t.Fatalf("labtest: %v", err)
			}
		}
		return l
	}
	if cfg.synCookies >= 0 {
		if err := l.SetSynCookies(cfg.synCookies); err != nil {
			t.Fatalf("labtest: %v", err)
		}
	}
	for _, sc := range cfg.sysctls {
		if err := l.SetTCPSysctl(sc.name, sc.value); err != nil {
			t.Fatalf("labtest: %v", err)
		}
	}
	if cfg.loss > 0 {
		if err := l.SetLoss(cfg.loss); err != nil {
			t.Fatalf("labtest: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, func() { close(ready) }) }()
	// Registered after Down, so it runs before it: the server's sockets must be closed before the namespaces go.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("labtest: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		done <- nil // reported here; the cleanup only has to wait
		t.Fatalf("labtest: %v", err)
	case <-time.After(readyTimeout):
		t.Fatalf("labtest: server of lab %s not ready after %v", l.Name, readyTimeout)
	}
	return l
}

// EachPeer runs f as one subtest per peer of the lab (lab.Peers: "linux", then "lwip"), each with its own lab built
// by New from opts, so a test of a command holds for any TCP stack and not just the Linux kernel it was written
// beside. Peer-specific expectations branch on l.Peer (lab.PeerLinux or lab.PeerLWIP); what needs the Linux server's
// kernel (--observe-netns, sysctls, SYN cookies) belongs in a test of its own. With parallel true the subtests run
// in parallel with each other.
func EachPeer(t *testing.T, parallel bool, f func(t *testing.T, l lab.Lab), opts ...Option) {
	t.Helper()
	RequireRoot(t)
	for _, p := range lab.Peers() {
		t.Run(p, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			f(t, NewPeer(t, p, opts...))
		})
	}
}
