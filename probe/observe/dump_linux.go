package observe

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// OpenPath returns a Diag for the network namespace of a namespace file,
// e.g. /proc/PID/ns/net, for namespaces that have no name under /run/netns.
func OpenPath(path string) (*Diag, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("observe: network namespace %s: %w", path, err)
	}
	defer ns.Close()
	fd := int(ns)
	if fd == 0 {
		// netlink.Config takes NetNS 0 for "this namespace": a namespace
		// file opened as fd 0 (stdin closed, as under go test) must move.
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return nil, fmt.Errorf("observe: network namespace %s: %w", path, err)
		}
		defer unix.Close(dup)
		fd = dup
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: fd})
	if err != nil {
		return nil, fmt.Errorf("observe: sock_diag in %s: %w", path, err)
	}
	return &Diag{c: c, ns: path}, nil
}

// Sockets dumps the namespace's TCP sockets (IPv4 and IPv6) whose Linux state
// is in the mask states, as ss -tan does: full, timewait and request sockets.
func (d *Diag) Sockets(states uint32) ([]Socket, error) {
	var out []Socket
	seen := map[[2]netip.AddrPort]bool{}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		msgs, err := d.c.Execute(netlink.Message{
			Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
			Data:   request(family, states, sockID{}),
		})
		if err != nil {
			if family == unix.AF_INET6 && errors.Is(err, unix.ENOENT) {
				continue // no IPv6 in this kernel
			}
			return nil, fmt.Errorf("observe: sock_diag dump: %w", err)
		}
		for _, m := range msgs {
			dm, err := parseMsg(m.Data)
			if err != nil {
				return nil, fmt.Errorf("observe: sock_diag dump: %w", err)
			}
			s := Socket{
				Local:  netip.AddrPortFrom(dm.id.src.Unmap(), dm.id.sport),
				Remote: netip.AddrPortFrom(dm.id.dst.Unmap(), dm.id.dport),
				Linux:  dm.state,
				// As in Get: a request socket's answer has no attributes.
				Request: dm.state == linuxSynRecv && !dm.hasShutdown,
			}
			k := [2]netip.AddrPort{s.Local, s.Remote}
			if s.Linux != linuxListen && seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, s)
		}
	}
	return out, nil
}
