//go:build !linux

package observe

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// Diag is only implemented on Linux.
type Diag struct{}

func errNotLinux() error {
	return fmt.Errorf("observe: sock_diag is not implemented on %s", runtime.GOOS)
}

// Open returns an error on this system.
func Open(netnsName string) (*Diag, error) { return nil, errNotLinux() }

// Get returns an error on this system.
func (d *Diag) Get(local, remote netip.AddrPort) (Reading, error) {
	err := errNotLinux()
	return Reading{At: time.Now(), Err: err}, err
}

// State returns an error on this system.
func (d *Diag) State(local, remote netip.AddrPort) (string, error) { return "", errNotLinux() }

// Listening returns an error on this system.
func (d *Diag) Listening(local netip.AddrPort) (bool, error) { return false, errNotLinux() }

// Close does nothing on this system.
func (d *Diag) Close() error { return nil }

// SynCookiesSent is not implemented on this system.
func (d *Diag) SynCookiesSent() (int64, error) { return 0, errNotLinux() }
