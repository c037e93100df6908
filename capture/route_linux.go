package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Lookup asks the kernel's routing table how to reach dst. A non-empty iface
// must exist and is used instead of the route's interface; a valid src must
// be an address of this host and is used instead of the route's preferred
// source.
func Lookup(dst netip.Addr, iface string, src netip.Addr) (Route, error) {
	var r Route
	if iface != "" {
		link, err := net.InterfaceByName(iface)
		if err != nil {
			return r, fmt.Errorf("interface %q does not exist", iface)
		}
		r.IfIndex, r.IfName = link.Index, link.Name
	}
	if src.IsValid() {
		if !isLocal(src) {
			return r, fmt.Errorf("source address %v is not an address of this host", src)
		}
		r.Src = src
	}
	if r.IfIndex != 0 && r.Src.IsValid() {
		return r, nil
	}
	opts := &netlink.RouteGetOptions{}
	if iface != "" {
		opts.Oif = iface
	}
	if src.IsValid() {
		opts.SrcAddr = src.AsSlice()
	}
	routes, err := netlink.RouteGetWithOptions(dst.AsSlice(), opts)
	if err != nil || len(routes) == 0 {
		if err == nil {
			err = errors.New("no route")
		}
		return r, fmt.Errorf("no route to %v: %w", dst, err)
	}
	rt := routes[0]
	if r.IfIndex == 0 {
		link, err := net.InterfaceByIndex(rt.LinkIndex)
		if err != nil {
			return r, fmt.Errorf("route to %v: interface %d: %w", dst, rt.LinkIndex, err)
		}
		r.IfIndex, r.IfName = link.Index, link.Name
	}
	if !r.Src.IsValid() {
		a, ok := netip.AddrFromSlice(rt.Src)
		if !ok {
			return r, fmt.Errorf("route to %v has no source address", dst)
		}
		r.Src = a.Unmap()
		if dst.Is4() {
			r.Src = r.Src.Unmap()
		}
	}
	return r, nil
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
