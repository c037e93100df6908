package capture

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tcpshake/internal/lateclose"
)

// A GSOSender hands TCP segments larger than the MSS to the kernel in one
// write, as its own TCP hands large segments to a device (TSO/GSO): an
// AF_PACKET socket with a virtio-net header (PACKET_VNET_HDR) that asks for
// generic segmentation into MSS-sized segments and a partial checksum. The
// kernel cuts the segment only where the device cannot carry it whole; on
// veth it reaches the peer as one large segment, as the kernel's own do.
//
// The packets leave by the interface directly, to the neighbour's
// link-layer address: routing and the host's firewall (OUTPUT, POSTROUTING)
// do not see them. Only Ethernet interfaces with a resolved neighbour are
// supported.
type GSOSender struct {
	fd      int
	sa      unix.SockaddrLinklayer
	eth     [ethLen]byte
	v6      bool
	ifindex int
}

const (
	ethLen      = 14
	vnetHdrLen  = 10 // struct virtio_net_hdr
	vnetNeedCsm = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetTCPv4   = 1  // VIRTIO_NET_HDR_GSO_TCPV4
	vnetTCPv6   = 4  // VIRTIO_NET_HDR_GSO_TCPV6
	// GSOMax is the most a segment handed over at once may hold: an IPv4
	// or IPv6 payload length field's limit.
	GSOMax = 0xffff
)

// OpenGSOSender opens a GSO sender for packets to dst by the interface with
// index ifindex. It fails when the interface is not Ethernet or the next
// hop's link-layer address is not known (then the caller sends one MSS at a
// time through its raw socket).
func OpenGSOSender(dst netip.Addr, ifindex int) (*GSOSender, error) {
	link, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("capture: gso: interface %d: %w", ifindex, err)
	}
	a := link.Attrs()
	if a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
		return nil, fmt.Errorf("capture: gso: %s is not an Ethernet interface (%s)", a.Name, a.EncapType)
	}
	hop, err := nextHopMAC(dst, ifindex)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("capture: gso: open packet socket: %w", wrapPerm(err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("capture: gso: PACKET_VNET_HDR: %w", err)
	}
	s := &GSOSender{fd: fd, v6: dst.Is6(), ifindex: ifindex}
	proto := uint16(unix.ETH_P_IP)
	if s.v6 {
		proto = unix.ETH_P_IPV6
	}
	copy(s.eth[0:6], hop)
	copy(s.eth[6:12], a.HardwareAddr)
	binary.BigEndian.PutUint16(s.eth[12:], proto)
	s.sa = unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex}
	return s, nil
}

// nextHopMAC is the link-layer address packets to dst go to: the route's
// gateway's or dst's own, from the neighbour table.
func nextHopMAC(dst netip.Addr, ifindex int) (net.HardwareAddr, error) {
	hop := dst
	if routes, err := netlink.RouteGet(dst.AsSlice()); err == nil && len(routes) > 0 {
		if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok && routes[0].Gw != nil {
			hop = gw.Unmap()
		}
	}
	family := unix.AF_INET
	if hop.Is6() {
		family = unix.AF_INET6
	}
	ns, err := netlink.NeighList(ifindex, family)
	if err != nil {
		return nil, fmt.Errorf("capture: gso: neighbours: %w", err)
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == hop && len(n.HardwareAddr) == 6 &&
			n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			return n.HardwareAddr, nil
		}
	}
	return nil, fmt.Errorf("capture: gso: no link-layer address for %v yet", hop)
}

// SendGSO writes pkt, a whole IPv4 or IPv6 TCP packet without IP options
// or extension headers whose payload the kernel is to cut into segments of
// mss bytes. Its TCP checksum is replaced by the pseudo-header's partial
// sum, which segmentation completes for each segment.
func (s *GSOSender) SendGSO(pkt []byte, mss int) error {
	ipLen := ipv4Header
	typ := byte(vnetTCPv4)
	if s.v6 {
		ipLen, typ = ipv6Header, vnetTCPv6
	}
	if len(pkt) < ipLen+tcpHeader || len(pkt) > ipLen+GSOMax || mss <= 0 || mss > 0xffff {
		return fmt.Errorf("capture: gso: packet of %d bytes, segment size %d", len(pkt), mss)
	}
	if !s.v6 && pkt[0]&0x0f != 5 || s.v6 && pkt[6] != unix.IPPROTO_TCP {
		return fmt.Errorf("capture: gso: IP options or extension headers are not supported")
	}
	tcpHdr := int(pkt[ipLen+12]>>4) * 4
	var vnet [vnetHdrLen]byte
	vnet[0], vnet[1] = vnetNeedCsm, typ
	binary.NativeEndian.PutUint16(vnet[2:], uint16(ethLen+ipLen+tcpHdr))
	binary.NativeEndian.PutUint16(vnet[4:], uint16(mss))
	binary.NativeEndian.PutUint16(vnet[6:], uint16(ethLen+ipLen))
	binary.NativeEndian.PutUint16(vnet[8:], 16)
	// CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not
	// complemented (the kernel's __tcp_v4_send_check).
	tcp := pkt[ipLen:]
	binary.BigEndian.PutUint16(tcp[16:], pseudoSum(pkt, s.v6, len(tcp)))
	_, err := unix.SendmsgBuffers(s.fd, [][]byte{vnet[:], s.eth[:], pkt}, nil, &s.sa, 0)
	if err != nil {
		return fmt.Errorf("capture: gso: send %d bytes on interface %d: %w", len(pkt), s.ifindex, err)
	}
	return nil
}

// pseudoSum is the folded one's-complement sum of the TCP pseudo-header.
func pseudoSum(pkt []byte, v6 bool, tcpLen int) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	if v6 {
		add(pkt[8:40])
		sum += uint32(tcpLen>>16) + uint32(tcpLen&0xffff)
	} else {
		add(pkt[12:20])
		sum += uint32(tcpLen)
	}
	sum += unix.IPPROTO_TCP
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// Close closes the socket.
func (s *GSOSender) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := lateclose.CloseFD(s.fd) // a packet socket: see closeLate
	s.fd = -1
	return err
}
