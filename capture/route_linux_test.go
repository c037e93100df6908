package capture

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot skips a test that builds network namespaces when not root,
// except under CI=true, where a skip would hide that it never ran.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const why = "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to build a network namespace with its own routes"
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (CI=true: not skipping)")
	}
	t.Skip(why)
}

// routeNS locks the test goroutine to its thread and moves the thread into a
// fresh, uniquely named network namespace with a veth pair v0 (10.9.0.1/24,
// 2001:db8:9::1/64, MTU mtu) and v1, both up. Cleanup moves the thread back
// and deletes the namespace.
func routeNS(t *testing.T, mtu int) *netlink.Handle {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current network namespace: %v", err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "tcpshake-route-" + hex.EncodeToString(b)
	ns, err := netns.NewNamed(name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create network namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("restore network namespace: %v", err) // the thread stays locked and dies with the test
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0", MTU: mtu}, PeerName: "v1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, n := range []string{"lo", "v0", "v1"} {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
	v0, _ := h.LinkByName("v0")
	for _, a := range []string{"10.9.0.1/24", "2001:db8:9::1/64"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(v0, addr); err != nil {
			t.Fatalf("add %s: %v", a, err)
		}
	}
	return h
}

func addRoute(t *testing.T, h *netlink.Handle, prefix string, typ, table int) {
	t.Helper()
	_, dst, err := net.ParseCIDR(prefix)
	if err != nil {
		t.Fatal(err)
	}
	rt := &netlink.Route{Dst: dst, Type: typ, Table: table}
	if err := h.RouteAdd(rt); err != nil {
		t.Fatalf("ip route add %v %s: %v", typ, prefix, err)
	}
}

// rawSend sends a bare IP header to dst from a raw socket of the current
// thread's namespace, as capture.RawSender does, and returns sendto's error.
func rawSend(t *testing.T, src, dst netip.Addr) error {
	t.Helper()
	s, err := OpenRawSender(dst.Is6(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pkt []byte
	if dst.Is4() {
		pkt = append([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0}, src.AsSlice()...)
	} else {
		pkt = append([]byte{0x60, 0, 0, 0, 0, 0, 6, 64}, src.AsSlice()...)
	}
	return s.Send(append(pkt, dst.AsSlice()...), dst)
}

// TestRouteErrors builds blackhole, unreachable and prohibit routes (and
// one in another table) and checks that both the route lookup and a raw
// send to them give one line that names the route instead of the bare
// errno ("invalid argument" for a blackhole).
func TestRouteErrors(t *testing.T) {
	h := routeNS(t, 1500)
	addRoute(t, h, "198.51.100.0/24", unix.RTN_BLACKHOLE, 0)
	addRoute(t, h, "198.51.101.0/24", unix.RTN_UNREACHABLE, 0)
	addRoute(t, h, "198.51.102.0/24", unix.RTN_PROHIBIT, 0)
	addRoute(t, h, "2001:db8:1::/64", unix.RTN_BLACKHOLE, 0)
	addRoute(t, h, "2001:db8:2::/64", unix.RTN_UNREACHABLE, 0)
	addRoute(t, h, "2001:db8:3::/64", unix.RTN_PROHIBIT, 0)
	// A rule sends 198.51.104.0/24 to table 100, where a blackhole waits.
	addRoute(t, h, "198.51.104.0/24", unix.RTN_BLACKHOLE, 100)
	rule := netlink.NewRule()
	_, rule.Dst, _ = net.ParseCIDR("198.51.104.0/24")
	rule.Table, rule.Priority = 100, 100
	if err := h.RuleAdd(rule); err != nil {
		t.Fatalf("ip rule add: %v", err)
	}
	src4, src6 := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("2001:db8:9::1")
	tests := []struct {
		dst   string
		typ   string
		errno unix.Errno
		want  string
	}{
		{"198.51.100.2", "blackhole", unix.EINVAL, "no route to 198.51.100.2: the routing table says blackhole (198.51.100.0/24)"},
		{"198.51.101.2", "unreachable", unix.EHOSTUNREACH, "no route to 198.51.101.2: the routing table says unreachable (198.51.101.0/24)"},
		{"198.51.102.2", "prohibit", unix.EACCES, "no route to 198.51.102.2: the routing table says prohibit (198.51.102.0/24)"},
		{"198.51.104.2", "blackhole", unix.EINVAL, "no route to 198.51.104.2: the routing table says blackhole (198.51.104.0/24 table 100)"},
		{"203.0.113.1", "", unix.ENETUNREACH, "no route to 203.0.113.1: the routing table has no route that matches it"},
		{"2001:db8:1::2", "blackhole", unix.EINVAL, "no route to 2001:db8:1::2: the routing table says blackhole (2001:db8:1::/64)"},
		{"2001:db8:2::2", "unreachable", unix.EHOSTUNREACH, "no route to 2001:db8:2::2: the routing table says unreachable (2001:db8:2::/64)"},
		{"2001:db8:3::2", "prohibit", unix.EACCES, "no route to 2001:db8:3::2: the routing table says prohibit (2001:db8:3::/64)"},
		{"2001:db8:4::2", "", unix.ENETUNREACH, "no route to 2001:db8:4::2: the routing table has no route that matches it"},
	}
	for _, tt := range tests {
		dst := netip.MustParseAddr(tt.dst)
		src := src4
		if dst.Is6() {
			src = src6
		}
		check := func(how string, err error) {
			t.Helper()
			var re *RouteError
			if !errors.As(err, &re) {
				t.Errorf("%s %v: err = %v, want a *RouteError", how, dst, err)
				return
			}
			if re.Type != tt.typ || !errors.Is(err, tt.errno) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("%s %v: %q (type %q, errno %v), want %q… (type %q, errno %v)", how, dst, err, re.Type, re.Err, tt.want, tt.typ, tt.errno)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("%s %v: more than one line: %q", how, dst, err)
			}
		}
		_, err := Lookup(dst, "", netip.Addr{})
		check("Lookup", err)
		// With -I and -s given the lookup does not decide; the send does.
		if _, err := Lookup(dst, "v0", src); err != nil {
			t.Errorf("Lookup %v with interface and source: %v", dst, err)
		}
		serr := rawSend(t, src, dst)
		if !errors.Is(serr, tt.errno) {
			t.Errorf("raw send to %v: %v, want %v from the kernel", dst, serr, tt.errno)
		}
		check("send", CheckRoute(dst, serr))
	}
	// Errors that are not about routing pass unchanged, and so does nil.
	if err := CheckRoute(src4, nil); err != nil {
		t.Errorf("CheckRoute(nil) = %v", err)
	}
	other := errors.New("capture: send to 10.9.0.2: message too long")
	if err := CheckRoute(src4, other); err != other {
		t.Errorf("CheckRoute(%v) = %v, want it unchanged", other, err)
	}
	// A send's EINVAL that no blackhole route explains is not blamed on one.
	einval := &os.SyscallError{Syscall: "sendto", Err: unix.EINVAL}
	if err := CheckRoute(netip.MustParseAddr("10.9.0.2"), einval); err != error(einval) {
		t.Errorf("CheckRoute(EINVAL without a blackhole) = %v, want it unchanged", err)
	}
	// EPERM from a send is the firewall's.
	if err := CheckRoute(netip.MustParseAddr("10.9.0.2"), unix.EPERM); err == nil || !strings.HasPrefix(err.Error(), "cannot send to 10.9.0.2: a firewall rule") {
		t.Errorf("CheckRoute(EPERM) = %v, want the firewall named", err)
	}
}

// TestLookupMTU checks Route.MTU: the interface's MTU, or the route's own
// mtu metric when it has one, also with -I and -s given.
func TestLookupMTU(t *testing.T) {
	h := routeNS(t, 1280)
	v0, err := h.LinkByName("v0")
	if err != nil {
		t.Fatal(err)
	}
	_, lower, _ := net.ParseCIDR("10.9.1.0/24")
	if err := h.RouteAdd(&netlink.Route{Dst: lower, Gw: net.ParseIP("10.9.0.2"), LinkIndex: v0.Attrs().Index, MTU: 1200}); err != nil {
		t.Fatalf("ip route add 10.9.1.0/24 via 10.9.0.2 mtu 1200: %v", err)
	}
	src4, src6 := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("2001:db8:9::1")
	tests := []struct {
		dst     string
		iface   string
		src     netip.Addr
		wantMTU int
		wantMSS uint16
	}{
		{"10.9.0.2", "", netip.Addr{}, 1280, 1240},
		{"2001:db8:9::2", "", netip.Addr{}, 1280, 1220},
		{"10.9.1.5", "", netip.Addr{}, 1200, 1160},
		{"10.9.1.5", "v0", src4, 1200, 1160},
		{"10.9.0.2", "v0", src4, 1280, 1240},
		{"2001:db8:9::2", "v0", src6, 1280, 1220},
		{"127.0.0.1", "", netip.Addr{}, 65536, 65496},
		{"::1", "", netip.Addr{}, 65536, 65476},
	}
	for _, tt := range tests {
		dst := netip.MustParseAddr(tt.dst)
		r, err := Lookup(dst, tt.iface, tt.src)
		if err != nil {
			t.Errorf("Lookup %v: %v", dst, err)
			continue
		}
		if r.MTU != tt.wantMTU || r.MSS(dst.Is6()) != tt.wantMSS {
			t.Errorf("Lookup %v (-I %q -s %v): MTU %d, MSS %d; want MTU %d, MSS %d", dst, tt.iface, tt.src, r.MTU, r.MSS(dst.Is6()), tt.wantMTU, tt.wantMSS)
		}
	}
}

func TestRouteMSS(t *testing.T) {
	tests := []struct {
		mtu  int
		v6   bool
		want uint16
	}{
		{1500, false, 1460},
		{1500, true, 1440},
		{1280, true, 1220},
		{1280, false, 1240},
		{65536, false, 65496},
		{65536, true, 65476},
		{200000, false, 65535},
		{0, false, 0},
		{40, false, 0},
		{60, true, 0},
		{41, false, 1},
	}
	for _, tt := range tests {
		if got := (Route{MTU: tt.mtu}).MSS(tt.v6); got != tt.want {
			t.Errorf("Route{MTU: %d}.MSS(v6=%v) = %d, want %d", tt.mtu, tt.v6, got, tt.want)
		}
	}
}
