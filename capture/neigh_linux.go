package capture

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A NextHop is the link-layer neighbour a packet to some destination goes
// to: the route's gateway, or the destination itself on a link.
type NextHop struct {
	Addr   netip.Addr
	IfName string
	// State is the neighbour entry's state as ip-neigh(8) names it
	// (REACHABLE, STALE, DELAY, PROBE, INCOMPLETE, FAILED, PERMANENT,
	// NOARP), or "" when there is no entry.
	State string
	// LinkState is the interface's operational state as ip-link(8) names
	// it (UP, DOWN, LOWERLAYERDOWN, UNKNOWN, ...); LinkDown is set when it
	// has no carrier or is down, so nothing leaves by it.
	LinkState string
	LinkDown  bool
}

// Unresolved tells whether the neighbour never answered ARP or neighbour
// discovery: packets to it do not leave this host.
func (h NextHop) Unresolved() bool { return h.State == "INCOMPLETE" || h.State == "FAILED" }

// LookupNextHop finds the next hop towards dst and its neighbour entry.
func LookupNextHop(dst netip.Addr) (NextHop, error) {
	var h NextHop
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return h, fmt.Errorf("capture: route to %v: %v", dst, err)
	}
	rt := routes[0]
	h.Addr = dst
	if gw, ok := netip.AddrFromSlice(rt.Gw); ok && rt.Gw != nil {
		h.Addr = gw.Unmap()
	}
	if link, err := netlink.LinkByIndex(rt.LinkIndex); err == nil {
		a := link.Attrs()
		h.IfName = a.Name
		h.LinkState = strings.ToUpper(a.OperState.String())
		h.LinkDown = a.Flags&net.FlagUp == 0 || a.RawFlags&unix.IFF_LOWER_UP == 0
	}
	family := unix.AF_INET
	if h.Addr.Is6() {
		family = unix.AF_INET6
	}
	ns, err := netlink.NeighList(rt.LinkIndex, family)
	if err != nil {
		return h, fmt.Errorf("capture: neighbours of %s: %w", h.IfName, err)
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == h.Addr {
			h.State = neighState(n.State)
			break
		}
	}
	return h, nil
}

func neighState(s int) string {
	for _, n := range []struct {
		bit  int
		name string
	}{
		{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"},
		{netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_FAILED, "FAILED"},
		{netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"},
	} {
		if s&n.bit != 0 {
			return n.name
		}
	}
	return "NONE"
}
