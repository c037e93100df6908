package craft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Kind says what a parsed [Packet] holds.
type Kind uint8

// The kinds of parsed packets.
const (
	KindOther Kind = iota // neither TCP nor an ICMP error quoting TCP
	KindTCP               // a TCP segment, in Packet.Seg
	KindICMP              // an ICMP or ICMPv6 error quoting a TCP segment, in Packet.ICMP
	KindEcho              // an ICMP or ICMPv6 echo request or reply, in Packet.Echo
)

// String returns "other", "tcp" or "icmp".
func (k Kind) String() string {
	switch k {
	case KindTCP:
		return "tcp"
	case KindICMP:
		return "icmp"
	case KindEcho:
		return "echo"
	case KindOther:
		return "other"
	}
	return "kind-" + strconv.Itoa(int(k))
}

// ICMPError is an ICMP or ICMPv6 error that quotes one of our TCP segments.
type ICMPError struct {
	From netip.Addr // who sent the error
	V6   bool       // ICMPv6 rather than ICMP
	Type uint8
	Code uint8
	// Quoted is the quoted segment as we sent it: Src and Dst (address and port) and Seq always; Ack when at
	// least 12 bytes of TCP header were quoted, Flags from 14, Window from 16 (QuotedLen tells). TTL and ID
	// are those of the quoted IP header, so TTL is what was left of ours when the error was generated.
	Quoted    Segment
	QuotedLen int // bytes of the quoted TCP header available (at least 8, at most its data offset)
}

// Reason names the error the way nmap --reason does: "port-unreach", "host-unreach", "net-unreach",
// "proto-unreach", "admin-prohibited", "host-prohibited", "net-prohibited", "time-exceeded", "frag-needed",
// "source-quench", "redirect", "param-problem". ICMPv6 is mapped likewise: destination unreachable code 0 is
// "no-route", 1 "admin-prohibited", 2 "beyond-scope", 3 "host-unreach" (nmap says "addr-unreach"; craft uses
// the IPv4 name so both families read the same), 4 "port-unreach", 6 "reject-route"; packet too big is
// "frag-needed", time exceeded "time-exceeded", parameter problem "param-problem". Anything else is "icmp-T-C"
// or "icmp6-T-C" with the decimal type and code.
func (e *ICMPError) Reason() string {
	if e.V6 {
		switch e.Type {
		case 1:
			switch e.Code {
			case 0:
				return "no-route"
			case 1:
				return "admin-prohibited"
			case 2:
				return "beyond-scope"
			case 3:
				return "host-unreach"
			case 4:
				return "port-unreach"
			case 6:
				return "reject-route"
			}
		case 2:
			return "frag-needed"
		case 3:
			return "time-exceeded"
		case 4:
			return "param-problem"
		}
		return "icmp6-" + strconv.Itoa(int(e.Type)) + "-" + strconv.Itoa(int(e.Code))
	}
	switch e.Type {
	case 3:
		switch e.Code {
		case 0, 6, 11:
			return "net-unreach"
		case 1, 7, 12:
			return "host-unreach"
		case 2:
			return "proto-unreach"
		case 3:
			return "port-unreach"
		case 4:
			return "frag-needed"
		case 9:
			return "net-prohibited"
		case 10:
			return "host-prohibited"
		case 13:
			return "admin-prohibited"
		}
	case 4:
		return "source-quench"
	case 5:
		return "redirect"
	case 11:
		return "time-exceeded"
	case 12:
		return "param-problem"
	}
	return "icmp-" + strconv.Itoa(int(e.Type)) + "-" + strconv.Itoa(int(e.Code))
}

// Packet is one parsed IP packet.
type Packet struct {
	Kind Kind
	Seg  Segment   // valid when Kind == KindTCP (TTL and ID from the IP header)
	ICMP ICMPError // valid when Kind == KindICMP
	Echo Echo      // valid when Kind == KindEcho
}

// Echo is an ICMP echo request or reply (ping): tcpshake sends one before
// its probes to measure the round trip, as nmap's host discovery does.
type Echo struct {
	Src, Dst netip.Addr
	Reply    bool // echo reply (ICMP type 0, ICMPv6 129); else request (8, 128)
	ID, Seq  uint16
}

// Parser decodes IP packets without allocating in steady state. It holds preallocated gopacket layers and
// buffers, so it is not safe for concurrent use; use one Parser per goroutine.
type Parser struct {
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	dlp4    *gopacket.DecodingLayerParser
	dlp6    *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
	opts    Options
}

// NewParser returns a Parser for IPv4 and IPv6 packets.
func NewParser() *Parser {
	p := &Parser{
		decoded: make([]gopacket.LayerType, 0, 8),
		opts:    make(Options, 0, 16),
	}
	p.dlp4 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &p.ip4, &p.tcp, &p.icmp4)
	p.dlp4.IgnoreUnsupported = true
	p.dlp6 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, &p.ip6, &p.tcp, &p.icmp6)
	p.dlp6.IgnoreUnsupported = true
	return p
}

var (
	errEmpty     = errors.New("empty packet")
	errTruncated = errors.New("truncated packet")
	errQuote     = errors.New("icmp error quotes too little of the packet")
)

// Parse decodes one IP packet (IPv4 or IPv6, chosen by the version nibble; data starts at the IP header)
// into pkt. In steady state it does not allocate. pkt.Seg.Payload and the options' Data alias data, and the
// pkt.Seg.Options slice belongs to the Parser: both stay valid until data is reused or Parse is called
// again; [Segment.Clone] makes a copy to keep. Packets that are neither TCP nor an ICMP error quoting TCP give
// Kind = KindOther and no error (IPv4 fragments and IPv6 packets with extension headers are among them).
// Truncated or malformed packets give an error. An option whose length runs past the option area ends the
// option list, as it does for a receiving stack: it and the bytes after it are not in Options. Checksums are
// not verified.
func (p *Parser) Parse(data []byte, pkt *Packet) error {
	*pkt = Packet{}
	if len(data) == 0 {
		return fmt.Errorf("craft: parse: %w", errEmpty)
	}
	var dlp *gopacket.DecodingLayerParser
	switch v := data[0] >> 4; v {
	case 4:
		dlp = p.dlp4
	case 6:
		dlp = p.dlp6
	default:
		return fmt.Errorf("craft: parse: unknown IP version %d", v)
	}
	if err := dlp.DecodeLayers(data, &p.decoded); err != nil {
		return fmt.Errorf("craft: parse: %w", err)
	}
	if dlp.Truncated {
		return fmt.Errorf("craft: parse: %w", errTruncated)
	}
	if len(p.decoded) < 2 {
		return nil
	}
	switch p.decoded[1] {
	case layers.LayerTypeTCP:
		p.fillTCP(&pkt.Seg)
		pkt.Kind = KindTCP
	case layers.LayerTypeICMPv4:
		t := p.icmp4.TypeCode
		switch t.Type() {
		case 3, 4, 5, 11, 12:
		case 0, 8:
			pkt.Kind = KindEcho
			pkt.Echo = Echo{Src: netip.AddrFrom4([4]byte(p.ip4.SrcIP)), Dst: netip.AddrFrom4([4]byte(p.ip4.DstIP)),
				Reply: t.Type() == 0, ID: p.icmp4.Id, Seq: p.icmp4.Seq}
			return nil
		default:
			return nil
		}
		ok, err := parseQuote4(p.icmp4.Payload, &pkt.ICMP)
		if err != nil || !ok {
			return err
		}
		pkt.Kind = KindICMP
		pkt.ICMP.From = netip.AddrFrom4([4]byte(p.ip4.SrcIP))
		pkt.ICMP.Type, pkt.ICMP.Code = t.Type(), t.Code()
	case layers.LayerTypeICMPv6:
		t := p.icmp6.TypeCode
		if (t.Type() == 128 || t.Type() == 129) && len(p.icmp6.Payload) >= 4 {
			pl := p.icmp6.Payload
			pkt.Kind = KindEcho
			pkt.Echo = Echo{Src: netip.AddrFrom16([16]byte(p.ip6.SrcIP)), Dst: netip.AddrFrom16([16]byte(p.ip6.DstIP)),
				Reply: t.Type() == 129, ID: uint16(pl[0])<<8 | uint16(pl[1]), Seq: uint16(pl[2])<<8 | uint16(pl[3])}
			return nil
		}
		if t.Type() >= 128 { // other informational messages (RFC 4443 §2.1)
			return nil
		}
		ok, err := parseQuote6(p.icmp6.Payload, &pkt.ICMP)
		if err != nil || !ok {
			return err
		}
		pkt.Kind = KindICMP
		pkt.ICMP.V6 = true
		pkt.ICMP.From = netip.AddrFrom16([16]byte(p.ip6.SrcIP))
		pkt.ICMP.Type, pkt.ICMP.Code = t.Type(), t.Code()
	}
	return nil
}

// fillTCP copies the decoded IP and TCP layers into seg.
func (p *Parser) fillTCP(seg *Segment) {
	t := &p.tcp
	if p.decoded[0] == layers.LayerTypeIPv4 {
		seg.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p.ip4.SrcIP)), uint16(t.SrcPort))
		seg.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p.ip4.DstIP)), uint16(t.DstPort))
		seg.TTL = p.ip4.TTL
		seg.ID = p.ip4.Id
	} else {
		seg.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p.ip6.SrcIP)), uint16(t.SrcPort))
		seg.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p.ip6.DstIP)), uint16(t.DstPort))
		seg.TTL = p.ip6.HopLimit
	}
	seg.Seq, seg.Ack = Seq(t.Seq), Seq(t.Ack)
	seg.Flags = tcpFlags(t.Contents[12], t.Contents[13])
	seg.Window, seg.Urgent = t.Window, t.Urgent
	p.opts = p.opts[:0]
	for _, o := range t.Options {
		var d []byte
		if len(o.OptionData) > 0 && o.OptionType != layers.TCPOptionKindEndList && o.OptionType != layers.TCPOptionKindNop {
			d = o.OptionData
		}
		p.opts = append(p.opts, Option{Kind: OptionKind(o.OptionType), Data: d})
	}
	if len(p.opts) > 0 {
		seg.Options = p.opts
	}
	if len(t.Payload) > 0 {
		seg.Payload = t.Payload
	}
}

// tcpFlags reads the control bits from bytes 12 and 13 of a TCP header.
func tcpFlags(b12, b13 byte) Flags {
	return Flags(b12&0x0f)<<8 | Flags(b13)
}

// quotedTCP fills the ICMP error's quoted segment from the quoted TCP header, of which at least 8 bytes are
// present.
func quotedTCP(tcp []byte, e *ICMPError, src, dst netip.Addr) {
	q := &e.Quoted
	q.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:]))
	q.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:]))
	q.Seq = Seq(binary.BigEndian.Uint32(tcp[4:]))
	n := len(tcp)
	if n >= 13 {
		if off := int(tcp[12]>>4) * 4; off >= tcpHeaderLen && off < n {
			n = off
		}
	}
	e.QuotedLen = n
	if n >= 12 {
		q.Ack = Seq(binary.BigEndian.Uint32(tcp[8:]))
	}
	if n >= 14 {
		q.Flags = tcpFlags(tcp[12], tcp[13])
	}
	if n >= 16 {
		q.Window = binary.BigEndian.Uint16(tcp[14:])
	}
}

// parseQuote4 reads the IPv4 header and TCP header quoted by an ICMP error. It reports false when the quoted
// packet is not TCP or is a later fragment, and an error when too little was quoted to tell.
func parseQuote4(b []byte, e *ICMPError) (bool, error) {
	if len(b) < ipv4HeaderLen || b[0]>>4 != 4 {
		return false, fmt.Errorf("craft: parse: %w", errQuote)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < ipv4HeaderLen || len(b) < ihl {
		return false, fmt.Errorf("craft: parse: %w", errQuote)
	}
	if layers.IPProtocol(b[9]) != layers.IPProtocolTCP || binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
		return false, nil
	}
	if len(b) < ihl+8 {
		return false, fmt.Errorf("craft: parse: %w", errQuote)
	}
	e.Quoted.TTL = b[8]
	e.Quoted.ID = binary.BigEndian.Uint16(b[4:])
	quotedTCP(b[ihl:], e, netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])))
	return true, nil
}

// parseQuote6 reads the IPv6 header, any extension headers and the TCP header quoted by an ICMPv6 error; b
// starts after the ICMPv6 type, code and checksum. It reports false when the quoted packet is not TCP or is a
// later fragment, and an error when too little was quoted to tell.
func parseQuote6(b []byte, e *ICMPError) (bool, error) {
	const unused = 4 // unused, MTU or pointer before the quoted packet (RFC 4443 §3)
	if len(b) < unused+ipv6HeaderLen || b[unused]>>4 != 6 {
		return false, fmt.Errorf("craft: parse: %w", errQuote)
	}
	b = b[unused:]
	next, off := layers.IPProtocol(b[6]), ipv6HeaderLen
	for range 8 { // at most this many extension headers
		switch next {
		case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination:
			if len(b) < off+2 {
				return false, fmt.Errorf("craft: parse: %w", errQuote)
			}
			next, off = layers.IPProtocol(b[off]), off+(int(b[off+1])+1)*8
			continue
		case layers.IPProtocolIPv6Fragment:
			if len(b) < off+8 {
				return false, fmt.Errorf("craft: parse: %w", errQuote)
			}
			if binary.BigEndian.Uint16(b[off+2:])>>3 != 0 {
				return false, nil
			}
			next, off = layers.IPProtocol(b[off]), off+8
			continue
		}
		break
	}
	if next != layers.IPProtocolTCP {
		return false, nil
	}
	if len(b) < off+8 {
		return false, fmt.Errorf("craft: parse: %w", errQuote)
	}
	e.Quoted.TTL = b[7]
	quotedTCP(b[off:], e, netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])))
	return true, nil
}

// Parse decodes one IP packet like [Parser.Parse] with a fresh Parser and returns a deep copy that is safe
// to keep.
func Parse(data []byte) (Packet, error) {
	var pkt Packet
	if err := NewParser().Parse(data, &pkt); err != nil {
		return Packet{}, err
	}
	pkt.Seg = pkt.Seg.Clone()
	return pkt, nil
}
