//go:build !linux

package guard

import (
	"fmt"
	"net/netip"
	"runtime"
)

// Guard is the kernel-RST guard. It is only implemented on Linux.
type Guard struct{}

func errUnsupported(op string) error {
	return fmt.Errorf("guard: %s: not implemented on %s", op, runtime.GOOS)
}

// Open returns an error: the guard needs Linux nftables.
func Open() (*Guard, error) { return nil, errUnsupported("open") }

// Table returns the empty string: no table exists outside Linux.
func (g *Guard) Table() string { return "" }

// Block returns an error: the guard needs Linux nftables.
func (g *Guard) Block(local, remote netip.AddrPort) (Rule, error) {
	return Rule{}, errUnsupported("block")
}

// BlockPort returns an error: the guard needs Linux nftables.
func (g *Guard) BlockPort(local netip.AddrPort) (Rule, error) {
	return Rule{}, errUnsupported("block port")
}

// Unblock returns an error: the guard needs Linux nftables.
func (g *Guard) Unblock(r Rule) error { return errUnsupported("unblock") }

// UnblockLater returns an error: the guard needs Linux nftables.
func (g *Guard) UnblockLater(r Rule) error { return errUnsupported("unblock") }

// Flush does nothing on this system.
func (g *Guard) Flush() {}

// Dropped returns an error: the guard needs Linux nftables.
func (g *Guard) Dropped(r Rule) (uint64, error) { return 0, errUnsupported("dropped") }

// Close does nothing and returns nil, so deferred calls stay harmless.
func (g *Guard) Close() error { return nil }
