//go:build !linux

package lab

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

// errNotImplemented reports that labs need Linux network namespaces.
func errNotImplemented(op string) error {
	return fmt.Errorf("lab: %s: not implemented on %s (needs Linux network namespaces)", op, runtime.GOOS)
}

// Up is not implemented on this system.
func (l Lab) Up(ctx context.Context) error { return errNotImplemented("up") }

// Down is not implemented on this system.
func (l Lab) Down() error { return errNotImplemented("down") }

// Status is not implemented on this system.
func (l Lab) Status() (Status, error) { return Status{Name: l.Name}, errNotImplemented("status") }

// Serve is not implemented on this system.
func (l Lab) Serve(ctx context.Context, ready func()) error { return errNotImplemented("serve") }

// Dial is not implemented on this system.
func (l Lab) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errNotImplemented("dial")
}

// StartDaemon is not implemented on this system.
func (l Lab) StartDaemon(argv []string) (int, error) { return 0, errNotImplemented("start daemon") }

// SetLoss is not implemented on this system.
func (l Lab) SetLoss(percent int) error { return errNotImplemented("set loss") }

// Do is not implemented on this system.
func Do(ns string, fn func() error) error { return errNotImplemented("enter namespace") }

// SetSynCookies is not implemented on this system.
func (l Lab) SetSynCookies(mode int) error { return errNotImplemented("set syncookies") }

// SetTCPSysctl is not implemented on this system.
func (l Lab) SetTCPSysctl(name string, value int) error { return errNotImplemented("set " + name) }

// SynCookies is not implemented on this system.
func (l Lab) SynCookies() (int, error) { return 0, errNotImplemented("read syncookies") }

// Netstat is not implemented on this system.
func Netstat(ns string) (map[string]int64, error) { return nil, errNotImplemented("read netstat") }

// Flood is not implemented on this system.
func (l Lab) Flood(ctx context.Context, cfg FloodConfig) (FloodStats, error) {
	return FloodStats{}, errNotImplemented("flood")
}

// Forge is not implemented on this system.
func (l Lab) Forge(ctx context.Context, cfg ForgeConfig) (ForgeStats, error) {
	return ForgeStats{}, errNotImplemented("forge")
}

// DaemonCommand is not implemented on this system.
func (l Lab) DaemonCommand(ctx context.Context, self string) ([]string, error) {
	return nil, errNotImplemented("daemon command")
}

// LWIPSockets reads the lwip peer's TCP sockets (Linux only).
func (l Lab) LWIPSockets() ([]PeerSocket, error) { return nil, errNotImplemented("lwip sockets") }
