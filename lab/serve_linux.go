package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Serve opens the service listeners (tcp4 and tcp6 for each service port, and the IPv4-only echo on 0.0.0.0:85)
// inside the server namespace, calls ready
// (if not nil) once all are open, and serves from ordinary goroutines until ctx is done. It then closes the
// listeners and every connection, waits for them, and returns nil. It returns an error if a listener cannot be
// opened, for instance because another server already serves the lab.
func (l Lab) Serve(ctx context.Context, ready func()) error {
	if err := l.check(); err != nil {
		return err
	}
	var bs []binding
	err := inNS(l.ServerNS, func() error {
		for _, port := range services() {
			svc, _ := serviceFor(port)
			for _, a := range []netip.Addr{l.ServerV4, l.ServerV6} {
				network := "tcp6"
				if a.Is4() {
					network = "tcp4"
				}
				ln, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(port))))
				if err != nil {
					return fmt.Errorf("listen for %s: %w", svc, err)
				}
				bs = append(bs, binding{svc: svc, ln: ln})
			}
		}
		// The IPv4-only echo listens on the IPv4 wildcard only: an IPv6 SYN to the port finds no listener.
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4zero, Port: PortV4Only})
		if err != nil {
			return fmt.Errorf("listen for the IPv4-only echo: %w", err)
		}
		bs = append(bs, binding{svc: echoService, ln: ln})
		return nil
	})
	if err != nil {
		for _, b := range bs {
			b.ln.Close()
		}
		return fmt.Errorf("lab: serve: %w", err)
	}
	if ready != nil {
		ready()
	}
	newServer(l).run(ctx, bs)
	return nil
}

// Dial connects from inside the client namespace, as a program on the client host would. The socket is created
// there and may then be used from any goroutine.
func (l Lab) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	var c net.Conn
	err := inNS(l.ClientNS, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: dial %s from %s: %w", address, l.ClientNS, err)
	}
	return c, nil
}
