package analyze

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/ip6defrag"
	"github.com/gopacket/gopacket/layers"
)

// deep decodes, through gopacket's own layers, the frames the fast path (StripLink and craft.Parser) cannot read:
// other link types (PPP and every link type gopacket knows), PPPoE, MPLS and the tunnels (GRE, VXLAN, Geneve,
// GTPv1-U, IP-in-IP, IPv6-in-IPv4), IPv6 extension headers, and IPv4/IPv6 fragments, which it reassembles as
// tshark does by default (ip.defragment, ipv6.defragment). What it hands back is the innermost IP packet that
// carries TCP or ICMP, rebuilt as a plain IPv4 or IPv6 packet: its conversation is keyed by the inner 4-tuple, as
// tshark keys tcp.stream. It is the slow path: it allocates, and runs only for packets that need it.
type deep struct {
	d4      *ip4defrag.IPv4Defragmenter
	d6      *ip6defrag.IPv6Defragmenter
	layered map[string]uint64
}

// maxNesting bounds how many times one frame is decoded again after a reassembly (a fragmented tunnel inside a
// fragmented tunnel...): a crafted capture cannot make it loop.
const maxNesting = 4

// tunnelPorts are the UDP ports whose payload gopacket decodes as a tunnel (layers/ports.go): GTPv1-U, VXLAN,
// Geneve. tshark decodes the same ports by default.
func tunnelPort(p uint16) bool { return p == 2152 || p == 4789 || p == 6081 }

// needsDeep reports whether an IP packet that craft.Parser found to be neither TCP nor ICMP may still carry TCP:
// a fragment, an IPv6 extension header, IP-in-IP, GRE, MPLS-in-IP, or UDP to a tunnel port.
func needsDeep(ip []byte) bool {
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		hl := int(ip[0]&0x0f) * 4
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 { // MF or a fragment offset
			return true
		}
		return deepProto(ip[9], ip, hl)
	case len(ip) >= 40 && ip[0]>>4 == 6:
		switch nh := ip[6]; nh {
		case 0, 43, 44, 60, 135, 139, 140: // hop-by-hop, routing, fragment, destination options, mobility, HIP, shim6
			return true
		default:
			return deepProto(nh, ip, 40)
		}
	}
	return false
}

func deepProto(proto byte, ip []byte, hl int) bool {
	switch proto {
	case 4, 41, 47, 137: // IPv4, IPv6, GRE, MPLS in IP
		return true
	case 17:
		if len(ip) < hl+4 {
			return false
		}
		return tunnelPort(binary.BigEndian.Uint16(ip[hl:])) || tunnelPort(binary.BigEndian.Uint16(ip[hl+2:]))
	}
	return false
}

func newDeep() *deep {
	return &deep{d4: ip4defrag.NewIPv4Defragmenter(), d6: ip6defrag.NewIPv6Defragmenter(), layered: map[string]uint64{}}
}

// decode returns the innermost IP packet in data (first decoded by dec) that carries TCP or an ICMP message, or
// nil. notDecoded is set when gopacket could not decode a layer on the way (an unknown link type, an encapsulation
// it does not know, a malformed header): the caller warns about it. A fragment kept for reassembly returns nil and
// nothing; the packet comes out whole with its last fragment.
func (d *deep) decode(dec gopacket.Decoder, data []byte, t time.Time) (ip []byte, notDecoded string) {
	// The defragmenters keep the fragments' bytes and the reader reuses its buffer: work on a copy.
	data = append([]byte(nil), data...)
	for range maxNesting {
		p := gopacket.NewPacket(data, dec, gopacket.DecodeOptions{NoCopy: true})
		ip, again, why := d.walk(p, t)
		if again == nil {
			return ip, why
		}
		data, dec = again, layers.LayerTypeIPv4
		if again[0]>>4 == 6 {
			dec = layers.LayerTypeIPv6
		}
	}
	return nil, "nesting deeper than 4 reassemblies"
}

// walk looks through one decoded packet. It returns the IP packet carrying TCP/ICMP, or a reassembled packet to
// decode again, or the reason no layer could be decoded.
func (d *deep) walk(p gopacket.Packet, t time.Time) (ip, again []byte, notDecoded string) {
	var inner gopacket.Layer // the last IPv4/IPv6 layer met
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			inner = l
			if l.Flags&layers.IPv4MoreFragments != 0 || l.FragOffset != 0 {
				if len(l.Payload) < int(l.Length)-len(l.Contents) {
					// The snap length cut the fragment: tshark does not reassemble it (packet-ip.c checks that
					// its bytes exist) and dissects a first fragment's payload as it is; later ones are data.
					if l.FragOffset != 0 {
						return nil, nil, ""
					}
					b := append(append([]byte(nil), l.Contents...), l.Payload...)
					binary.BigEndian.PutUint16(b[6:], 0)
					return nil, b, ""
				}
				out, err := d.d4.DefragIPv4WithTimestamp(l, t)
				if err != nil || out == nil {
					return nil, nil, ""
				}
				return nil, rebuild4(l, out.Payload), ""
			}
		case *layers.IPv6:
			inner = l
		case *layers.IPv6Fragment:
			ip6, _ := inner.(*layers.IPv6)
			if ip6 == nil {
				return nil, nil, "IPv6 fragment header outside IPv6"
			}
			out := d.d6.DefragIPv6(ip6, l)
			if out == nil {
				return nil, nil, ""
			}
			return nil, rebuild6(ip6, out.NextHeader, out.Payload, len(out.Payload)), ""
		case *layers.TCP, *layers.ICMPv4, *layers.ICMPv6:
			return plainIP(inner, l), nil, ""
		case *gopacket.DecodeFailure:
			return nil, nil, failureName(l)
		}
	}
	if ls := p.Layers(); len(ls) > 0 {
		// GRE carrying WCCP (0x883e, Cisco's web cache redirect): a 4-byte redirect header, then IPv4. gopacket
		// stops at it; tshark decodes it.
		if g, ok := ls[len(ls)-1].(*layers.GRE); ok && g.Protocol == 0x883e && len(g.Payload) >= 24 && g.Payload[4]>>4 == 4 {
			return nil, append([]byte(nil), g.Payload[4:]...), ""
		}
	}
	return nil, nil, leftOver(p.Layers())
}

// leftOver names an encapsulation whose payload gopacket left undecoded without a failure (GRE with a protocol
// it does not know, say), or "" when the last layer is an end in itself (UDP data, ARP...).
func leftOver(ls []gopacket.Layer) string {
	if len(ls) == 0 {
		return ""
	}
	last := ls[len(ls)-1]
	if len(last.LayerPayload()) == 0 {
		return ""
	}
	switch l := last.(type) {
	case *layers.GRE:
		return fmt.Sprintf("GRE protocol 0x%04x", uint16(l.Protocol))
	case *layers.Ethernet:
		return fmt.Sprintf("EthernetType 0x%04x", uint16(l.EthernetType))
	case *layers.Dot1Q:
		return fmt.Sprintf("EthernetType 0x%04x (in 802.1Q)", uint16(l.Type))
	case *layers.MPLS, *layers.PPP, *layers.PPPoE, *layers.VXLAN, *layers.Geneve, *layers.GTPv1U, *layers.LinuxSLL,
		*layers.EtherIP, *layers.IPv4, *layers.IPv6:
		return last.LayerType().String() + " payload"
	}
	return ""
}

// incomplete is the number of IP packets whose fragments never all arrived; it forgets them.
func (d *deep) incomplete() int {
	far := time.Now().Add(100 * 365 * 24 * time.Hour) // later than every capture time and the clock
	return d.d4.DiscardOlderThan(far) + d.d6.DiscardOlderThan(far)
}

// plainIP rebuilds the IP layer in front of the transport layer tr as a plain IPv4 or IPv6 packet: IPv4 as it is,
// IPv6 without its extension headers (tshark's numbers do not depend on them).
func plainIP(inner, tr gopacket.Layer) []byte {
	tb := append(append([]byte(nil), tr.LayerContents()...), tr.LayerPayload()...)
	switch l := inner.(type) {
	case *layers.IPv4:
		b := append(append([]byte(nil), l.Contents...), tb...)
		// A header announcing more than the frame holds (a short snap length) keeps its length: uncut counts
		// the missing bytes as tshark does.
		if int(l.Length) > len(b) {
			binary.BigEndian.PutUint16(b[2:], l.Length)
		} else {
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		}
		return b
	case *layers.IPv6:
		nh := layers.IPProtocolTCP
		switch tr.(type) {
		case *layers.ICMPv6:
			nh = layers.IPProtocolICMPv6
		case *layers.ICMPv4:
			return nil // ICMPv4 inside IPv6 is no error about TCP
		}
		ext := len(l.Payload) - len(tb) // extension header bytes before the transport header
		return rebuild6(l, nh, tb, int(l.Length)-max(ext, 0))
	}
	return nil
}

// rebuild4 is the reassembled IPv4 packet: the last fragment's header with the fragment fields cleared.
func rebuild4(last *layers.IPv4, payload []byte) []byte {
	b := append(append([]byte(nil), last.Contents...), payload...)
	binary.BigEndian.PutUint16(b[2:], uint16(min(len(b), 0xffff)))
	binary.BigEndian.PutUint16(b[6:], 0)
	return b
}

// rebuild6 is a plain IPv6 packet with the fixed header of ip6, next header nh and the payload; plen is the
// payload length to announce (more than len(payload) when the capture cut it).
func rebuild6(ip6 *layers.IPv6, nh layers.IPProtocol, payload []byte, plen int) []byte {
	b := make([]byte, 40, 40+len(payload))
	copy(b, ip6.Contents[:min(40, len(ip6.Contents))])
	b[0] = b[0]&0x0f | 0x60
	b[6] = byte(nh)
	binary.BigEndian.PutUint16(b[4:], uint16(min(max(plen, len(payload)), 0xffff)))
	return append(b, payload...)
}

// failureName names what gopacket could not decode, e.g. "link type 147 (USER0)" or "EthernetType 0x88b5".
func failureName(f *gopacket.DecodeFailure) string {
	return f.Error().Error()
}

// linkKnown reports whether gopacket has a decoder for the link type.
func linkKnown(lt layers.LinkType) bool {
	return int(lt) < len(layers.LinkTypeMetadata) && layers.LinkTypeMetadata[lt].DecodeWith != nil
}

// linkTypeWords names a link type no decoder knows: "link type 147".
func linkTypeWords(lt layers.LinkType) string {
	return fmt.Sprintf("link type %d", int(lt))
}
