package lab

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Names inside the forger namespace: the bridge that is the lab link, and its two ports, the peers of the client's
// and the server's veth ends.
const (
	forgerBridge     = "lab0"
	forgerClientPort = "lab-c"
	forgerServerPort = "lab-s"
)

// serverIfIndex is the interface index of the server's veth end when a forger bridges the link (the client end
// keeps clientIfIndex); fixed and unlike the peers' for the reason given at clientIfIndex.
const serverIfIndex = 20

// ensureForgerPairs creates, unless both ends exist, one veth pair from the client and one from the server into
// the forger namespace. An end whose peer is not the forger's port (a direct pair from a lab brought up without a
// forger, or a lone end) is deleted first.
func (l Lab) ensureForgerPairs(ch, sh *netlink.Handle) error {
	fns, err := openNS(l.ForgerNS)
	if err != nil {
		return err
	}
	defer fns.Close()
	fh, err := netlink.NewHandleAt(fns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", l.ForgerNS, err)
	}
	defer fh.Close()
	for _, end := range []struct {
		h          *netlink.Handle
		ns, ifname string
		index      int
		port       string
	}{
		{ch, l.ClientNS, l.ClientIf, clientIfIndex, forgerClientPort},
		{sh, l.ServerNS, l.ServerIf, serverIfIndex, forgerServerPort},
	} {
		link, lerr := end.h.LinkByName(end.ifname)
		port, perr := fh.LinkByName(end.port)
		for _, err := range []error{lerr, perr} {
			if err != nil && !isLinkNotFound(err) {
				return fmt.Errorf("find veth: %w", err)
			}
		}
		if lerr == nil && perr == nil && pairedWith(link, port) {
			continue
		}
		if lerr == nil {
			if err := end.h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("delete %s in %s: %w", end.ifname, end.ns, err)
			}
		}
		if perr == nil {
			if err := fh.LinkDel(port); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("delete %s in %s: %w", end.port, l.ForgerNS, err)
			}
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: end.ifname, Index: end.index},
			PeerName:      end.port,
			PeerNamespace: netlink.NsFd(int(fns)),
		}
		var err error
		for range 20 { // bounded: a link being removed by the kernel frees its name within milliseconds
			if err = end.h.LinkAdd(veth); !errors.Is(err, unix.EEXIST) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("create veth pair %s (%s) / %s (%s): %w", end.ifname, end.ns, end.port, l.ForgerNS, err)
		}
	}
	return nil
}

// pairedWith reports whether veth end link has port as its peer (by the peer's interface index, which is all a
// veth tells about its peer across namespaces).
func pairedWith(link, port netlink.Link) bool {
	v, ok := link.(*netlink.Veth)
	if !ok {
		return false
	}
	peer, err := netlink.VethPeerIndex(v)
	return err == nil && peer == port.Attrs().Index
}

// ensureBridge, for a lab with a forger, creates the bridge in the forger namespace, makes both veth ports its
// ports and brings everything up. Without STP, ports forward as soon as they are up.
func (l Lab) ensureBridge() error {
	if !l.Forger {
		return nil
	}
	fns, err := openNS(l.ForgerNS)
	if err != nil {
		return err
	}
	defer fns.Close()
	h, err := netlink.NewHandleAt(fns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", l.ForgerNS, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", l.ForgerNS, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in %s: %w", l.ForgerNS, err)
	}
	br, err := h.LinkByName(forgerBridge)
	if isLinkNotFound(err) {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: forgerBridge}}); err != nil {
			return fmt.Errorf("create bridge %s in %s: %w", forgerBridge, l.ForgerNS, err)
		}
		br, err = h.LinkByName(forgerBridge)
	}
	if err != nil {
		return fmt.Errorf("find bridge %s in %s: %w", forgerBridge, l.ForgerNS, err)
	}
	for _, name := range []string{forgerClientPort, forgerServerPort} {
		port, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", name, l.ForgerNS, err)
		}
		if port.Attrs().MasterIndex != br.Attrs().Index {
			if err := h.LinkSetMaster(port, br); err != nil {
				return fmt.Errorf("add %s to bridge %s: %w", name, forgerBridge, err)
			}
		}
		if err := h.LinkSetUp(port); err != nil {
			return fmt.Errorf("set %s up in %s: %w", name, l.ForgerNS, err)
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge %s up in %s: %w", forgerBridge, l.ForgerNS, err)
	}
	return nil
}

// SetSynCookies sets net.ipv4.tcp_syncookies in the server namespace: 0 never sends SYN cookies, 1 (the kernel's
// default) sends them when the SYN queue overflows, 2 always, so every SYN-ACK carries a cookie and no request
// socket exists until the final ACK. The lab must be up.
func (l Lab) SetSynCookies(mode int) error {
	if mode < 0 || mode > 2 {
		return fmt.Errorf("lab: set syncookies: mode %d is not 0, 1 or 2", mode)
	}
	return l.SetTCPSysctl("tcp_syncookies", mode)
}

// isTCPSysctl reports whether net.ipv4.name is one of the Linux server's TCP settings SetTCPSysctl may change:
// the variants a stack engineer tries (SYN cookies; no timestamps, SACK or window scaling; ECN).
func isTCPSysctl(name string) bool {
	switch name {
	case "tcp_syncookies", "tcp_timestamps", "tcp_sack", "tcp_window_scaling", "tcp_ecn":
		return true
	}
	return false
}

// SetTCPSysctl sets net.ipv4.NAME to value in the server namespace, for the Linux peer; NAME is one of
// tcp_syncookies, tcp_timestamps, tcp_sack, tcp_window_scaling, tcp_ecn. The lab must be up.
func (l Lab) SetTCPSysctl(name string, value int) error {
	if err := l.check(); err != nil {
		return err
	}
	if !isTCPSysctl(name) {
		return fmt.Errorf("lab: set %s: not one of the lab's TCP settings", name)
	}
	if p, err := l.runningPeer(); err == nil && p == PeerLWIP || l.Peer == PeerLWIP {
		return fmt.Errorf("lab: set %s: lab %s is served by the lwip peer; net.ipv4.%s is the Linux peer's", name, l.Name, name)
	}
	err := inNS(l.ServerNS, func() error {
		// /proc/sys/net shows the namespace of the thread that opens it.
		return os.WriteFile("/proc/sys/net/ipv4/"+name, []byte(strconv.Itoa(value)), 0o644)
	})
	if err != nil {
		return fmt.Errorf("lab: set %s: %w", name, err)
	}
	return nil
}

// SynCookies reads net.ipv4.tcp_syncookies in the server namespace.
func (l Lab) SynCookies() (int, error) {
	if err := l.check(); err != nil {
		return 0, err
	}
	var mode int
	err := inNS(l.ServerNS, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syncookies")
		if err != nil {
			return err
		}
		mode, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("lab: read syncookies: %w", err)
	}
	return mode, nil
}

// Netstat reads the TCP extension counters (/proc/net/netstat, "TcpExt:" lines) of the named namespace, such as
// SyncookiesSent and SyncookiesRecv, so a test can check that the kernel did what the lab set up.
func Netstat(ns string) (map[string]int64, error) {
	var b []byte
	err := inNS(ns, func() error {
		// /proc/thread-self/net is the network namespace of this (locked) thread, not the process's.
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: read netstat in %s: %w", ns, err)
	}
	return parseNetstat(string(b), "TcpExt:")
}
