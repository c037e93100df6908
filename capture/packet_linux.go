package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"tcpshake/internal/lateclose"
)

// A PacketSource is an AF_PACKET socket on one interface that delivers the IP
// packets accepted by its kernel BPF filter, in both directions, with kernel
// timestamps.
type PacketSource struct {
	f    *os.File
	conn interface {
		Read(func(fd uintptr) bool) error
	}
	// Preallocated receive state: one recvmsg per Read, no allocation.
	buf  []byte
	oob  []byte
	sll  unix.RawSockaddrLinklayer
	iov  unix.Iovec
	msg  unix.Msghdr
	n    int
	err  error
	read func(fd uintptr) bool
}

// OpenPacketSource opens a packet socket on the interface with index ifindex
// that sees TCP to and from peer and ICMP (see [Filter]).
func OpenPacketSource(ifindex int, peer netip.Addr) (*PacketSource, error) {
	prog, err := Filter(peer)
	if err != nil {
		return nil, err
	}
	fd, err := filteredPacketSocket(prog)
	if err != nil {
		return nil, err
	}
	fail := func(op string, err error) (*PacketSource, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("capture: %s: %w", op, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
		return fail("set receive buffer", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind packet socket", err)
	}
	f := os.NewFile(uintptr(fd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture: packet socket: %w", err)
	}
	s := &PacketSource{f: f, conn: rc, buf: make([]byte, snapLen), oob: make([]byte, 128)}
	s.read = s.recv
	return s, nil
}

// filteredPacketSocket opens a non-blocking SOCK_DGRAM packet socket (data
// from the IP header on) with the filter prog attached and kernel
// timestamps on. Protocol 0 receives nothing until bind: the filter is
// attached first, so no unfiltered packet is ever queued.
func filteredPacketSocket(prog []bpf.RawInstruction) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("capture: open packet socket: %w", wrapPerm(err))
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("capture: attach filter: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("capture: enable timestamps: %w", err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recv is one non-blocking recvmsg; it reports false on EAGAIN so the runtime
// poller waits for the socket to become readable.
func (s *PacketSource) recv(fd uintptr) bool {
	s.iov.Base = &s.buf[0]
	s.iov.SetLen(len(s.buf))
	s.msg = unix.Msghdr{
		Name:    (*byte)(unsafe.Pointer(&s.sll)),
		Namelen: unix.SizeofSockaddrLinklayer,
		Iov:     &s.iov,
		Control: &s.oob[0],
	}
	s.msg.SetIovlen(1)
	s.msg.SetControllen(len(s.oob))
	n, _, errno := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&s.msg)), unix.MSG_TRUNC)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	s.n, s.err = int(n), nil
	if errno != 0 {
		s.err = errno
	}
	return true
}

// Read blocks until the next packet; f.Data aliases the source's buffer.
func (s *PacketSource) Read(f *Frame) error {
	for {
		if err := s.conn.Read(s.read); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return ErrClosed
			}
			return fmt.Errorf("capture: read: %w", err)
		}
		if s.err != nil {
			return fmt.Errorf("capture: recvmsg: %w", s.err)
		}
		switch s.sll.Pkttype {
		case unix.PACKET_HOST, unix.PACKET_OUTGOING:
		default:
			continue // broadcast, multicast, or for another host
		}
		n := s.n
		if n > len(s.buf) {
			n = len(s.buf)
		}
		f.Data = s.buf[:n]
		f.Outgoing = s.sll.Pkttype == unix.PACKET_OUTGOING
		f.Time = s.timestamp()
		return nil
	}
}

// timestamp finds SCM_TIMESTAMPNS among the control messages without
// allocating; it falls back to the clock if the kernel gave none.
func (s *PacketSource) timestamp() time.Time {
	return cmsgTimestamp(s.oob[:s.msg.Controllen])
}

// cmsgTimestamp finds SCM_TIMESTAMPNS among the control messages oob
// without allocating; it falls back to the clock if the kernel gave none.
func cmsgTimestamp(oob []byte) time.Time {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS &&
			int(h.Len) >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			return time.Unix(ts.Unix())
		}
		oob = oob[unix.CmsgSpace(int(h.Len)-unix.CmsgLen(0)):]
	}
	return time.Now()
}

// Close closes the socket and unblocks a pending Read. It is idempotent.
func (s *PacketSource) Close() error {
	if err := closeLate(s.f); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("capture: close: %w", err)
	}
	return nil
}

// closeLate closes f, a packet socket, with its last reference handed to
// the kernel's Unix garbage collector (internal/lateclose): the socket's
// release waits for an RCU grace period (6-24 ms measured), which would
// otherwise be spent in this close, and at exit in every run.
func closeLate(f *os.File) error { return lateclose.Close(f, f.Close) }

func wrapPerm(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (%w)", os.ErrPermission, err)
	}
	return err
}
