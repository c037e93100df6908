package capture

import (
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// A RawSender writes complete IPv4 or IPv6 packets to an IPPROTO_RAW socket:
// the kernel adds no header of its own and changes nothing but what routing
// needs.
type RawSender struct {
	fd int
	v6 bool
	// SendBatch's message headers and addresses, one set per concurrent
	// call.
	scratch sync.Pool
}

// OpenRawSender opens a raw socket for one address family. A non-empty iface
// binds it to that interface (SO_BINDTODEVICE). A non-zero mark is set as
// the socket mark (SO_MARK) when the process may (CAP_NET_ADMIN), so that
// firewall rules can tell our segments from the kernel's.
func OpenRawSender(v6 bool, iface string, mark uint32) (*RawSender, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("capture: open raw socket: %w", wrapPerm(err))
	}
	if iface != "" {
		if err := unix.BindToDevice(fd, iface); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("capture: bind raw socket to %s: %w", iface, err)
		}
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil && err != unix.EPERM {
			unix.Close(fd)
			return nil, fmt.Errorf("capture: mark raw socket: %w", err)
		}
	}
	return &RawSender{fd: fd, v6: v6}, nil
}

// Send writes pkt, a whole IP packet, towards dst.
func (s *RawSender) Send(pkt []byte, dst netip.Addr) error {
	var sa unix.Sockaddr
	if s.v6 {
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	} else {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	if err := unix.Sendto(s.fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("capture: send to %v: %w", dst, err)
	}
	return nil
}

// Close closes the socket.
func (s *RawSender) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}
