package trace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Kinds of raw records the kernel programs write.
const (
	kindState     = 1 // sock:inet_sock_set_state: a full socket changed state
	kindDrop      = 2 // skb:kfree_skb of a TCP segment, with the kernel's drop reason
	recordSize    = 96
	afInet        = 2
	afInet6       = 10
	linuxFinWait1 = 4
	linuxFinWait2 = 5
	linuxTimeWait = 6
	linuxClose    = 7
	linuxClosing  = 11
)

// raw is one record as the eBPF programs lay it out (little-endian host
// order; addresses in network order):
//
//	0  u64 ktime (CLOCK_MONOTONIC ns)   8 u64 socket pointer (identity only)
//	16 u32 netns inode   20 u16 family   22 u8 kind
//	24 u32 old state     28 u32 new state
//	32 u16 local port    34 u16 remote port (host order; for a drop: source, destination)
//	36 [4] local IPv4    40 [4] remote IPv4   44 [16] local IPv6   60 [16] remote IPv6
//	76 u32 drop reason   80 be32 seq   84 be32 ack   88 u8 TCP flags   89 u8 data offset (words)
//	90 be16 IPv4 total length or IPv6 payload length   92 u8 IPv4 header length (0 for IPv6)
type raw struct {
	mono   uint64
	sk     uint64
	netns  uint32
	family uint16
	kind   uint8
	old    uint32
	new    uint32
	local  netip.AddrPort
	remote netip.AddrPort
	reason uint32
	seq    uint32
	ack    uint32
	flags  uint8
	doff   uint8
	iplen  uint16
	iphl   uint8
}

func decode(b []byte) (raw, error) {
	if len(b) < recordSize {
		return raw{}, fmt.Errorf("trace: record of %d bytes, want %d", len(b), recordSize)
	}
	le, be := binary.NativeEndian, binary.BigEndian
	r := raw{
		mono: le.Uint64(b[0:]), sk: le.Uint64(b[8:]), netns: le.Uint32(b[16:]), family: le.Uint16(b[20:]),
		kind: b[22], old: le.Uint32(b[24:]), new: le.Uint32(b[28:]),
		reason: le.Uint32(b[76:]), seq: be.Uint32(b[80:]), ack: be.Uint32(b[84:]), flags: b[88], doff: b[89],
		iplen: be.Uint16(b[90:]), iphl: b[92],
	}
	lport, rport := le.Uint16(b[32:]), le.Uint16(b[34:])
	var la, ra netip.Addr
	switch r.family {
	case afInet:
		la, ra = netip.AddrFrom4([4]byte(b[36:40])), netip.AddrFrom4([4]byte(b[40:44]))
	case afInet6:
		la, ra = netip.AddrFrom16([16]byte(b[44:60])).Unmap(), netip.AddrFrom16([16]byte(b[60:76])).Unmap()
	default:
		return r, fmt.Errorf("trace: record of address family %d", r.family)
	}
	r.local, r.remote = netip.AddrPortFrom(la, lport), netip.AddrPortFrom(ra, rport)
	return r, nil
}

// encode is decode's inverse, for tests.
func encode(r raw) []byte {
	b := make([]byte, recordSize)
	le := binary.NativeEndian
	le.PutUint64(b[0:], r.mono)
	le.PutUint64(b[8:], r.sk)
	le.PutUint32(b[16:], r.netns)
	le.PutUint16(b[20:], r.family)
	b[22] = r.kind
	le.PutUint32(b[24:], r.old)
	le.PutUint32(b[28:], r.new)
	le.PutUint16(b[32:], r.local.Port())
	le.PutUint16(b[34:], r.remote.Port())
	if r.family == afInet {
		l, rm := r.local.Addr().As4(), r.remote.Addr().As4()
		copy(b[36:], l[:])
		copy(b[40:], rm[:])
	} else {
		l, rm := r.local.Addr().As16(), r.remote.Addr().As16()
		copy(b[44:], l[:])
		copy(b[60:], rm[:])
	}
	be := binary.BigEndian
	le.PutUint32(b[76:], r.reason)
	be.PutUint32(b[80:], r.seq)
	be.PutUint32(b[84:], r.ack)
	b[88], b[89] = r.flags, r.doff
	be.PutUint16(b[90:], r.iplen)
	b[92] = r.iphl
	return b
}
