package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Lookup asks the kernel's routing table how to reach dst. A non-empty iface
// must exist and is used instead of the route's interface; a valid src must
// be an address of this host and is used instead of the route's preferred
// source. When the table sends nothing to dst (a blackhole, unreachable or
// prohibit route, or no route), the error is a [*RouteError] naming the
// route.
func Lookup(dst netip.Addr, iface string, src netip.Addr) (Route, error) {
	var r Route
	if iface != "" {
		link, err := net.InterfaceByName(iface)
		if err != nil {
			return r, fmt.Errorf("interface %q does not exist", iface)
		}
		r.IfIndex, r.IfName, r.MTU = link.Index, link.Name, link.MTU
	}
	if src.IsValid() {
		if !isLocal(src) {
			return r, fmt.Errorf("source address %v is not an address of this host", src)
		}
		r.Src = src
	}
	opts := &netlink.RouteGetOptions{}
	if iface != "" {
		opts.Oif = iface
	}
	if src.IsValid() {
		opts.SrcAddr = src.AsSlice()
	}
	routes, err := netlink.RouteGetWithOptions(dst.AsSlice(), opts)
	if r.IfIndex != 0 && r.Src.IsValid() {
		// Interface and source are given: the route only adds its mtu
		// metric, when the kernel has one for this way out.
		if err == nil && len(routes) > 0 && routes[0].MTU > 0 {
			r.MTU = routes[0].MTU
		}
		return r, nil
	}
	if err != nil || len(routes) == 0 {
		if err == nil {
			err = unix.ENETUNREACH
		}
		return r, routeError(dst, err, true)
	}
	rt := routes[0]
	if r.IfIndex == 0 {
		link, err := net.InterfaceByIndex(rt.LinkIndex)
		if err != nil {
			return r, fmt.Errorf("route to %v: interface %d: %w", dst, rt.LinkIndex, err)
		}
		r.IfIndex, r.IfName, r.MTU = link.Index, link.Name, link.MTU
	}
	if rt.MTU > 0 {
		r.MTU = rt.MTU
	}
	if !r.Src.IsValid() {
		a, ok := netip.AddrFromSlice(rt.Src)
		if !ok {
			return r, fmt.Errorf("route to %v has no source address", dst)
		}
		r.Src = a.Unmap()
	}
	return r, nil
}

// CheckRoute turns err, from sending to dst or from looking its route up,
// into a [*RouteError] naming the route when the kernel refused for a
// routing reason: EINVAL (a blackhole route), EHOSTUNREACH (unreachable),
// EACCES (prohibit), ENETUNREACH (no route, or throw) or EPERM (a firewall
// rule on the output hook). Any other error, and nil, come back unchanged.
func CheckRoute(dst netip.Addr, err error) error {
	return routeError(dst, err, false)
}

// refusingType is the route type whose match makes the kernel answer errno
// (fib_props in net/ipv4/fib_semantics.c; ip6_rt_type_to_error in
// net/ipv6/route.c), and its word in ip-route(8).
func refusingType(errno unix.Errno) (typ int, name string, ok bool) {
	switch errno {
	case unix.EINVAL:
		return unix.RTN_BLACKHOLE, "blackhole", true
	case unix.EHOSTUNREACH:
		return unix.RTN_UNREACHABLE, "unreachable", true
	case unix.EACCES:
		return unix.RTN_PROHIBIT, "prohibit", true
	case unix.ENETUNREACH:
		return unix.RTN_THROW, "throw", true
	}
	return 0, "", false
}

// routeError builds the RouteError for err. From a send, an EINVAL that no
// blackhole route explains is left alone: sendto says EINVAL for malformed
// packets too. lookup is set for errors of the route lookup itself, where
// EINVAL can only be the route.
func routeError(dst netip.Addr, err error, lookup bool) error {
	var errno unix.Errno
	if err == nil || !errors.As(err, &errno) {
		return err
	}
	e := &RouteError{Dst: dst, Err: errno}
	if errno == unix.EPERM {
		if lookup {
			return err
		}
		return e
	}
	typ, name, ok := refusingType(errno)
	if !ok {
		return err
	}
	prefix, table, found := refusingRoute(dst, typ)
	if found {
		e.Type = name
		e.Route = prefix.String()
		if table != unix.RT_TABLE_MAIN {
			e.Route += " table " + tableName(table)
		}
	} else if errno == unix.EINVAL && !lookup {
		return err
	}
	return e
}

// refusingRoute finds the most specific route of type typ, in any routing
// table, whose destination contains dst.
func refusingRoute(dst netip.Addr, typ int) (prefix netip.Prefix, table int, found bool) {
	family := netlink.FAMILY_V4
	if dst.Is6() {
		family = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Type: typ},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return prefix, 0, false
	}
	for _, rt := range routes {
		p := netip.PrefixFrom(dst.Unmap(), 0).Masked() // a route without Dst is the default route
		if rt.Dst != nil {
			a, ok := netip.AddrFromSlice(rt.Dst.IP)
			if !ok {
				continue
			}
			bits, total := rt.Dst.Mask.Size()
			if total == 128 && a.Is4In6() {
				bits -= 96
			}
			p = netip.PrefixFrom(a.Unmap(), bits).Masked()
		}
		if !p.IsValid() || !p.Contains(dst.Unmap()) {
			continue
		}
		if !found || p.Bits() > prefix.Bits() {
			prefix, table, found = p, rt.Table, true
		}
	}
	return prefix, table, found
}

// tableName is the routing table's name as ip-route(8) prints it.
func tableName(t int) string {
	switch t {
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_LOCAL:
		return "local"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	}
	return strconv.Itoa(t)
}

func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a.Unmap() {
				return true
			}
		}
	}
	return false
}
