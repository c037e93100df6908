package observe

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A Diag asks one network namespace's kernel about its TCP sockets.
type Diag struct {
	h *netlink.Handle
}

// Open returns a Diag for the named network namespace ("" for the current
// one), as `ip netns` names them.
func Open(netnsName string) (*Diag, error) {
	if netnsName == "" {
		h, err := netlink.NewHandle(unix.NETLINK_INET_DIAG)
		if err != nil {
			return nil, fmt.Errorf("observe: sock_diag: %w", err)
		}
		return &Diag{h: h}, nil
	}
	ns, err := netns.GetFromName(netnsName)
	if err != nil {
		return nil, fmt.Errorf("observe: network namespace %q: %w", netnsName, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("observe: sock_diag in %q: %w", netnsName, err)
	}
	return &Diag{h: h}, nil
}

// State returns the RFC name of the state of the socket whose local end is
// local and remote end is remote (as that socket's owner sees them), or
// [None] when there is none. IPv4 connections of dual-stack listeners are
// found under AF_INET6 with mapped addresses, so both families are asked.
func (d *Diag) State(local, remote netip.AddrPort) (string, error) {
	families := []uint8{unix.AF_INET6}
	if local.Addr().Is4() {
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	for _, fam := range families {
		socks, err := d.h.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return "", fmt.Errorf("observe: sock_diag dump: %w", err)
		}
		for _, s := range socks {
			l, _ := netip.AddrFromSlice(s.ID.Source)
			r, _ := netip.AddrFromSlice(s.ID.Destination)
			if s.ID.SourcePort == local.Port() && s.ID.DestinationPort == remote.Port() &&
				l.Unmap() == local.Addr().Unmap() && r.Unmap() == remote.Addr().Unmap() {
				return StateName(s.State), nil
			}
		}
	}
	return None, nil
}

// Listening reports whether a socket listens on local's port (on local's
// address or on the wildcard address).
func (d *Diag) Listening(local netip.AddrPort) (bool, error) {
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := d.h.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return false, fmt.Errorf("observe: sock_diag dump: %w", err)
		}
		for _, s := range socks {
			l, _ := netip.AddrFromSlice(s.ID.Source)
			l = l.Unmap()
			if s.State == 10 && s.ID.SourcePort == local.Port() && (l.IsUnspecified() || l == local.Addr().Unmap()) {
				return true, nil
			}
		}
	}
	return false, nil
}

// Close releases the netlink socket.
func (d *Diag) Close() error {
	d.h.Close()
	return nil
}
