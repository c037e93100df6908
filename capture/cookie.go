package capture

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// A Cookie turns a probe's 4-tuple into its initial sequence number with
// SipHash-2-4 under a per-run secret, as masscan and zmap do: a reply is
// checked against the 4-tuple it comes from (its ack less one must be the
// cookie) without any per-probe state, and nobody who does not know the
// secret can forge an acceptable answer.
//
// The low TryBits bits of the ISN carry the attempt number, so a reply
// names the very probe it answers (the first send or which retransmission):
// its round trip is timed from that send, as Karn's rule asks.
type Cookie struct {
	k0, k1 uint64
}

// TryBits is how many low ISN bits carry the attempt number; MaxTries is
// how many attempts they can name.
const (
	TryBits  = 4
	MaxTries = 1 << TryBits
	tryMask  = MaxTries - 1
)

// NewCookie returns a cookie keyed by the 16 bytes of key.
func NewCookie(key [16]byte) Cookie {
	return Cookie{binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])}
}

// ISN is the sequence number of attempt try (0 for the first send) of the
// probe from local to remote.
func (c Cookie) ISN(local, remote netip.AddrPort, try int) uint32 {
	return uint32(c.hash(local, remote))&^tryMask | uint32(try)&tryMask
}

// Check tells whether isn is one of the cookies of the 4-tuple, and which
// attempt it names.
func (c Cookie) Check(local, remote netip.AddrPort, isn uint32) (try int, ok bool) {
	if (uint32(c.hash(local, remote))^isn)&^tryMask != 0 {
		return 0, false
	}
	return int(isn & tryMask), true
}

func (c Cookie) hash(local, remote netip.AddrPort) uint64 {
	var b [36]byte
	l, r := local.Addr().As16(), remote.Addr().As16()
	copy(b[0:], l[:])
	copy(b[16:], r[:])
	binary.BigEndian.PutUint16(b[32:], local.Port())
	binary.BigEndian.PutUint16(b[34:], remote.Port())
	return SipHash24(c.k0, c.k1, b[:])
}

// SipHash24 is SipHash-2-4 (Aumasson and Bernstein, 2012) of msg under the
// key (k0, k1), the 16-byte key read as two little-endian words.
func SipHash24(k0, k1 uint64, msg []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(msg)
	for len(msg) >= 8 {
		m := binary.LittleEndian.Uint64(msg)
		v3 ^= m
		round()
		round()
		v0 ^= m
		msg = msg[8:]
	}
	var last [8]byte
	copy(last[:], msg)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	round()
	round()
	v0 ^= m
	v2 ^= 0xff
	for range 4 {
		round()
	}
	return v0 ^ v1 ^ v2 ^ v3
}
