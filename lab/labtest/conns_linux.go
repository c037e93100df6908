package labtest

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tcpshake/lab"
	"tcpshake/probe/observe"
)

// ServerConns lists the server namespace's TCP sockets whose remote end is
// the lab client, both families, except those in TIME-WAIT or CLOSED: what
// a test must not leave behind.
func ServerConns(t testing.TB, l lab.Lab) []string {
	t.Helper()
	if l.Peer == lab.PeerLWIP {
		return lwipConns(t, l)
	}
	h, err := netns.GetFromName(l.ServerNS)
	if err != nil {
		t.Fatalf("open namespace %s: %v", l.ServerNS, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h, unix.NETLINK_INET_DIAG)
	if err != nil {
		t.Fatalf("sock_diag in %s: %v", l.ServerNS, err)
	}
	defer nh.Close()
	const tcpTimeWait, tcpClose = 6, 7 // include/net/tcp_states.h
	var out []string
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := nh.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			t.Fatalf("sock_diag in %s: %v", l.ServerNS, err)
		}
		for _, s := range socks {
			dst, ok := netip.AddrFromSlice(s.ID.Destination)
			if !ok {
				continue
			}
			dst = dst.Unmap()
			if (dst != l.ClientV4 && dst != l.ClientV6) || s.State == tcpTimeWait || s.State == tcpClose {
				continue
			}
			out = append(out, fmt.Sprintf("%v:%d <- %v:%d %s", s.ID.Source, s.ID.SourcePort, dst, s.ID.DestinationPort, observe.StateName(s.State)))
		}
	}
	return out
}

// ServerConnsFrom is ServerConns limited to the connections from the client's port sport: what one run of a
// test (with its own --sport) must not leave behind, while other runs share the lab.
func ServerConnsFrom(t testing.TB, l lab.Lab, sport uint16) []string {
	t.Helper()
	var out []string
	suffix := fmt.Sprintf(":%d ", sport)
	for _, c := range ServerConns(t, l) {
		if strings.Contains(c, suffix) {
			out = append(out, c)
		}
	}
	return out
}

// Tables lists the nftables tables in network namespace ns (asked over a
// netlink socket opened there: no nft binary needed). Tests use it to check
// that no guard table is left behind.
func Tables(t testing.TB, ns string) []string {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns, err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatalf("nftables in %s: %v", ns, err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatalf("list nftables tables in %s: %v", ns, err)
	}
	var out []string
	for _, tb := range tables {
		out = append(out, tb.Name)
	}
	return out
}

// ServerSS lists the lines of `ss -tanH` in the server namespace for
// connections from the lab client that are not in TIME-WAIT: what a user
// checking "nothing left open" with ss would see (ServerConns reads the same
// through sock_diag).
func ServerSS(t testing.TB, l lab.Lab) []string {
	t.Helper()
	if l.Peer == lab.PeerLWIP {
		return lwipConns(t, l) // no ss can see lwIP's sockets: the program tells them itself
	}
	out, err := exec.Command("ip", "netns", "exec", l.ServerNS, "ss", "-tanH").CombinedOutput()
	if err != nil {
		t.Fatalf("ss in %s: %v: %s", l.ServerNS, err, out)
	}
	var left []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "LISTEN" || f[0] == "TIME-WAIT" {
			continue
		}
		if p := f[4]; strings.HasPrefix(p, l.ClientV4.String()+":") || strings.HasPrefix(p, "["+l.ClientV6.String()+"]:") ||
			strings.HasPrefix(p, "[::ffff:"+l.ClientV4.String()+"]:") {
			left = append(left, line)
		}
	}
	return left
}

// lwipConns is ServerConns for the lwip peer, read from the program itself (lab.Lab.LWIPSockets): its
// connections from the lab client that are not in TIME-WAIT or CLOSED.
func lwipConns(t testing.TB, l lab.Lab) []string {
	t.Helper()
	socks, err := l.LWIPSockets()
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	var out []string
	for _, s := range socks {
		r, err := netip.ParseAddrPort(s.Remote)
		if err != nil || s.State == "TIME-WAIT" || s.State == "CLOSED" {
			continue
		}
		if a := r.Addr().Unmap(); a == l.ClientV4 || a == l.ClientV6 {
			out = append(out, fmt.Sprintf("%s <- %s %s", s.Local, r, s.State))
		}
	}
	return out
}

// PeerState is the lwip peer's state of the connection local <- remote in RFC 9293's words (as observe reads a
// Linux server's): "CLOSED" when it holds none.
func PeerState(t testing.TB, l lab.Lab, local, remote netip.AddrPort) string {
	t.Helper()
	socks, err := l.LWIPSockets()
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	for _, s := range socks {
		if s.Local == local.String() && s.Remote == remote.String() {
			return s.State
		}
	}
	return "CLOSED"
}
