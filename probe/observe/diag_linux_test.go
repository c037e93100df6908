package observe_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tcpshake/probe/observe"
	"tcpshake/probe/tcpstate"
)

// wantState polls Get until the socket reaches want (or fails after a second).
func wantState(t *testing.T, d *observe.Diag, local, remote netip.AddrPort, exists bool, want tcpstate.State) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		r, err := d.Get(local, remote)
		if err != nil {
			t.Fatalf("Get(%v, %v): %v", local, remote, err)
		}
		if r.Exists == exists && (!exists || r.State == want) {
			if r.At.IsZero() || time.Since(r.At) > time.Second {
				t.Errorf("Get(%v, %v): At = %v, want now", local, remote, r.At)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%v, %v) = %v (exists %v), want %v (exists %v)", local, remote, r, r.Exists, want, exists)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGet(t *testing.T) {
	n := newNS(t)
	d := openDiag(t, n)
	for _, tc := range []struct {
		name, network, listen string
		v6only                int
		to                    netip.Addr
	}{
		{"ipv4", "tcp4", v4A.String() + ":0", -1, v4A},
		{"ipv6", "tcp6", "[" + v6A.String() + "]:0", -1, v6A},
		{"ipv4 via dual-stack listener", "tcp6", "[::]:0", 0, v4A},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := n.listen(t, tc.network, tc.listen, tc.v6only)
			port := addrPort(ln.Addr()).Port()
			cli, srv := n.dial(t, ln, netip.AddrPortFrom(tc.to, port))
			sl, sr := addrPort(srv.LocalAddr()), addrPort(srv.RemoteAddr())
			wantState(t, d, sl, sr, true, tcpstate.Established)
			wantState(t, d, sr, sl, true, tcpstate.Established)
			// The same port with another remote port: no socket, although the
			// kernel's own lookup would fall back to the listener.
			wantState(t, d, sl, netip.AddrPortFrom(sr.Addr(), sr.Port()^1), false, 0)
			// The client closes: it waits in FIN-WAIT-2, the server in CLOSE-WAIT.
			cli.Close()
			wantState(t, d, sr, sl, true, tcpstate.FinWait2)
			wantState(t, d, sl, sr, true, tcpstate.CloseWait)
			// The server closes too: the client ends in TIME-WAIT (a timewait
			// socket), the server's socket is gone.
			srv.Close()
			wantState(t, d, sr, sl, true, tcpstate.TimeWait)
			wantState(t, d, sl, sr, false, 0)
			if s, err := d.State(sl, sr); err != nil || s != observe.None {
				t.Errorf("State(%v, %v) = %q, %v; want %q", sl, sr, s, err, observe.None)
			}
		})
	}
}

func TestGetMixedFamilies(t *testing.T) {
	n := newNS(t)
	d := openDiag(t, n)
	r, err := d.Get(netip.AddrPortFrom(v4A, 1), netip.AddrPortFrom(v6A, 2))
	if err == nil || r.Err == nil {
		t.Errorf("Get with mixed families = %v, %v; want an error", r, err)
	}
}

// TestListening checks Listening against the table below and against the
// kernel itself: a connection attempt from inside the namespace.
func TestListening(t *testing.T) {
	n := newNS(t)
	d := openDiag(t, n)
	type probe struct {
		to   netip.Addr
		want bool
	}
	for _, tc := range []struct {
		name, network, listen string
		v6only                int
		probes                []probe
	}{
		{"0.0.0.0", "tcp4", "0.0.0.0:0", -1, []probe{{v4A, true}, {v4B, true}, {v6A, false}}},
		{"[::] v6only", "tcp6", "[::]:0", 1, []probe{{v4A, false}, {v6A, true}, {v6B, true}}},
		{"[::] dual-stack", "tcp6", "[::]:0", 0, []probe{{v4A, true}, {v6A, true}}},
		{"198.51.100.2", "tcp4", v4A.String() + ":0", -1, []probe{{v4A, true}, {v4B, false}, {v6A, false}}},
		{"[2001:db8::2]", "tcp6", "[" + v6A.String() + "]:0", -1, []probe{{v6A, true}, {v6B, false}, {v4A, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := n.listen(t, tc.network, tc.listen, tc.v6only)
			port := addrPort(ln.Addr()).Port()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			for _, p := range tc.probes {
				to := netip.AddrPortFrom(p.to, port)
				got, err := d.Listening(to)
				if err != nil {
					t.Fatalf("Listening(%v): %v", to, err)
				}
				if got != p.want {
					t.Errorf("Listening(%v) = %v, want %v", to, got, p.want)
				}
				if kernel := n.connects(t, to); kernel != got {
					t.Errorf("Listening(%v) = %v, but a connection attempt says %v", to, got, kernel)
				}
			}
		})
	}
	// A port nobody listens on.
	free := n.listen(t, "tcp4", "0.0.0.0:0", -1)
	to := netip.AddrPortFrom(v4A, addrPort(free.Addr()).Port())
	free.Close()
	if got, err := d.Listening(to); err != nil || got {
		t.Errorf("Listening(%v) after the listener closed = %v, %v; want false", to, got, err)
	}
}

// connects reports whether a connection to to from inside the namespace is
// accepted (loopback refuses at once with a RST).
func (n *testNS) connects(t *testing.T, to netip.AddrPort) bool {
	t.Helper()
	ok := false
	n.in(t, func() {
		c, err := net.DialTimeout("tcp", to.String(), 2*time.Second)
		if err == nil {
			ok = true
			c.Close()
		}
	})
	return ok
}

// BenchmarkGet compares the exact lookup with a dump of every socket (what
// State did before), with a few hundred connections in the namespace.
func BenchmarkGet(b *testing.B) {
	n := newNS(b)
	d := openDiag(b, n)
	ln := n.listen(b, "tcp4", v4A.String()+":0", -1)
	port := addrPort(ln.Addr()).Port()
	const conns = 300
	var last net.Conn
	for range conns {
		_, last = n.dial(b, ln, netip.AddrPortFrom(v4A, port))
	}
	sl, sr := addrPort(last.LocalAddr()), addrPort(last.RemoteAddr())
	b.Run(fmt.Sprintf("exact/%d-sockets", 2*conns+1), func(b *testing.B) {
		for b.Loop() {
			if r, err := d.Get(sl, sr); err != nil || r.State != tcpstate.Established {
				b.Fatalf("Get = %v, %v", r, err)
			}
		}
	})
	dump := newDumper(b, n)
	b.Run(fmt.Sprintf("dump/%d-sockets", 2*conns+1), func(b *testing.B) {
		for b.Loop() {
			if s, err := dump.state(sl, sr); err != nil || s != "ESTABLISHED" {
				b.Fatalf("dump = %v, %v", s, err)
			}
		}
	})
}

// dumper is how State read a socket before Get: a dump of every TCP socket
// of both families, searched for the 4-tuple.
type dumper struct{ h *netlink.Handle }

func newDumper(t testing.TB, n *testNS) dumper {
	ns, err := netns.GetFromName(n.name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return dumper{h}
}

func (d dumper) state(local, remote netip.AddrPort) (string, error) {
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := d.h.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return "", err
		}
		for _, s := range socks {
			l, _ := netip.AddrFromSlice(s.ID.Source)
			r, _ := netip.AddrFromSlice(s.ID.Destination)
			if s.ID.SourcePort == local.Port() && s.ID.DestinationPort == remote.Port() &&
				l.Unmap() == local.Addr().Unmap() && r.Unmap() == remote.Addr().Unmap() {
				return observe.StateName(s.State), nil
			}
		}
	}
	return observe.None, nil
}
