//go:build linux

package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// sentOptions runs argv (with --json) in the client namespace and returns
// the options of the first segment it sent.
func sentOptions(t *testing.T, l lab.Lab, argv ...string) string {
	t.Helper()
	r := runClient(t, l, argv...)
	for _, ev := range jsonEvents(t, r.stdout) {
		if ev["type"] == "step" && ev["direction"] == "sent" {
			opts, _ := ev["options"].(string)
			return opts
		}
	}
	t.Fatalf("%q sent nothing (exit %d)\nstdout:\n%s\nstderr:\n%s", argv, r.code, r.stdout, r.stderr)
	return ""
}

// setClientMTU sets the MTU of the lab client's veth.
func setClientMTU(t *testing.T, l lab.Lab, mtu int) {
	t.Helper()
	if err := lab.Do(l.ClientNS, func() error {
		link, err := netlink.LinkByName(l.ClientIf)
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(link, mtu)
	}); err != nil {
		t.Fatalf("set the MTU of %s to %d: %v", l.ClientIf, mtu, err)
	}
}

// TestMSSFromRoute: the MSS our SYNs offer is the route's MTU less the
// headers (IPv4 −40, IPv6 −60), for probe and handshake alike, on a
// 1500-byte link and on a 1280-byte one; an explicit --mss wins, and
// --mss 0 sends no MSS option.
func TestMSSFromRoute(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		bin := binary(t)
		v4 := l.ServerV4.String()
		v6 := l.ServerV6.String()
		check := func(what, got, want string) {
			t.Helper()
			if got != want {
				t.Errorf("%s: our SYN's options %q, want %q", what, got, want)
			}
		}
		for _, step := range []struct {
			mtu          int
			want4, want6 string
		}{
			{1500, "[mss 1460]", "[mss 1440]"},
			{1280, "[mss 1240]", "[mss 1220]"},
		} {
			setClientMTU(t, l, step.mtu)
			at := fmt.Sprintf(" (MTU %d)", step.mtu)
			check("probe IPv4"+at, sentOptions(t, l, bin, "probe", v4, "-p", "80", "--json", "-v", "--no-echo"), step.want4)
			check("probe IPv6"+at, sentOptions(t, l, bin, "probe", v6, "-p", "80", "--json", "-v", "--no-echo"), step.want6)
			check("handshake IPv4"+at, sentOptions(t, l, bin, "handshake", v4+":7", "--json", "--time-wait", "0"), step.want4)
			check("handshake IPv6"+at, sentOptions(t, l, bin, "handshake", "["+v6+"]:7", "--json", "--time-wait", "0"), step.want6)
		}
		check("probe --mss 1000", sentOptions(t, l, bin, "probe", v6, "-p", "80", "--json", "-v", "--no-echo", "--mss", "1000"), "[mss 1000]")
		check("handshake --mss 0", sentOptions(t, l, bin, "handshake", v4+":7", "--json", "--mss", "0", "--time-wait", "0"), "")
	})
}

// TestRefusingRoutes: a blackhole, unreachable or prohibit route on our side
// is named in one line, exit status 2, for probe and handshake; nothing is
// sent. (The addresses are inside the lab's subnet, routed away in the
// client namespace only.)
func TestRefusingRoutes(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
	routes := []struct {
		dst  string
		typ  int
		want string
	}{
		{"198.51.100.77", unix.RTN_BLACKHOLE, "no route to 198.51.100.77: the routing table says blackhole (198.51.100.77/32)"},
		{"198.51.100.78", unix.RTN_UNREACHABLE, "no route to 198.51.100.78: the routing table says unreachable (198.51.100.78/32)"},
		{"198.51.100.79", unix.RTN_PROHIBIT, "no route to 198.51.100.79: the routing table says prohibit (198.51.100.79/32)"},
		{"2001:db8::77", unix.RTN_BLACKHOLE, "no route to 2001:db8::77: the routing table says blackhole (2001:db8::77/128)"},
	}
	if err := lab.Do(l.ClientNS, func() error {
		for _, r := range routes {
			a := netip.MustParseAddr(r.dst)
			dst := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
			if err := netlink.RouteAdd(&netlink.Route{Dst: dst, Type: r.typ}); err != nil {
				return fmt.Errorf("route %s: %w", r.dst, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		hostPort := r.dst + ":80"
		if strings.Contains(r.dst, ":") {
			hostPort = "[" + r.dst + "]:80"
		}
		for _, argv := range [][]string{{bin, "probe", hostPort}, {bin, "handshake", hostPort, "--view", "list"}} {
			res := runClient(t, l, argv...)
			if res.code != 2 {
				t.Errorf("%q: exit status %d, want 2", argv[1:], res.code)
			}
			checkOneLine(t, res.stderr, r.want)
			if strings.Contains(res.stderr, "invalid argument") || strings.Contains(res.stderr, "setcap") {
				t.Errorf("%q: %q", argv[1:], res.stderr)
			}
		}
	}
}

// TestProbeSourcePort: probe reserves its source port. A port a live
// connection of this host uses is refused with a clear line (it once made an
// open port look filtered), and the default port is held while the probe
// runs.
func TestProbeSourcePort(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		bin := binary(t)

		var c net.Conn
		if err := lab.Do(l.ClientNS, func() (err error) {
			c, err = net.Dial("tcp4", net.JoinHostPort(l.ServerV4.String(), fmt.Sprint(lab.PortHold)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		live := netip.MustParseAddrPort(c.LocalAddr().String())
		r := runClient(t, l, bin, "probe", l.ServerV4.String(), "-p", fmt.Sprint(lab.PortHold), "--sport", fmt.Sprint(live.Port()))
		if r.code != 2 {
			t.Errorf("--sport %d of a live connection: exit status %d, want 2\nstdout:\n%s", live.Port(), r.code, r.stdout)
		}
		checkOneLine(t, r.stderr, fmt.Sprintf("source port %d on %v is in use by another socket of this host", live.Port(), live.Addr()))

		// The default port: read it from the first probe, then try to take it.
		cmd := exec.Command(bin, "probe", l.ServerV4.String(), "-p", fmt.Sprint(lab.PortHold), "--json", "-v",
			"--no-echo", "-c", "2", "-i", "1s")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := lab.Do(l.ClientNS, cmd.Start); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		var sport netip.AddrPort
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && !sport.IsValid() {
			var ev struct{ Type, Direction, Src string }
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "step" && ev.Direction == "sent" {
				sport = netip.MustParseAddrPort(ev.Src)
			}
		}
		if !sport.IsValid() {
			t.Fatalf("no probe sent; stderr: %s", errb.String())
		}
		berr := lab.Do(l.ClientNS, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Bind(fd, &unix.SockaddrInet4{Addr: sport.Addr().As4(), Port: int(sport.Port())})
		})
		if !errors.Is(berr, unix.EADDRINUSE) {
			t.Errorf("binding the running probe's source port %v: %v, want EADDRINUSE (reserved)", sport, berr)
		}
		go func() {
			for sc.Scan() {
			}
		}()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("probe: %v; stderr: %s", err, errb.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("probe still running after 10 s")
		}
	})
}

// TestObserveNetnsCapability runs handshake --observe-netns as an
// unprivileged user holding only CAP_NET_RAW and CAP_NET_ADMIN: entering the
// server's namespace needs CAP_SYS_ADMIN, and the one-line error must say
// so (it used to say only "operation not permitted").
func TestObserveNetnsCapability(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	l := labtest.New(t)
	bin := binary(t)
	r := runClient(t, l, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_raw,+net_admin", "--ambient-caps=-all,+net_raw,+net_admin",
		bin, "handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortHold), "--observe-netns", l.ServerNS)
	if r.code != 2 {
		t.Errorf("exit status %d, want 2\nstdout:\n%s", r.code, r.stdout)
	}
	checkOneLine(t, r.stderr, "needs CAP_SYS_ADMIN")
	if !strings.Contains(r.stderr, "cap_sys_admin") || !strings.Contains(r.stderr, "--observe-netns "+l.ServerNS) {
		t.Errorf("stderr does not name the flag and how to grant CAP_SYS_ADMIN: %q", r.stderr)
	}
}
