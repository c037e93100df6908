package guard

import (
	"fmt"
	"net/netip"
)

// Mark is the socket mark (SO_MARK) of tcpshake's own raw socket. The guard's
// rules let marked segments pass, so a reset tcpshake sends on purpose is not
// taken for one of the kernel's.
const Mark uint32 = 0x74637368 // "tcsh"

// Rule is one guarded 4-tuple: TCP segments with RST set from Local to Remote
// are dropped while the rule exists.
type Rule struct {
	// Local is the address and port the kernel's RST comes from.
	Local netip.AddrPort
	// Remote is the address and port the kernel's RST is sent to.
	Remote netip.AddrPort
	// Handle is the nftables rule handle the kernel assigned.
	Handle uint64
}

// String returns the rule in the form "drop RST 127.0.0.1:1 > 127.0.0.1:2 (handle 4)".
func (r Rule) String() string {
	return fmt.Sprintf("drop RST %v > %v (handle %d)", r.Local, r.Remote, r.Handle)
}

// Hold blocks the local kernel's RSTs from local to remote (see Block) and
// returns the function that lifts the block again: the shape a session's
// guard has (probe.Guard), so *Guard serves there without an adapter.
func (g *Guard) Hold(local, remote netip.AddrPort) (release func() error, err error) {
	r, err := g.Block(local, remote)
	if err != nil {
		return nil, err
	}
	return func() error { return g.Unblock(r) }, nil
}
