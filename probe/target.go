package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// SplitTarget splits HOST[:PORT] ("example", "example:80", "198.51.100.2:80",
// "[2001:db8::2]:80", "2001:db8::2"). port is 0 when none was given.
func SplitTarget(arg string) (host string, port uint16, err error) {
	if arg == "" {
		return "", 0, fmt.Errorf("no host given")
	}
	if strings.HasPrefix(arg, "[") || strings.Count(arg, ":") == 1 {
		h, p, err := net.SplitHostPort(arg)
		if err != nil {
			if strings.HasPrefix(arg, "[") && strings.HasSuffix(arg, "]") {
				return arg[1 : len(arg)-1], 0, nil
			}
			return "", 0, fmt.Errorf("bad target %q: %v", arg, err)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return "", 0, fmt.Errorf("bad port %q in %q: want 1-65535", p, arg)
		}
		return h, uint16(n), nil
	}
	return arg, 0, nil
}

// Resolve turns host into one address of the wanted family (4, 6, or 0 for
// either, IPv4 first).
func Resolve(ctx context.Context, host string, family int) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.Zone() != "" {
			return a, fmt.Errorf("scoped address %q is not supported", host)
		}
		switch {
		case family == 4 && !a.Is4():
			return a, fmt.Errorf("%s is an IPv6 address, but -4 was given", host)
		case family == 6 && !a.Is6():
			return a, fmt.Errorf("%s is an IPv4 address, but -6 was given", host)
		}
		return a, nil
	}
	network := "ip"
	switch family {
	case 4:
		network = "ip4"
	case 6:
		network = "ip6"
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, network, host)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("cannot resolve host %q", host)
	}
	for _, a := range addrs {
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return addrs[0], nil
}
