package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Linux TCP states as sock_diag reports them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpFinWait2    = 5
	tcpCloseWait   = 8
	tcpListen      = 10
)

// sock is one TCP socket seen by sock_diag.
type sock struct {
	Local, Remote netip.AddrPort
	State         uint8
}

// sockets lists the TCP sockets of both address families in the named namespace, without entering it.
func sockets(ns string) ([]sock, error) {
	h, err := openNS(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag handle in %s: %w", ns, err)
	}
	defer nh.Close()
	var out []sock
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		ss, err := nh.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("sock_diag in %s: %w", ns, err)
		}
		for _, s := range ss {
			out = append(out, sock{
				Local:  addrPort(s.ID.Source, s.ID.SourcePort),
				Remote: addrPort(s.ID.Destination, s.ID.DestinationPort),
				State:  s.State,
			})
		}
	}
	return out, nil
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}
