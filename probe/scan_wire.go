package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"tcpshake/craft"
)

// synTemplate is one marshalled SYN whose destination, port, sequence
// number and IP ID are patched for every probe, with both checksums
// recomputed: a scan builds a packet in well under a microsecond and
// allocates nothing.
type synTemplate struct {
	pkt []byte
	ihl int // offset of the TCP header
	v6  bool
}

func newSynTemplate(src netip.Addr, sport uint16, window uint16, ttl uint8, opts craft.SYNOptionSet) (synTemplate, error) {
	dst := netip.IPv4Unspecified()
	if src.Is6() {
		dst = netip.IPv6Unspecified()
	}
	seg := craft.Segment{
		Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, 1),
		Flags: craft.SYN, Window: window, TTL: ttl, Options: craft.SYNOptions(opts),
	}
	b, err := seg.Marshal()
	if err != nil {
		return synTemplate{}, fmt.Errorf("probe: build the scan's SYN: %w", err)
	}
	t := synTemplate{pkt: b, ihl: 20, v6: src.Is6()}
	if t.v6 {
		t.ihl = 40
	}
	return t, nil
}

// fill writes into buf (len(t.pkt) bytes) the SYN to dst:dport with
// sequence number seq and IP ID id.
func (t *synTemplate) fill(buf []byte, dst netip.Addr, dport uint16, seq uint32, id uint16) {
	copy(buf, t.pkt)
	if t.v6 {
		a := dst.As16()
		copy(buf[24:40], a[:])
	} else {
		a := dst.As4()
		copy(buf[16:20], a[:])
		binary.BigEndian.PutUint16(buf[4:], id)
		buf[10], buf[11] = 0, 0
		binary.BigEndian.PutUint16(buf[10:], ^fold(sum(buf[:20], 0)))
	}
	tcp := buf[t.ihl:]
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[16], tcp[17] = 0, 0
	var ps uint32
	if t.v6 {
		ps = sum(buf[8:40], 0)
	} else {
		ps = sum(buf[12:20], 0)
	}
	ps += 6 + uint32(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:], ^fold(sum(tcp, ps)))
}

// sum adds b as big-endian 16-bit words to s (RFC 1071).
func sum(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// A wireReply is what a scan reads of one packet: a TCP segment to our
// port, or an ICMP error that quotes one of our probes.
type wireReply struct {
	icmp            bool
	from            netip.Addr     // the IP source
	local, remote   netip.AddrPort // the 4-tuple, as we sent the probe
	seq, ack        uint32         // TCP: the segment's; ICMP: seq is the quoted one (ours)
	flags           craft.Flags
	ttl             uint8
	window          uint16
	icmpType, icode uint8
	icmpV6          bool
}

// parseWire reads a TCP segment or an ICMP error from an IP packet. It
// returns false for anything else (and for what is cut short).
func parseWire(b []byte, r *wireReply) bool {
	if len(b) < 20 {
		return false
	}
	*r = wireReply{}
	var src, dst netip.Addr
	var proto uint8
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0xf) * 4
		if ihl < 20 || len(b) < ihl || binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return false // not a first fragment
		}
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		proto, r.ttl, l4 = b[9], b[8], b[ihl:]
	case 6:
		if len(b) < 40 {
			return false
		}
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		proto, r.ttl, l4 = b[6], b[7], b[40:]
	default:
		return false
	}
	r.from = src
	switch proto {
	case 6:
		if len(l4) < 20 {
			return false
		}
		r.remote = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4))
		r.local = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:]))
		r.seq, r.ack = binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:])
		r.flags = craft.Flags(l4[13]) | craft.Flags(l4[12]&1)<<8
		r.window = binary.BigEndian.Uint16(l4[14:])
		return true
	case 1, 58:
		return parseICMPQuote(l4, proto == 58, r)
	}
	return false
}

// parseICMPQuote reads an ICMP destination unreachable (or time exceeded,
// packet too big, parameter problem) that quotes a TCP segment.
func parseICMPQuote(b []byte, v6 bool, r *wireReply) bool {
	if len(b) < 8 {
		return false
	}
	r.icmp, r.icmpV6, r.icmpType, r.icode = true, v6, b[0], b[1]
	if v6 {
		if b[0] >= 128 {
			return false // informational (echo, neighbour discovery)
		}
	} else if b[0] != 3 && b[0] != 11 && b[0] != 12 {
		return false
	}
	q := b[8:]
	var proto uint8
	var src, dst netip.Addr
	var tcp []byte
	if v6 {
		if len(q) < 48 {
			return false
		}
		proto, src, dst, tcp = q[6], netip.AddrFrom16([16]byte(q[8:24])), netip.AddrFrom16([16]byte(q[24:40])), q[40:]
	} else {
		if len(q) < 28 || q[0]>>4 != 4 {
			return false
		}
		ihl := int(q[0]&0xf) * 4
		if ihl < 20 || len(q) < ihl+8 {
			return false
		}
		proto, src, dst, tcp = q[9], netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20])), q[ihl:]
	}
	if proto != 6 {
		return false
	}
	r.local = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp))
	r.remote = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:]))
	r.seq = binary.BigEndian.Uint32(tcp[4:])
	return true
}

// reason names the ICMP error as craft (and nmap --reason) does.
func (r *wireReply) reason() string {
	e := craft.ICMPError{V6: r.icmpV6, Type: r.icmpType, Code: r.icode}
	return e.Reason()
}
