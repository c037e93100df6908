package app

import (
	"errors"
	"net/netip"

	"github.com/urfave/cli/v2"

	"tcpshake/capture"
)

// lookup asks the routing table how to reach dst (see capture.Lookup). A
// route that sends nothing there (blackhole, unreachable, prohibit, none)
// comes back as the *capture.RouteError that names it; other mistakes (no
// such interface, a source address that is not ours) are usage errors.
func lookup(dst netip.Addr, iface string, src netip.Addr) (capture.Route, error) {
	r, err := capture.Lookup(dst, iface, src)
	var re *capture.RouteError
	switch {
	case err == nil:
		return r, nil
	case errors.As(err, &re):
		return r, err
	}
	return r, usagef("%v", err)
}

// Default MSS when the route's MTU is unknown: RFC 9293 §3.7.1 (IPv4: 536)
// and RFC 8200 §8.3 (IPv6: 1220), what a peer assumes without the option.
const (
	fallbackMSS4 = 536
	fallbackMSS6 = 1220
)

// routeMSS is the MSS a SYN along route offers by default: what one segment
// can carry within the route's MTU (MTU−40 for IPv4, MTU−60 for IPv6).
func routeMSS(route capture.Route, dst netip.Addr) uint16 {
	if mss := route.MSS(dst.Is6()); mss != 0 {
		return mss
	}
	if dst.Is6() {
		return fallbackMSS6
	}
	return fallbackMSS4
}

// mssFlag is --mss; its default comes from the route (routeMSS).
func mssFlag(where string) cli.Flag {
	return &cli.StringFlag{Name: "mss", Usage: "MSS option `BYTES` " + where +
		" (default: from the route's MTU, MTU-40 for IPv4 and MTU-60 for IPv6, e.g. 1460 and 1440 on a 1500-byte link; 0: no option)"}
}

// routeSender names the route when the kernel refuses to send for a routing
// reason (a blackhole route's sendto says only "invalid argument"); see
// capture.CheckRoute.
type routeSender struct{ capture.Sender }

// Send sends pkt to dst.
func (s routeSender) Send(pkt []byte, dst netip.Addr) error {
	return capture.CheckRoute(dst, s.Sender.Send(pkt, dst))
}
