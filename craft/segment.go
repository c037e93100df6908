package craft

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// DefaultTTL is the IPv4 TTL and IPv6 hop limit of a marshalled segment whose TTL is 0; Linux uses the same.
const DefaultTTL = 64

// Header sizes in octets.
const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	tcpHeaderLen  = 20
)

// Segment is one TCP segment with the addresses and hop limit of the IP packet that carries it.
type Segment struct {
	Src, Dst netip.AddrPort // both IPv4 or both IPv6; IPv4-mapped IPv6 addresses count as IPv4
	Seq, Ack Seq
	Flags    Flags
	Window   uint16
	Urgent   uint16
	TTL      uint8  // IPv4 TTL or IPv6 hop limit; 0 means DefaultTTL when marshalling; set from the header when parsing
	ID       uint16 // IPv4 identification (ignored for IPv6)
	Options  Options
	Payload  []byte
}

// IPv6 reports whether the segment travels in IPv6, judged by its source address.
func (s *Segment) IPv6() bool {
	return s.Src.Addr().Is6() && !s.Src.Addr().Is4In6()
}

// Len returns SEG.LEN, the sequence space the segment occupies: the payload plus one for SYN and one for FIN
// (RFC 9293 §3.4).
func (s *Segment) Len() uint32 {
	n := uint32(len(s.Payload))
	if s.Flags.Has(SYN) {
		n++
	}
	if s.Flags.Has(FIN) {
		n++
	}
	return n
}

// End returns the sequence number just after the segment, Seq + Len(): what an ACK of all of it carries.
func (s *Segment) End() Seq {
	return s.Seq.Add(s.Len())
}

// addrs returns the segment's addresses unmapped, or an error when they are invalid or of mixed families.
func (s *Segment) addrs() (src, dst netip.Addr, err error) {
	src, dst = s.Src.Addr().Unmap(), s.Dst.Addr().Unmap()
	switch {
	case !src.IsValid():
		return src, dst, errors.New("invalid source address")
	case !dst.IsValid():
		return src, dst, errors.New("invalid destination address")
	case src.Is4() != dst.Is4():
		return src, dst, fmt.Errorf("mixed address families %s and %s", src, dst)
	}
	return src, dst, nil
}

// Marshal returns the whole IP packet: an IPv4 header with DF set (or an IPv6 header), the TCP header with its
// options, and the payload, with correct IP and TCP checksums. Options are encoded in the given order and
// padded with zeros (EOL) to a 4-byte boundary. It fails on invalid or mixed-family addresses, options longer
// than 40 bytes and packets too large for the IP length field. The three reserved bits above AE in Flags are not
// sent. It does no I/O.
func (s *Segment) Marshal() ([]byte, error) {
	src, dst, err := s.addrs()
	if err != nil {
		return nil, fmt.Errorf("craft: marshal: %w", err)
	}
	optLen := s.Options.wireLen()
	if optLen > maxOptionBytes {
		return nil, fmt.Errorf("craft: marshal: options take %d bytes, at most %d fit", optLen, maxOptionBytes)
	}
	for _, o := range s.Options {
		if o.wireLen() > math.MaxUint8 {
			return nil, fmt.Errorf("craft: marshal: option %d has %d data bytes", o.Kind, len(o.Data))
		}
	}
	tcpLen := tcpHeaderLen + (optLen+3)/4*4 + len(s.Payload)
	ipHeader := ipv4HeaderLen
	if src.Is6() {
		ipHeader = 0 // the IPv6 payload length does not count the fixed header
	}
	if ipHeader+tcpLen > math.MaxUint16 {
		return nil, fmt.Errorf("craft: marshal: packet too large: %d bytes of TCP", tcpLen)
	}

	ttl := s.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(s.Src.Port()),
		DstPort: layers.TCPPort(s.Dst.Port()),
		Seq:     uint32(s.Seq),
		Ack:     uint32(s.Ack),
		FIN:     s.Flags.Has(FIN),
		SYN:     s.Flags.Has(SYN),
		RST:     s.Flags.Has(RST),
		PSH:     s.Flags.Has(PSH),
		ACK:     s.Flags.Has(ACK),
		URG:     s.Flags.Has(URG),
		ECE:     s.Flags.Has(ECE),
		CWR:     s.Flags.Has(CWR),
		NS:      s.Flags.Has(AE),
		Window:  s.Window,
		Urgent:  s.Urgent,
	}
	if len(s.Options) > 0 {
		tcp.Options = make([]layers.TCPOption, len(s.Options))
		for i, o := range s.Options {
			tcp.Options[i] = layers.TCPOption{OptionType: layers.TCPOptionKind(o.Kind), OptionData: o.Data}
		}
	}
	var network gopacket.SerializableLayer
	if src.Is4() {
		ip := &layers.IPv4{
			Version:  4,
			TTL:      ttl,
			Id:       s.ID,
			Flags:    layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP,
			SrcIP:    net.IP(src.AsSlice()),
			DstIP:    net.IP(dst.AsSlice()),
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, fmt.Errorf("craft: marshal: %w", err)
		}
		network = ip
	} else {
		ip := &layers.IPv6{
			Version:    6,
			HopLimit:   ttl,
			NextHeader: layers.IPProtocolTCP,
			SrcIP:      net.IP(src.AsSlice()),
			DstIP:      net.IP(dst.AsSlice()),
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, fmt.Errorf("craft: marshal: %w", err)
		}
		network = ip
	}
	buf := gopacket.NewSerializeBufferExpectedSize(ipv6HeaderLen+tcpHeaderLen+maxOptionBytes, len(s.Payload))
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, network, tcp, gopacket.Payload(s.Payload)); err != nil {
		return nil, fmt.Errorf("craft: marshal: serialize: %w", err)
	}
	return buf.Bytes(), nil
}

// String returns the segment as tcpdump -S prints it on one line, without the leading "IP"/"IP6":
//
//	198.51.100.1.40000 > 198.51.100.2.80: Flags [S], seq 100, win 64240, options [mss 1460], length 0
//
// As in tcpdump, seq is shown when the segment has payload or carries SYN, FIN or RST (as "seq A:B" with
// payload), ack when ACK is set, urg when URG is set, and the length is that of the payload.
func (s *Segment) String() string {
	var b strings.Builder
	b.Grow(128)
	writeAddrPort(&b, s.Src)
	b.WriteString(" > ")
	writeAddrPort(&b, s.Dst)
	b.WriteString(": Flags ")
	b.WriteString(s.Flags.Tcpdump())
	if len(s.Payload) > 0 || s.Flags&(SYN|FIN|RST) != 0 {
		b.WriteString(", seq ")
		b.WriteString(strconv.FormatUint(uint64(s.Seq), 10))
		if len(s.Payload) > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(s.Seq.Add(uint32(len(s.Payload)))), 10))
		}
	}
	if s.Flags.Has(ACK) {
		b.WriteString(", ack ")
		b.WriteString(strconv.FormatUint(uint64(s.Ack), 10))
	}
	b.WriteString(", win ")
	b.WriteString(strconv.Itoa(int(s.Window)))
	if s.Flags.Has(URG) {
		b.WriteString(", urg ")
		b.WriteString(strconv.Itoa(int(s.Urgent)))
	}
	if len(s.Options) > 0 {
		b.WriteString(", options ")
		b.WriteString(s.Options.String())
	}
	b.WriteString(", length ")
	b.WriteString(strconv.Itoa(len(s.Payload)))
	return b.String()
}

// writeAddrPort writes an address and port the way tcpdump does: "198.51.100.1.40000", "2001:db8::1.40000".
func writeAddrPort(b *strings.Builder, ap netip.AddrPort) {
	b.WriteString(ap.Addr().Unmap().WithZone("").String())
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(int(ap.Port())))
}

// Clone returns a deep copy of s: the options' data and the payload are copied, so the copy stays valid after
// the buffer s was parsed from is reused.
func (s *Segment) Clone() Segment {
	c := *s
	if s.Options != nil {
		c.Options = make(Options, len(s.Options))
		for i, o := range s.Options {
			c.Options[i] = Option{Kind: o.Kind}
			if o.Data != nil {
				c.Options[i].Data = append([]byte{}, o.Data...)
			}
		}
	}
	if s.Payload != nil {
		c.Payload = append([]byte{}, s.Payload...)
	}
	return c
}
