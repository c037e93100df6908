package guard

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// TablePrefix starts the name of every guard table. The lab's own table,
// "tcpshake_lab", shares the prefix but not the shape: use [IsTable] to
// tell guard tables apart.
const TablePrefix = "tcpshake_"

// TableName returns a fresh guard table name for process pid:
// "tcpshake_<pid>_<8 hex digits>", the digits from crypto/rand. The pid
// tells a reader of "nft list ruleset" which process holds the table (in
// that process's PID namespace); the random part keeps the names of two
// processes apart that have the same pid in different PID namespaces but
// share one network namespace (containers, "unshare --pid"), and of two
// Guards of one process.
func TableName(pid int) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random table name: %w", err)
	}
	return TablePrefix + strconv.Itoa(pid) + "_" + hex.EncodeToString(b[:]), nil
}

// IsTable reports whether name has the shape of a guard table name (see
// [TableName]), so that tests and tools can find the tables tcpshake
// processes hold in a network namespace.
func IsTable(name string) bool {
	rest, ok := strings.CutPrefix(name, TablePrefix)
	if !ok {
		return false
	}
	pid, suffix, ok := strings.Cut(rest, "_")
	if !ok || len(suffix) != 8 || pid == "" {
		return false
	}
	if _, err := strconv.ParseUint(pid, 10, 31); err != nil {
		return false
	}
	for _, c := range suffix {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

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

// String returns the rule in the form "drop RST 127.0.0.1:1 > 127.0.0.1:2 (handle 4)",
// or "drop RST from port 127.0.0.1:80 (handle 5)" for a listening port.
func (r Rule) String() string {
	if !r.Remote.IsValid() {
		return fmt.Sprintf("drop RST from port %v (handle %d)", r.Local, r.Handle)
	}
	return fmt.Sprintf("drop RST %v > %v (handle %d)", r.Local, r.Remote, r.Handle)
}

// Hold blocks the local kernel's RSTs from local to remote (see Block) and
// returns the function that lifts the block again, shortly after (see
// UnblockLater): the shape a session's guard has (probe.Guard), so *Guard
// serves there without an adapter.
func (g *Guard) Hold(local, remote netip.AddrPort) (release func() error, err error) {
	r, err := g.Block(local, remote)
	if err != nil {
		return nil, err
	}
	return func() error { return g.UnblockLater(r) }, nil
}

// HoldPort blocks the local kernel's RSTs from local's port to anyone (see
// BlockPort) and returns the function that lifts the block again: what a
// listener (probe.Listen) holds while it accepts connections.
func (g *Guard) HoldPort(local netip.AddrPort) (release func() error, err error) {
	r, err := g.BlockPort(local)
	if err != nil {
		return nil, err
	}
	return func() error { return g.UnblockLater(r) }, nil
}
