package observe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// From include/uapi/linux/inet_diag.h.
const (
	sockDiagByFamily = 20         // SOCK_DIAG_BY_FAMILY
	reqLen           = 56         // struct inet_diag_req_v2
	msgLen           = 72         // struct inet_diag_msg
	noCookie         = ^uint32(0) // INET_DIAG_NOCOOKIE
	attrV6Only       = 11         // INET_DIAG_SKV6ONLY
	attrShutdown     = 8          // INET_DIAG_SHUTDOWN
	linuxSynRecv     = 3          // TCP_SYN_RECV
	linuxListen      = 10         // TCP_LISTEN
	allStates        = 0xffffffff
)

// A Diag asks one network namespace's kernel about its TCP sockets over one
// NETLINK_SOCK_DIAG socket. It is safe for concurrent use.
type Diag struct {
	c  *netlink.Conn
	ns string // the namespace's name ("" for ours)
}

// Open returns a Diag for the named network namespace ("" for the current
// one), as `ip netns` names them.
func Open(netnsName string) (*Diag, error) {
	cfg := &netlink.Config{}
	if netnsName != "" {
		ns, err := netns.GetFromName(netnsName)
		if err != nil {
			return nil, fmt.Errorf("observe: network namespace %q: %w", netnsName, err)
		}
		defer ns.Close()
		cfg.NetNS = int(ns)
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, cfg)
	if err != nil {
		return nil, fmt.Errorf("observe: sock_diag in %q: %w", netnsName, err)
	}
	return &Diag{c: c, ns: netnsName}, nil
}

// sockID is struct inet_diag_sockid.
type sockID struct {
	sport, dport uint16
	src, dst     netip.Addr
	ifindex      uint32
}

// request builds an inet_diag_req_v2.
func request(family uint8, states uint32, id sockID) []byte {
	b := make([]byte, reqLen)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], states)
	binary.BigEndian.PutUint16(b[8:], id.sport)
	binary.BigEndian.PutUint16(b[10:], id.dport)
	putAddr(b[12:28], id.src)
	putAddr(b[28:44], id.dst)
	binary.NativeEndian.PutUint32(b[44:], id.ifindex)
	binary.NativeEndian.PutUint32(b[48:], noCookie)
	binary.NativeEndian.PutUint32(b[52:], noCookie)
	return b
}

func putAddr(b []byte, a netip.Addr) {
	if !a.IsValid() {
		return
	}
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// diagMsg is the part of struct inet_diag_msg tcpshake reads, with the
// INET_DIAG_SKV6ONLY attribute.
type diagMsg struct {
	family, state uint8
	id            sockID
	v6only        bool
	hasV6only     bool
	// hasShutdown: INET_DIAG_SHUTDOWN came, as it does for every full socket;
	// a request socket's answer (inet_req_diag_fill) has no attributes.
	hasShutdown bool
}

func parseMsg(b []byte) (diagMsg, error) {
	if len(b) < msgLen {
		return diagMsg{}, fmt.Errorf("inet_diag_msg of %d bytes, want %d", len(b), msgLen)
	}
	m := diagMsg{family: b[0], state: b[1]}
	m.id.sport = binary.BigEndian.Uint16(b[4:])
	m.id.dport = binary.BigEndian.Uint16(b[6:])
	if m.family == unix.AF_INET6 {
		m.id.src = netip.AddrFrom16([16]byte(b[8:24]))
		m.id.dst = netip.AddrFrom16([16]byte(b[24:40]))
	} else {
		m.id.src = netip.AddrFrom4([4]byte(b[8:12]))
		m.id.dst = netip.AddrFrom4([4]byte(b[24:28]))
	}
	m.id.ifindex = binary.NativeEndian.Uint32(b[40:])
	if len(b) > msgLen {
		ad, err := netlink.NewAttributeDecoder(b[msgLen:])
		if err != nil {
			return m, fmt.Errorf("inet_diag attributes: %w", err)
		}
		for ad.Next() {
			switch ad.Type() {
			case attrV6Only:
				m.hasV6only, m.v6only = true, ad.Uint8() != 0
			case attrShutdown:
				m.hasShutdown = true
			}
		}
		if err := ad.Err(); err != nil {
			return m, fmt.Errorf("inet_diag attributes: %w", err)
		}
	}
	return m, nil
}

// Get asks the kernel for the one socket whose local end is local and remote
// end is remote (as that socket's owner sees them): an exact inet_diag
// request (no dump), answered from the kernel's connection hash, so it costs
// the same whatever else the namespace holds. IPv4 connections of dual-stack
// listeners (AF_INET6 sockets with v4-mapped addresses) share that hash and
// are found by the AF_INET request. The Reading's Err equals the error.
func (d *Diag) Get(local, remote netip.AddrPort) (Reading, error) {
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	if la.Is4() != ra.Is4() {
		err := fmt.Errorf("observe: get %v -> %v: mixed address families", local, remote)
		return Reading{At: time.Now(), Err: err}, err
	}
	family := uint8(unix.AF_INET6)
	if la.Is4() {
		family = unix.AF_INET
	}
	msgs, err := d.c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request},
		Data:   request(family, allStates, sockID{sport: local.Port(), dport: remote.Port(), src: la, dst: ra}),
	})
	at := time.Now()
	if errors.Is(err, unix.ENOENT) {
		return Reading{At: at}, nil
	}
	if err != nil {
		err = fmt.Errorf("observe: sock_diag get %v -> %v: %w", local, remote, err)
		return Reading{At: at, Err: err}, err
	}
	for _, m := range msgs {
		dm, err := parseMsg(m.Data)
		if err != nil {
			err = fmt.Errorf("observe: sock_diag get %v -> %v: %w", local, remote, err)
			return Reading{At: at, Err: err}, err
		}
		// With no connection for the 4-tuple the kernel's lookup falls back
		// to the listener that would take it: that is no socket of ours.
		if dm.id.sport != local.Port() || dm.id.dport != remote.Port() ||
			dm.id.src.Unmap() != la || dm.id.dst.Unmap() != ra {
			continue
		}
		r := FromLinux(dm.state, at)
		// The kernel reports a request socket (TCP_NEW_SYN_RECV) as
		// TCP_SYN_RECV; only the missing attributes tell it from a full
		// socket in SYN-RECEIVED.
		if dm.state == linuxSynRecv && !dm.hasShutdown {
			r.Request = true
		}
		return r, r.Err
	}
	return Reading{At: at}, nil
}

// State returns the RFC name of the state of the socket whose local end is
// local and remote end is remote (as that socket's owner sees them), or
// [None] when there is none. It is [Diag.Get] by name.
func (d *Diag) State(local, remote netip.AddrPort) (string, error) {
	r, err := d.Get(local, remote)
	if err != nil {
		return "", err
	}
	return r.State.String(), nil
}

// Listening reports whether a listening socket would take a connection to
// local: one bound to local's address or to the wildcard address of a family
// that reaches it. An IPv4 listener (AF_INET, 0.0.0.0 or a specific address)
// takes only IPv4; an IPv6 listener on [::] takes IPv6, and IPv4 too unless it
// is IPV6_V6ONLY (the kernel's INET_DIAG_SKV6ONLY); one bound to a specific
// address (or to a v4-mapped one) takes only that address. Listeners bound to
// a device (SO_BINDTODEVICE) are counted like the others.
func (d *Diag) Listening(local netip.AddrPort) (bool, error) {
	want := local.Addr().Unmap()
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if family == unix.AF_INET && !want.Is4() {
			continue
		}
		msgs, err := d.c.Execute(netlink.Message{
			Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
			Data:   request(family, 1<<linuxListen, sockID{sport: local.Port()}),
		})
		if err != nil {
			return false, fmt.Errorf("observe: sock_diag listeners on port %d: %w", local.Port(), err)
		}
		for _, m := range msgs {
			dm, err := parseMsg(m.Data)
			if err != nil {
				return false, fmt.Errorf("observe: sock_diag listeners on port %d: %w", local.Port(), err)
			}
			if dm.state != linuxListen || dm.id.sport != local.Port() {
				continue
			}
			ok, err := takes(dm, want)
			if err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}

// takes reports whether the listener dm accepts connections to want.
func takes(dm diagMsg, want netip.Addr) (bool, error) {
	bound := dm.id.src
	if dm.family == unix.AF_INET {
		return want.Is4() && (bound.IsUnspecified() || bound == want), nil
	}
	if want.Is6() {
		return bound.IsUnspecified() || bound == want, nil
	}
	switch {
	case bound.Is4In6():
		return bound.Unmap() == want, nil
	case !bound.IsUnspecified():
		return false, nil
	case !dm.hasV6only:
		return false, fmt.Errorf("observe: the kernel does not say whether the listener on [::]:%d is IPV6_V6ONLY (no INET_DIAG_SKV6ONLY), so whether it takes IPv4 is undecided", dm.id.sport)
	}
	return !dm.v6only, nil
}

// Close releases the netlink socket.
func (d *Diag) Close() error {
	if err := d.c.Close(); err != nil {
		return fmt.Errorf("observe: close sock_diag: %w", err)
	}
	return nil
}
