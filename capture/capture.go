package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"
)

// A Frame is one IP packet as a [Source] delivers it.
type Frame struct {
	// Data is the packet from its IP header on. It is valid until the next
	// Read on the same source.
	Data []byte
	// Time is when the packet crossed the interface (the kernel's timestamp
	// for a live source, the file's for a recorded one).
	Time time.Time
	// Outgoing is true for packets this host sent.
	Outgoing bool
}

// A Source delivers IP packets one at a time. Read blocks until a packet
// arrives or the source is closed; after Close, Read returns an error that
// wraps [ErrClosed].
type Source interface {
	Read(f *Frame) error
	Close() error
}

// A Sender puts whole IP packets (IP header included) on the wire.
type Sender interface {
	Send(pkt []byte, dst netip.Addr) error
	Close() error
}

// ErrClosed is returned by Read after the source was closed.
var ErrClosed = errors.New("capture: source closed")

// A Key names one TCP conversation from our side: our address and port, and
// the peer's.
type Key struct {
	Local, Remote netip.AddrPort
}

// Reverse is the key as the peer sees it.
func (k Key) Reverse() Key { return Key{Local: k.Remote, Remote: k.Local} }

// A Route is how a packet to a destination leaves this host.
type Route struct {
	Src     netip.Addr
	IfIndex int
	IfName  string
	// MTU is the largest IP packet the route carries: the route's own mtu
	// metric when it has one (also a path MTU the kernel learned), else the
	// MTU of its interface. 0 when unknown.
	MTU int
}

// IPv4 and IPv6 header sizes without options, and the TCP header without
// options: what MSS leaves out of the MTU (RFC 9293 §3.7.1, RFC 8200 §8.3).
const (
	ipv4Header = 20
	ipv6Header = 40
	tcpHeader  = 20
)

// MSS is the largest TCP payload one segment along the route can carry
// without fragmenting: the MTU less the IP and TCP headers, MTU−40 for IPv4
// and MTU−60 for IPv6 (so 1460 and 1440 on a 1500-byte link, 1220 for IPv6's
// minimum MTU of 1280). It is what a SYN on this route should offer, as the
// kernel's own TCP does. It returns 0 when the MTU is unknown or too small to
// carry a segment, and at most 65535, the largest MSS option.
func (r Route) MSS(v6 bool) uint16 {
	h := ipv4Header + tcpHeader
	if v6 {
		h = ipv6Header + tcpHeader
	}
	if r.MTU <= h {
		return 0
	}
	return uint16(min(r.MTU-h, 65535))
}

// A RouteError says that this host's routing sends nothing to Dst: a
// blackhole, unreachable or prohibit route matches it, or no route does, or
// (for a send) a firewall rule on the way out dropped the packet. Nothing
// was sent.
type RouteError struct {
	Dst netip.Addr
	// Type is the kind of route that refused: "blackhole", "unreachable",
	// "prohibit", "throw", or "" when none was found (no route at all, or
	// the firewall).
	Type string
	// Route names the route that refused, e.g. "198.51.100.0/24" or
	// "198.51.100.0/24 table 100"; empty when none was found.
	Route string
	// Err is what the kernel said (a syscall.Errno).
	Err error
}

// Error returns one line naming the destination and the route.
func (e *RouteError) Error() string {
	route := ""
	if e.Route != "" {
		route = " (" + e.Route + ")"
	}
	switch e.Type {
	case "blackhole":
		return fmt.Sprintf("no route to %v: the routing table says blackhole%s: this host discards what it would send there", e.Dst, route)
	case "unreachable":
		return fmt.Sprintf("no route to %v: the routing table says unreachable%s: this host refuses to send there", e.Dst, route)
	case "prohibit":
		return fmt.Sprintf("no route to %v: the routing table says prohibit%s: sending there is administratively prohibited", e.Dst, route)
	case "throw":
		return fmt.Sprintf("no route to %v: the routing table says throw%s and no later table has a route", e.Dst, route)
	}
	if errors.Is(e.Err, syscall.EPERM) {
		return fmt.Sprintf("cannot send to %v: %s", e.Dst, e.reason())
	}
	return fmt.Sprintf("no route to %v: %s", e.Dst, e.reason())
}

// reason explains an errno when no route was found to name.
func (e *RouteError) reason() string {
	switch {
	case errors.Is(e.Err, syscall.ENETUNREACH):
		return "the routing table has no route that matches it (network unreachable)"
	case errors.Is(e.Err, syscall.EHOSTUNREACH):
		return "the routing table says the host is unreachable"
	case errors.Is(e.Err, syscall.EACCES):
		return "the routing table prohibits sending there (permission denied)"
	case errors.Is(e.Err, syscall.EPERM):
		return "a firewall rule of this host dropped our packet on its way out (netfilter output hook: operation not permitted)"
	case errors.Is(e.Err, syscall.EINVAL):
		return "the routing table refuses it (invalid argument: a blackhole route?)"
	}
	return e.Err.Error()
}

// Unwrap returns the kernel's errno.
func (e *RouteError) Unwrap() error { return e.Err }
