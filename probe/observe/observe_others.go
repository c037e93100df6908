//go:build !linux

package observe

import (
	"fmt"
	"net/netip"
	"runtime"
)

// Diag is only implemented on Linux.
type Diag struct{}

// Open returns an error on this system.
func Open(netnsName string) (*Diag, error) {
	return nil, fmt.Errorf("observe: sock_diag is not implemented on %s", runtime.GOOS)
}

// State returns an error on this system.
func (d *Diag) State(local, remote netip.AddrPort) (string, error) {
	return "", fmt.Errorf("observe: sock_diag is not implemented on %s", runtime.GOOS)
}

// Listening returns an error on this system.
func (d *Diag) Listening(local netip.AddrPort) (bool, error) {
	return false, fmt.Errorf("observe: sock_diag is not implemented on %s", runtime.GOOS)
}

// Close does nothing on this system.
func (d *Diag) Close() error { return nil }
