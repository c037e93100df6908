package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Up creates whatever of the lab is missing: both namespaces with lo up, the veth pair, the addresses and the
// nftables table; with the lwip peer, the server's bridge and TAP device instead of its addresses. It is idempotent
// and does not start the server (see Serve, DaemonCommand and StartDaemon). A lab set up for one peer is not
// switched to another: Up says to take it down first.
func (l Lab) Up(ctx context.Context) error {
	if err := l.check(); err != nil {
		return err
	}
	if err := l.checkPeerSwitch(); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	for _, ns := range l.namespaces() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("lab: up: %w", err)
		}
		if err := createNS(ns); err != nil {
			return fmt.Errorf("lab: create namespace %s: %w", ns, err)
		}
		if err := quietIPv6(ns); err != nil {
			return fmt.Errorf("lab: configure namespace %s: %w", ns, err)
		}
	}
	if err := l.quietPeerNS(); err != nil {
		return fmt.Errorf("lab: configure namespace %s: %w", l.ServerNS, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	if err := l.ensureLinks(); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	if err := l.ensureBridge(); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	if err := l.ensurePeerLinks(); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	if err := l.waitOperUp(ctx); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	if err := l.ensureFirewall(); err != nil {
		return fmt.Errorf("lab: up: %w", err)
	}
	return nil
}

// quietIPv6 sets the IPv6 defaults for interfaces created later in ns: no duplicate address detection (so the
// link-local address is usable at once and the first connection does not wait for neighbour discovery) and no
// router solicitations (no stray packets in captures).
func quietIPv6(ns string) error {
	settings := []struct{ key, value string }{
		{"net/ipv6/conf/default/accept_dad", "0"},
		{"net/ipv6/conf/default/dad_transmits", "0"},
		{"net/ipv6/conf/default/accept_ra", "0"},
		{"net/ipv6/conf/default/router_solicitations", "0"},
	}
	return inNS(ns, func() error {
		for _, s := range settings {
			// /proc/sys/net shows the namespace of the thread that opens it.
			if err := os.WriteFile("/proc/sys/"+s.key, []byte(s.value), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", s.key, err)
			}
		}
		return nil
	})
}

// handles opens the namespaces and a netlink route handle in each; close releases all of them.
func (l Lab) handles() (client, server *netlink.Handle, serverNS netns.NsHandle, close func(), err error) {
	var closers []func()
	close = func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	open := func(name string) (*netlink.Handle, netns.NsHandle, error) {
		ns, err := openNS(name)
		if err != nil {
			return nil, ns, err
		}
		closers = append(closers, func() { ns.Close() })
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			return nil, ns, fmt.Errorf("netlink handle in %s: %w", name, err)
		}
		closers = append(closers, h.Close)
		return h, ns, nil
	}
	client, _, err = open(l.ClientNS)
	if err == nil {
		server, serverNS, err = open(l.ServerNS)
	}
	if err != nil {
		close()
		return nil, nil, netns.None(), func() {}, err
	}
	return client, server, serverNS, close, nil
}

// ensureLinks creates the veth pair inside the namespaces and gives both ends their addresses.
func (l Lab) ensureLinks() error {
	ch, sh, sns, closeAll, err := l.handles()
	if err != nil {
		return err
	}
	defer closeAll()

	if l.Forger {
		if err := l.ensureForgerPairs(ch, sh); err != nil {
			return err
		}
	} else if err := l.ensurePair(ch, sh, sns); err != nil {
		return err
	}

	ends := []struct {
		h      *netlink.Handle
		ns, If string
		addrs  []netip.Addr
	}{
		{ch, l.ClientNS, l.ClientIf, []netip.Addr{l.ClientV4, l.ClientV6}},
		{sh, l.ServerNS, l.ServerIf, l.serverKernelAddrs()},
	}
	for _, e := range ends {
		lo, err := e.h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo in %s: %w", e.ns, err)
		}
		if err := e.h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up in %s: %w", e.ns, err)
		}
		link, err := e.h.LinkByName(e.If)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", e.If, e.ns, err)
		}
		if link.Type() != "veth" {
			return fmt.Errorf("%s in %s is a %s link, not veth", e.If, e.ns, link.Type())
		}
		for _, a := range e.addrs {
			if err := e.h.AddrReplace(link, labAddr(a)); err != nil {
				return fmt.Errorf("add %v to %s in %s: %w", a, e.If, e.ns, err)
			}
		}
		if err := e.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up in %s: %w", e.If, e.ns, err)
		}
	}
	return nil
}

// serverKernelAddrs lists the addresses the server namespace's kernel holds: the server's, or none when the lwip
// peer holds them.
func (l Lab) serverKernelAddrs() []netip.Addr {
	if l.peer() == PeerLWIP {
		return nil
	}
	return append([]netip.Addr{l.ServerV4, l.ServerV6}, l.ScanAddrs()...)
}

// ensurePair creates the veth pair unless both ends exist. A lone end (left when one namespace was deleted and
// recreated, for instance) is deleted first.
func (l Lab) ensurePair(ch, sh *netlink.Handle, sns netns.NsHandle) error {
	cl, cerr := ch.LinkByName(l.ClientIf)
	sl, serr := sh.LinkByName(l.ServerIf)
	for _, err := range []error{cerr, serr} {
		if err != nil && !isLinkNotFound(err) {
			return fmt.Errorf("find veth: %w", err)
		}
	}
	if cerr == nil && serr == nil {
		return nil
	}
	for _, end := range []struct {
		h    *netlink.Handle
		link netlink.Link
		ns   string
	}{{ch, cl, l.ClientNS}, {sh, sl, l.ServerNS}} {
		if end.link == nil {
			continue
		}
		// The kernel may be removing it already, together with its dying peer namespace.
		if err := end.h.LinkDel(end.link); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete lone %s in %s: %w", end.link.Attrs().Name, end.ns, err)
		}
	}
	veth := &netlink.Veth{
		// A fixed index unlike the peer's (lo is 1, so the peer gets 2) makes carrier changes "urgent" for the
		// kernel's linkwatch, which otherwise brings the second end up to a second late; IPv6 neighbour discovery
		// would then lose its first solicitation and the first IPv6 connection would wait 1-2 s.
		LinkAttrs:     netlink.LinkAttrs{Name: l.ClientIf, Index: clientIfIndex},
		PeerName:      l.ServerIf,
		PeerNamespace: netlink.NsFd(int(sns)),
	}
	var err error
	for range 20 { // bounded: a lone end being removed by the kernel frees its name within milliseconds
		if err = ch.LinkAdd(veth); !errors.Is(err, unix.EEXIST) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("create veth pair %s/%s: %w", l.ClientIf, l.ServerIf, err)
	}
	return nil
}

// waitOperUp waits (at most linkUpTimeout) until both veth ends are operationally up.
func (l Lab) waitOperUp(ctx context.Context) error {
	ch, sh, _, closeAll, err := l.handles()
	if err != nil {
		return err
	}
	defer closeAll()
	deadline := time.Now().Add(linkUpTimeout)
	for {
		up := true
		for _, e := range []struct {
			h      *netlink.Handle
			ns, If string
		}{{ch, l.ClientNS, l.ClientIf}, {sh, l.ServerNS, l.ServerIf}} {
			link, err := e.h.LinkByName(e.If)
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", e.If, e.ns, err)
			}
			up = up && link.Attrs().OperState == netlink.OperUp
		}
		if up {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("veth pair not up after %v", linkUpTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// linkUpTimeout bounds the wait for the veth pair to come up.
const linkUpTimeout = 3 * time.Second

// clientIfIndex is the interface index of the client end of the veth pair.
const clientIfIndex = 10

// labAddr is a as an interface address with the lab prefix length; IPv6 skips duplicate address detection so the
// address is usable at once.
func labAddr(a netip.Addr) *netlink.Addr {
	bits, flags := prefixV4, 0
	if a.Is6() {
		bits, flags = prefixV6, unix.IFA_F_NODAD
	}
	return &netlink.Addr{
		IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())},
		Flags: flags,
	}
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// Down stops the lab daemon, deletes the nftables table, the veth pair and both namespaces. It tolerates any
// partial state and is idempotent.
func (l Lab) Down() error {
	if err := l.check(); err != nil {
		return err
	}
	var errs []error
	if err := l.stopDaemon(); err != nil {
		errs = append(errs, err)
	}
	// Delete what lives inside the namespaces explicitly: a process still holding a namespace (a shell from
	// `ip netns exec`, say) would otherwise keep the lab addresses alive in an unnamed namespace.
	if ok, _ := nsExists(l.ServerNS); ok {
		if err := l.removeFirewall(); err != nil {
			errs = append(errs, fmt.Errorf("delete nftables table: %w", err))
		}
	}
	if ok, _ := nsExists(l.ClientNS); ok {
		if err := l.removeVeth(); err != nil {
			errs = append(errs, err)
		}
	}
	// The forger namespace goes whether or not l.Forger is set: a lab brought up with a forger is taken down
	// by any Lab of its name.
	for _, ns := range []string{l.ClientNS, l.ServerNS, l.ForgerNS} {
		if ns == "" {
			continue
		}
		if err := removeNS(ns); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab: down: %w", err)
	}
	return nil
}

// removeVeth deletes the client end of the veth pair, which deletes the server end too; with a forger (whose
// namespace exists), the server end is deleted as well, since its peer is the forger's bridge port.
func (l Lab) removeVeth() error {
	if ok, _ := nsExists(l.ForgerNS); ok && l.ForgerNS != "" {
		if ok, _ := nsExists(l.ServerNS); ok {
			if err := deleteLink(l.ServerNS, l.ServerIf); err != nil {
				return err
			}
		}
	}
	return deleteLink(l.ClientNS, l.ClientIf)
}

// deleteLink deletes the link ifname in namespace ns; a missing one is fine.
func deleteLink(ns, ifname string) error {
	return inNS(ns, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink handle in %s: %w", ns, err)
		}
		defer h.Close()
		link, err := h.LinkByName(ifname)
		if isLinkNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", ifname, ns, err)
		}
		if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete %s in %s: %w", ifname, ns, err)
		}
		return nil
	})
}

// Status reports what of the lab exists: namespaces, link, firewall, daemon and listening sockets. Missing lists
// in words what Up (or Serve, for listeners) would still have to create.
func (l Lab) Status() (Status, error) {
	if err := l.check(); err != nil {
		return Status{}, err
	}
	s := Status{Name: l.Name}
	var err error
	if s.ClientNS, err = nsExists(l.ClientNS); err != nil {
		return s, fmt.Errorf("lab: status: %w", err)
	}
	if s.ServerNS, err = nsExists(l.ServerNS); err != nil {
		return s, fmt.Errorf("lab: status: %w", err)
	}
	for _, ns := range []struct {
		ok   bool
		name string
	}{{s.ClientNS, l.ClientNS}, {s.ServerNS, l.ServerNS}} {
		if !ns.ok {
			s.Missing = append(s.Missing, "namespace "+ns.name)
		}
	}
	if pid, ok := l.daemonPID(); ok {
		s.DaemonPID = pid
	}
	if !s.ServerNS {
		return s, nil
	}
	if l.Peer, err = l.runningPeer(); err != nil {
		return s, fmt.Errorf("lab: status: %w", err)
	}
	s.Peer = l.Peer
	if s.ClientNS {
		missing, err := l.linkMissing()
		if err != nil {
			return s, fmt.Errorf("lab: status: %w", err)
		}
		s.Link = len(missing) == 0
		s.Missing = append(s.Missing, missing...)
	} else {
		s.Missing = append(s.Missing, "veth pair "+l.ClientIf+"/"+l.ServerIf)
	}
	if l.peer() == PeerLWIP {
		missing, err := l.peerLinksMissing()
		if err != nil {
			return s, fmt.Errorf("lab: status: %w", err)
		}
		s.Missing = append(s.Missing, missing...)
	}
	if s.Firewall, s.LossPercent, err = l.firewallState(); err != nil {
		return s, fmt.Errorf("lab: status: %w", err)
	}
	if s.SynCookies, err = l.SynCookies(); err != nil {
		return s, fmt.Errorf("lab: status: %w", err)
	}
	if l.ForgerNS != "" {
		if s.ForgerNS, err = nsExists(l.ForgerNS); err != nil {
			return s, fmt.Errorf("lab: status: %w", err)
		}
	}
	if !s.Firewall {
		s.Missing = append(s.Missing, "nftables table "+l.fwFamilyName()+" "+tableName+" in "+l.ServerNS)
	}
	if l.peer() == PeerLWIP {
		if s.DaemonPID == 0 {
			s.Missing = append(s.Missing, "the lwip peer program (lab up --peer lwip starts it)")
		}
		return s, nil
	}
	socks, err := sockets(l.ServerNS)
	if err != nil {
		return s, fmt.Errorf("lab: status: %w", err)
	}
	for _, sk := range socks {
		if sk.State == tcpListen {
			s.Listening = append(s.Listening, sk.Local)
		}
	}
	slices.SortFunc(s.Listening, func(a, b netip.AddrPort) int { return a.Compare(b) })
	var notListening []string
	for _, a := range []netip.Addr{l.ServerV4, l.ServerV6} {
		for _, port := range services() {
			if !listensOn(s.Listening, a, port) {
				notListening = append(notListening, netip.AddrPortFrom(a, uint16(port)).String())
			}
		}
	}
	if !listensOn(s.Listening, netip.IPv4Unspecified(), PortV4Only) {
		notListening = append(notListening, netip.AddrPortFrom(netip.IPv4Unspecified(), PortV4Only).String())
	}
	if len(notListening) > 0 {
		s.Missing = append(s.Missing, "server listening on "+strings.Join(notListening, " "))
	}
	return s, nil
}

// listensOn reports whether a socket in ls accepts connections to a:port, directly or on a wildcard address.
func listensOn(ls []netip.AddrPort, a netip.Addr, port int) bool {
	for _, ap := range ls {
		if int(ap.Port()) != port {
			continue
		}
		if ap.Addr() == a || (ap.Addr().IsUnspecified() && ap.Addr().Is4() == a.Is4()) ||
			(ap.Addr() == netip.IPv6Unspecified()) {
			return true
		}
	}
	return false
}

// linkMissing describes what is wrong with the veth pair, or nothing.
func (l Lab) linkMissing() ([]string, error) {
	ch, sh, _, closeAll, err := l.handles()
	if err != nil {
		return nil, err
	}
	defer closeAll()
	var missing []string
	for _, e := range []struct {
		h      *netlink.Handle
		ns, If string
		addrs  []netip.Addr
	}{
		{ch, l.ClientNS, l.ClientIf, []netip.Addr{l.ClientV4, l.ClientV6}},
		{sh, l.ServerNS, l.ServerIf, l.serverKernelAddrs()},
	} {
		link, err := e.h.LinkByName(e.If)
		if isLinkNotFound(err) {
			missing = append(missing, fmt.Sprintf("link %s in %s", e.If, e.ns))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("find %s in %s: %w", e.If, e.ns, err)
		}
		if link.Attrs().OperState != netlink.OperUp {
			missing = append(missing, fmt.Sprintf("link %s in %s is %s, not up", e.If, e.ns, link.Attrs().OperState))
		}
		have, err := e.h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s in %s: %w", e.If, e.ns, err)
		}
		for _, a := range e.addrs {
			want := labAddr(a)
			found := slices.ContainsFunc(have, func(h netlink.Addr) bool {
				return h.IPNet.String() == want.IPNet.String() && h.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0
			})
			if !found {
				missing = append(missing, fmt.Sprintf("address %v on %s in %s", want.IPNet, e.If, e.ns))
			}
		}
	}
	return missing, nil
}
