package probe

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ReservePort binds (without listening) a TCP socket to our address and
// port, so that our kernel hands the port to no other connection while
// tcpshake owns it. Port 0 picks a free one. A port that a socket of this
// host already uses (a connection, a listener, TIME-WAIT) is refused with an
// error that says so and wraps EADDRINUSE: segments from it would belong to
// that connection.
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
		return 0, nil, bindError(src, port, err)
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

// bindError explains why port could not be reserved.
func bindError(src netip.Addr, port uint16, err error) error {
	switch {
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("source port %d on %v is in use by another socket of this host (a connection, a listener or TIME-WAIT): choose another, or leave it out for a free one: %w", port, src, err)
	case errors.Is(err, unix.EACCES):
		return fmt.Errorf("source port %d on %v: ports below net.ipv4.ip_unprivileged_port_start (1024) need CAP_NET_BIND_SERVICE (%v)", port, src, err)
	}
	return fmt.Errorf("probe: reserve source port %d on %v: %w", port, src, err)
}
