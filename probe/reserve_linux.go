package probe

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ReservePort binds (without listening) a TCP socket to our address and
// port, so that our kernel hands the port to no other connection while
// tcpshake owns it. Port 0 picks a free one.
func ReservePort(src netip.Addr, port uint16) (uint16, func() error, error) {
	family := unix.AF_INET
	if src.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("probe: reserve port: %w", err)
	}
	var sa unix.Sockaddr
	if src.Is6() {
		sa = &unix.SockaddrInet6{Addr: src.As16(), Port: int(port)}
	} else {
		sa = &unix.SockaddrInet4{Addr: src.As4(), Port: int(port)}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return 0, nil, fmt.Errorf("probe: source port %d on %v: %w", port, src, err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return 0, nil, fmt.Errorf("probe: reserve port: %w", err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		port = uint16(a.Port)
	case *unix.SockaddrInet6:
		port = uint16(a.Port)
	}
	return port, func() error { return unix.Close(fd) }, nil
}
