//go:build !linux

package app

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
)

// reservePort is only implemented on Linux.
func reservePort(src netip.Addr, port uint16) (uint16, func() error, error) {
	return 0, nil, fmt.Errorf("reserving a port is not implemented on %s", runtime.GOOS)
}

// isTerminal is only implemented on Linux.
func isTerminal(w io.Writer) bool { return false }
