//go:build !linux

package probe

import (
	"fmt"
	"net/netip"
	"runtime"
)

// ReservePort is only implemented on Linux.
func ReservePort(src netip.Addr, port uint16) (uint16, func() error, error) {
	return 0, nil, fmt.Errorf("probe: reserving a port is not implemented on %s", runtime.GOOS)
}
