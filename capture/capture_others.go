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
