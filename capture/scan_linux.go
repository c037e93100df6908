package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A ScanSocket is an AF_PACKET socket that reads scan replies in batches
// (recvmmsg) with kernel timestamps, ignores what this host sends
// (PACKET_IGNORE_OUTGOING), and has a receive buffer sized by the caller so
// that nothing is dropped between the wire and the reader at the scan's rate.
type ScanSocket struct {
	f    *os.File
	conn interface {
		Read(func(fd uintptr) bool) error
	}
	fd    int
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	oobs  []byte
	sll   []unix.RawSockaddrLinklayer
	n     int
	err   error
	read  func(fd uintptr) bool
	mu    sync.Mutex
	stats ScanStats
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

const scanOOB = 64

// OpenScanSocket opens a scan socket on the interface ifindex (0: every
// interface) that accepts TCP to our port sport and ICMP errors (see
// [ScanFilter]), with a receive buffer of rcvbuf bytes (SO_RCVBUFFORCE,
// which needs CAP_NET_ADMIN; SO_RCVBUF, capped by net.core.rmem_max,
// otherwise). batch is the most packets one ReadBatch returns.
func OpenScanSocket(ifindex int, sport uint16, rcvbuf, batch int) (*ScanSocket, error) {
	raw, err := ScanFilter(sport)
	if err != nil {
		return nil, fmt.Errorf("capture: assemble scan filter: %w", err)
	}
	fd, err := filteredPacketSocket(raw)
	if err != nil {
		return nil, err
	}
	fail := func(op string, err error) (*ScanSocket, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("capture: %s: %w", op, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("ignore outgoing packets", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
			return fail("set receive buffer", err)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind packet socket", err)
	}
	// Counters start now: what the socket saw before bind is not ours.
	unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	f := os.NewFile(uintptr(fd), "scan")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture: packet socket: %w", err)
	}
	batch = max(batch, 1)
	s := &ScanSocket{f: f, conn: rc, fd: fd,
		hdrs: make([]mmsghdr, batch), iovs: make([]unix.Iovec, batch),
		oobs: make([]byte, batch*scanOOB), sll: make([]unix.RawSockaddrLinklayer, batch)}
	s.read = s.recv
	return s, nil
}

// RecvBuf is the receive buffer the kernel gave the socket.
func (s *ScanSocket) RecvBuf() int {
	v, _ := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	return v
}

func (s *ScanSocket) recv(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.n), 0, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	s.n, s.err = int(n), nil
	if errno != 0 {
		s.n, s.err = 0, errno
	}
	return true
}

// ReadBatch reads up to len(frames) packets (at most the batch size the
// socket was opened with). Each frame's Data must have capacity for a
// packet (256 bytes keep every header a scan reads); a longer packet is
// cut. A frame left empty held a packet for another host: skip it.
func (s *ScanSocket) ReadBatch(frames []Frame) (int, error) {
	want := min(len(frames), len(s.hdrs))
	for i := range want {
		d := frames[i].Data[:cap(frames[i].Data)]
		s.iovs[i].Base = &d[0]
		s.iovs[i].SetLen(len(d))
		h := &s.hdrs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&s.sll[i])), Namelen: unix.SizeofSockaddrLinklayer,
			Iov: &s.iovs[i], Control: &s.oobs[i*scanOOB]}
		h.SetIovlen(1)
		h.SetControllen(scanOOB)
	}
	s.n = want
	if err := s.conn.Read(s.read); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("capture: read: %w", err)
	}
	if s.err != nil {
		return 0, fmt.Errorf("capture: recvmmsg: %w", s.err)
	}
	for i := range s.n {
		d := frames[i].Data[:cap(frames[i].Data)]
		if s.sll[i].Pkttype != unix.PACKET_HOST {
			frames[i].Data = d[:0] // for another host, broadcast or multicast
			continue
		}
		frames[i].Data = d[:min(int(s.hdrs[i].len), len(d))]
		frames[i].Time = cmsgTimestamp(s.oobs[i*scanOOB : i*scanOOB+int(s.hdrs[i].hdr.Controllen)])
		frames[i].Outgoing = false
	}
	return s.n, nil
}

// Stats reads PACKET_STATISTICS (which the kernel resets on every read)
// and returns the totals since the socket was opened.
func (s *ScanSocket) Stats() (ScanStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := unix.GetsockoptTpacketStats(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return s.stats, fmt.Errorf("capture: read packet statistics: %w", err)
	}
	s.stats.Packets += uint64(st.Packets)
	s.stats.Drops += uint64(st.Drops)
	return s.stats, nil
}

// Close closes the socket and unblocks a pending ReadBatch. It is
// idempotent.
func (s *ScanSocket) Close() error {
	if err := closeLate(s.f); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("capture: close: %w", err)
	}
	return nil
}

// batchScratch is the message headers and addresses of one SendBatch.
type batchScratch struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	sa4  []unix.RawSockaddrInet4
	sa6  []unix.RawSockaddrInet6
}

// SendBatch sends pkts[i] to dsts[i] with sendmmsg. On an error it returns
// how many packets left before it; ENOBUFS (the device queue is full) is
// returned as is, for the caller to wait and resend the rest. It is safe
// for concurrent use: a scan sends from one thread per CPU.
func (s *RawSender) SendBatch(pkts [][]byte, dsts []netip.Addr) (int, error) {
	n := len(pkts)
	sc, _ := s.scratch.Get().(*batchScratch)
	if sc == nil || cap(sc.hdrs) < n {
		sc = &batchScratch{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n),
			sa4: make([]unix.RawSockaddrInet4, n), sa6: make([]unix.RawSockaddrInet6, n)}
	}
	defer s.scratch.Put(sc)
	for i, p := range pkts {
		sc.iovs[i].Base = &p[0]
		sc.iovs[i].SetLen(len(p))
		h := &sc.hdrs[i].hdr
		*h = unix.Msghdr{Iov: &sc.iovs[i]}
		h.SetIovlen(1)
		if s.v6 {
			sc.sa6[i] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dsts[i].As16()}
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(&sc.sa6[i])), unix.SizeofSockaddrInet6
		} else {
			sc.sa4[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dsts[i].As4()}
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(&sc.sa4[i])), unix.SizeofSockaddrInet4
		}
	}
	sent := 0
	for sent < n {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&sc.hdrs[sent])), uintptr(n-sent), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return sent, fmt.Errorf("capture: send to %v: %w", dsts[sent], errno)
		}
		sent += int(r)
	}
	return sent, nil
}
