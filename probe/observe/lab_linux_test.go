package observe_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tcpshake/lab/labtest"
	"tcpshake/probe/observe"
)

// Addresses put on the test namespace's loopback (documentation ranges).
var (
	v4A = netip.MustParseAddr("198.51.100.2")
	v4B = netip.MustParseAddr("198.51.100.3")
	v6A = netip.MustParseAddr("2001:db8::2")
	v6B = netip.MustParseAddr("2001:db8::3")
)

// testNS is a network namespace of the test's own: loopback up, with v4A,
// v4B, v6A and v6B on it. Nothing in it reaches outside.
type testNS struct {
	name string
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNS creates the namespace and deletes it in t.Cleanup.
func newNS(t testing.TB) *testNS {
	t.Helper()
	labtest.RequireRoot(t)
	n := &testNS{name: fmt.Sprintf("tso-%d-%s", os.Getpid(), labtest.Name(t))}
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.name, err, out)
		}
	})
	run(t, "ip", "-n", n.name, "link", "set", "lo", "up")
	for _, a := range []string{v4A.String() + "/32", v4B.String() + "/32"} {
		run(t, "ip", "-n", n.name, "addr", "add", a, "dev", "lo")
	}
	for _, a := range []string{v6A.String() + "/128", v6B.String() + "/128"} {
		run(t, "ip", "-n", n.name, "addr", "add", a, "dev", "lo", "nodad")
	}
	return n
}

// in runs f on a thread switched into the namespace: sockets f creates live
// there for good.
func (n *testNS) in(t testing.TB, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(n.name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("cannot return to the original network namespace: %v", err))
		}
	}()
	f()
}

// listen opens a TCP listener in the namespace; v6only sets IPV6_V6ONLY on
// an IPv6 one (-1: leave the default, which is dual-stack).
func (n *testNS) listen(t testing.TB, network, addr string, v6only int) net.Listener {
	t.Helper()
	var ln net.Listener
	n.in(t, func() {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			if v6only < 0 {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only) })
			if err != nil {
				return err
			}
			return serr
		}}
		var err error
		if ln, err = lc.Listen(context.Background(), network, addr); err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dial connects from inside the namespace and returns both ends' addresses
// as the server sees them (local = the server's end).
func (n *testNS) dial(t testing.TB, ln net.Listener, to netip.AddrPort) (client net.Conn, server net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	n.in(t, func() {
		var err error
		if client, err = net.Dial("tcp", to.String()); err != nil {
			t.Fatalf("dial %v: %v", to, err)
		}
	})
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

func openDiag(t testing.TB, n *testNS) *observe.Diag {
	t.Helper()
	d, err := observe.Open(n.name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
