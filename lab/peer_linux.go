package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"tcpshake/lab/lwip"
)

// DaemonCommand returns the command that serves the lab with its peer, for StartDaemon: for PeerLinux, self
// (this program) with "lab serve"; for PeerLWIP, the lwIP peer program, compiled into PeerCacheDir first when
// missing or stale (see package lab/lwip).
func (l Lab) DaemonCommand(ctx context.Context, self string) ([]string, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	if l.peer() == PeerLinux {
		return []string{self, "lab", "serve", "--name", l.Name}, nil
	}
	bin, err := lwip.Build(ctx, PeerCacheDir())
	if err != nil {
		return nil, fmt.Errorf("lab: peer %s: %w", l.peer(), err)
	}
	return []string{bin,
		"--netns", nsPath(l.ServerNS),
		"--tap", peerTap,
		"--v4", netip.PrefixFrom(l.ServerV4, prefixV4).String(),
		"--v6", l.ServerV6.String(),
		"--hold-ms", strconv.FormatInt(l.holdAfterEOF().Milliseconds(), 10),
		"--idle-ms", strconv.FormatInt(l.idleTimeout().Milliseconds(), 10),
	}, nil
}

// runningPeer tells which peer an existing server namespace is set up for: PeerLWIP when it holds the peer's TAP
// device, PeerLinux otherwise.
func (l Lab) runningPeer() (string, error) {
	p := PeerLinux
	err := inNS(l.ServerNS, func() error {
		_, err := netlink.LinkByName(peerTap)
		if err == nil {
			p = PeerLWIP
			return nil
		}
		if isLinkNotFound(err) {
			return nil
		}
		return fmt.Errorf("find %s in %s: %w", peerTap, l.ServerNS, err)
	})
	return p, err
}

// checkPeerSwitch refuses to bring up an existing lab with another peer than the one it is set up for.
func (l Lab) checkPeerSwitch() error {
	if ok, _ := nsExists(l.ServerNS); !ok {
		return nil
	}
	running, err := l.runningPeer()
	if err != nil {
		return err
	}
	if running == l.peer() {
		return nil
	}
	// A server namespace without links (a partial lab) can take either peer.
	var links int
	err = inNS(l.ServerNS, func() error {
		ls, err := netlink.LinkList()
		links = len(ls)
		return err
	})
	if err != nil {
		return fmt.Errorf("list links in %s: %w", l.ServerNS, err)
	}
	if running == PeerLinux && links <= 1 {
		return nil
	}
	return fmt.Errorf("lab %s is set up for the %s peer, not %s: take it down first (lab down --name %s)",
		l.Name, running, l.peer(), l.Name)
}

// quietPeerNS turns IPv6 off for the server namespace's own stack when the lwip peer serves it: the kernel there
// must neither hold nor answer for any address of the lab link (no link-local address, no neighbour discovery);
// frames are still bridged.
func (l Lab) quietPeerNS() error {
	if l.peer() != PeerLWIP {
		return nil
	}
	return inNS(l.ServerNS, func() error {
		for _, key := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
			if err := os.WriteFile("/proc/sys/"+key, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", key, err)
			}
		}
		return nil
	})
}

// ensurePeerLinks, for the lwip peer, creates the bridge and the persistent TAP device in the server namespace,
// makes the server's veth end and the TAP its ports, removes any lab address from the server's kernel and brings
// everything up.
func (l Lab) ensurePeerLinks() error {
	if l.peer() != PeerLWIP {
		return nil
	}
	return inNS(l.ServerNS, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink handle in %s: %w", l.ServerNS, err)
		}
		defer h.Close()
		br, err := h.LinkByName(peerBridge)
		if isLinkNotFound(err) {
			off := false
			err = h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: peerBridge}, MulticastSnooping: &off})
			if err != nil {
				return fmt.Errorf("create bridge %s in %s: %w", peerBridge, l.ServerNS, err)
			}
			br, err = h.LinkByName(peerBridge)
		}
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", peerBridge, l.ServerNS, err)
		}
		tap, err := h.LinkByName(peerTap)
		if isLinkNotFound(err) {
			// Persistent (it outlives the peer program, which attaches to it), no packet-information header.
			err = h.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: peerTap}, Mode: netlink.TUNTAP_MODE_TAP,
				Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE})
			if err != nil {
				return fmt.Errorf("create TAP %s in %s: %w", peerTap, l.ServerNS, err)
			}
			tap, err = h.LinkByName(peerTap)
		}
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", peerTap, l.ServerNS, err)
		}
		veth, err := h.LinkByName(l.ServerIf)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", l.ServerIf, l.ServerNS, err)
		}
		for _, port := range []netlink.Link{veth, tap} {
			if port.Attrs().MasterIndex != br.Attrs().Index {
				if err := h.LinkSetMaster(port, br); err != nil {
					return fmt.Errorf("make %s a port of %s in %s: %w", port.Attrs().Name, peerBridge, l.ServerNS, err)
				}
			}
		}
		for _, link := range []netlink.Link{br, veth, tap} {
			if err := removeLabAddrs(h, link); err != nil {
				return fmt.Errorf("%s in %s: %w", link.Attrs().Name, l.ServerNS, err)
			}
			if err := h.LinkSetUp(link); err != nil {
				return fmt.Errorf("set %s up in %s: %w", link.Attrs().Name, l.ServerNS, err)
			}
		}
		return nil
	})
}

// removeLabAddrs deletes every address of the lab ranges from link.
func removeLabAddrs(h *netlink.Handle, link netlink.Link) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !inLabRange(ip.Unmap()) {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("delete address %v: %w", a.IPNet, err)
		}
	}
	return nil
}

// peerLinksMissing describes, for the lwip peer, what is wrong with the bridge, the TAP (whose carrier is up only
// while the peer program holds it open) and the server namespace's addresses, or nothing.
func (l Lab) peerLinksMissing() ([]string, error) {
	var missing []string
	err := inNS(l.ServerNS, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink handle in %s: %w", l.ServerNS, err)
		}
		defer h.Close()
		br, err := h.LinkByName(peerBridge)
		if isLinkNotFound(err) {
			missing = append(missing, fmt.Sprintf("bridge %s in %s", peerBridge, l.ServerNS))
		} else if err != nil {
			return fmt.Errorf("find %s in %s: %w", peerBridge, l.ServerNS, err)
		}
		for _, name := range []string{l.ServerIf, peerTap} {
			link, err := h.LinkByName(name)
			if isLinkNotFound(err) {
				missing = append(missing, fmt.Sprintf("link %s in %s", name, l.ServerNS))
				continue
			}
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", name, l.ServerNS, err)
			}
			if br != nil && link.Attrs().MasterIndex != br.Attrs().Index {
				missing = append(missing, fmt.Sprintf("%s as a port of %s in %s", name, peerBridge, l.ServerNS))
			}
			if link.Attrs().OperState != netlink.OperUp {
				what := fmt.Sprintf("link %s in %s is %s, not up", name, l.ServerNS, link.Attrs().OperState)
				if name == peerTap {
					what += " (no lwip peer attached)"
				}
				missing = append(missing, what)
			}
		}
		links, err := h.LinkList()
		if err != nil {
			return fmt.Errorf("list links in %s: %w", l.ServerNS, err)
		}
		for _, link := range links {
			addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
			if err != nil {
				return fmt.Errorf("list addresses of %s in %s: %w", link.Attrs().Name, l.ServerNS, err)
			}
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP); ok && inLabRange(ip.Unmap()) {
					missing = append(missing, fmt.Sprintf("no lab address in %s (%s has %v)", l.ServerNS,
						link.Attrs().Name, a.IPNet))
				}
			}
		}
		return nil
	})
	return missing, err
}

// peerAnswers reports whether the lwip peer answers on the lab link: its log has the ready line after logStart,
// and a connection from the client namespace to the closed port is refused (lwIP's RST) over IPv4 and IPv6. The
// refused connections leave no state on either side.
func (l Lab) peerAnswers(ctx context.Context, logStart int64) (bool, error) {
	b, err := os.ReadFile(l.LogFile())
	if err != nil || int64(len(b)) < logStart || !strings.Contains(string(b[logStart:]), lwip.ReadyLine) {
		return false, nil
	}
	for _, a := range []netip.Addr{l.ServerV4, l.ServerV6} {
		dctx, cancel := context.WithTimeout(ctx, peerDialTimeout)
		c, err := l.Dial(dctx, "tcp", netip.AddrPortFrom(a, PortClosed).String())
		cancel()
		if err == nil {
			c.Close()
			return false, fmt.Errorf("the lwip peer accepted a connection on the closed port %d", PortClosed)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return false, nil
		}
	}
	return true, nil
}

// peerDialTimeout bounds one readiness connection attempt to the lwip peer.
const peerDialTimeout = 500 * time.Millisecond
