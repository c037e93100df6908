//go:build !linux

package capture

import (
	"fmt"
	"net/netip"
	"runtime"
)

var errNotLinux = fmt.Errorf("capture: raw packet capture is not implemented on %s", runtime.GOOS)

// PacketSource is only implemented on Linux.
type PacketSource struct{}

// OpenPacketSource returns an error on this system.
func OpenPacketSource(ifindex int, peer netip.Addr) (*PacketSource, error) { return nil, errNotLinux }

// Read returns an error on this system.
func (s *PacketSource) Read(f *Frame) error { return errNotLinux }

// Close does nothing on this system.
func (s *PacketSource) Close() error { return nil }

// RawSender is only implemented on Linux.
type RawSender struct{}

// OpenRawSender returns an error on this system.
func OpenRawSender(v6 bool, iface string, mark uint32) (*RawSender, error) { return nil, errNotLinux }

// Send returns an error on this system.
func (s *RawSender) Send(pkt []byte, dst netip.Addr) error { return errNotLinux }

// Close does nothing on this system.
func (s *RawSender) Close() error { return nil }

// Lookup returns an error on this system.
func Lookup(dst netip.Addr, iface string, src netip.Addr) (Route, error) { return Route{}, errNotLinux }

// CheckRoute returns err unchanged on this system.
func CheckRoute(dst netip.Addr, err error) error { return err }

// ScanSocket is only implemented on Linux.
type ScanSocket struct{}

// OpenScanSocket returns an error on this system.
func OpenScanSocket(ifindex int, sport uint16, rcvbuf, batch int) (*ScanSocket, error) {
	return nil, errNotLinux
}

// RecvBuf returns 0 on this system.
func (s *ScanSocket) RecvBuf() int { return 0 }

// ReadBatch returns an error on this system.
func (s *ScanSocket) ReadBatch(frames []Frame) (int, error) { return 0, errNotLinux }

// Stats returns an error on this system.
func (s *ScanSocket) Stats() (ScanStats, error) { return ScanStats{}, errNotLinux }

// Close does nothing on this system.
func (s *ScanSocket) Close() error { return nil }

// SendBatch returns an error on this system.
func (s *RawSender) SendBatch(pkts [][]byte, dsts []netip.Addr) (int, error) { return 0, errNotLinux }

// NextHop is only looked up on Linux.
type NextHop struct {
	Addr      netip.Addr
	IfName    string
	State     string
	LinkState string
	LinkDown  bool
}

// Unresolved is always false on this system.
func (h NextHop) Unresolved() bool { return false }

// LookupNextHop returns an error on this system.
func LookupNextHop(dst netip.Addr) (NextHop, error) { return NextHop{}, errNotLinux }

// OutputChains returns an error on this system.
func OutputChains() ([]string, error) { return nil, errNotLinux }

// GSOSender is only implemented on Linux.
type GSOSender struct{}

// GSOMax is the most one GSO segment may hold.
const GSOMax = 0xffff

// OpenGSOSender returns an error on this system.
func OpenGSOSender(dst netip.Addr, ifindex int) (*GSOSender, error) { return nil, errNotLinux }

// SendGSO returns an error on this system.
func (s *GSOSender) SendGSO(pkt []byte, mss int) error { return errNotLinux }

// Close does nothing on this system.
func (s *GSOSender) Close() error { return nil }
