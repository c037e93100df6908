package probe

import (
	"fmt"
	"math/big"
	"math/bits"
	"net/netip"
	"strings"
)

// A ScanRange is a run of consecutive addresses of one family, as a HOST,
// CIDR prefix or first-last range on the command line gave it.
type ScanRange struct {
	Name  string     // as the user wrote it
	First netip.Addr // the first address
	N     uint64     // how many addresses
	Src   netip.Addr // our source address towards them
}

// addr returns the i-th address of the range.
func (r ScanRange) addr(i uint64) netip.Addr {
	if r.First.Is4() {
		b := r.First.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v += uint32(i)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	b := r.First.As16()
	hi, lo := be64(b[:8]), be64(b[8:])
	lo2, carry := bits.Add64(lo, i, 0)
	hi += carry
	var out [16]byte
	put64(out[:8], hi)
	put64(out[8:], lo2)
	return netip.AddrFrom16(out)
}

// index returns the position of a in the range.
func (r ScanRange) index(a netip.Addr) (uint64, bool) {
	if a.Is4() != r.First.Is4() || a.Less(r.First) {
		return 0, false
	}
	var d uint64
	if a.Is4() {
		x, y := a.As4(), r.First.As4()
		d = uint64(be32(x[:]) - be32(y[:]))
	} else {
		x, y := a.As16(), r.First.As16()
		if be64(x[:8]) != be64(y[:8]) {
			// Ranges never span more than 2^64 addresses; a different
			// upper half is outside unless the low half wrapped.
			hi := be64(x[:8]) - be64(y[:8])
			if hi != 1 || be64(x[8:]) >= be64(y[8:]) {
				return 0, false
			}
		}
		d = be64(x[8:]) - be64(y[8:])
	}
	return d, d < r.N
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func be64(b []byte) uint64 { return uint64(be32(b[:4]))<<32 | uint64(be32(b[4:8])) }
func put64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// MaxScanHosts bounds how many addresses one scan takes (a /16 of IPv4, or
// an IPv6 /112), and MaxScanProbes how many (host, port) pairs: a scan keeps
// 10 bytes for each, so at most 40 MiB.
const (
	MaxScanHosts  = 1 << 16
	MaxScanProbes = 1 << 22
)

// ParseScanTarget reads one target argument: a host address, a prefix
// (198.51.100.0/28, 2001:db8::/120) or a range (198.51.100.2-17,
// 198.51.100.2-198.51.100.17, 2001:db8::2-2001:db8::11). A host name is
// not handled here (the caller resolves it). Broadcast, multicast and
// unspecified addresses are refused, and a prefix skips its network and
// broadcast addresses as nmap does not (it lists them; we do not send to a
// broadcast address).
func ParseScanTarget(s string) (ScanRange, error) {
	r := ScanRange{Name: s}
	switch {
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return r, fmt.Errorf("%q: not a prefix (want e.g. 198.51.100.0/28): %v", s, err)
		}
		p = p.Masked()
		hostBits := p.Addr().BitLen() - p.Bits()
		if hostBits > 16 {
			return r, fmt.Errorf("%q: %d addresses; one scan takes at most %d (a /%d)", s, new(big.Int).Lsh(big.NewInt(1), uint(hostBits)), MaxScanHosts, p.Addr().BitLen()-16)
		}
		r.First, r.N = p.Addr(), 1<<hostBits
		if p.Addr().Is4() && hostBits >= 2 {
			r.First, r.N = r.First.Next(), r.N-2 // not the network nor the broadcast address
		}
	case strings.Contains(s, "-"):
		i := strings.LastIndex(s, "-")
		a, err := netip.ParseAddr(s[:i])
		if err != nil {
			return r, fmt.Errorf("%q: %q is not an address", s, s[:i])
		}
		last, err := netip.ParseAddr(s[i+1:])
		if err != nil && a.Is4() {
			// 198.51.100.2-17: the last byte.
			b := a.As4()
			var n int
			if _, e := fmt.Sscanf(s[i+1:], "%d", &n); e != nil || n < 0 || n > 255 || fmt.Sprint(n) != s[i+1:] {
				return r, fmt.Errorf("%q: %q is neither an address nor a last byte 0-255", s, s[i+1:])
			}
			b[3] = byte(n)
			last, err = netip.AddrFrom4(b), nil
		}
		if err != nil {
			return r, fmt.Errorf("%q: %q is not an address", s, s[i+1:])
		}
		if a.Is4() != last.Is4() || last.Less(a) {
			return r, fmt.Errorf("%q: the range must run upwards within one address family", s)
		}
		r.First = a
		n, ok := ScanRange{First: a, N: MaxScanHosts}.index(last)
		if !ok {
			return r, fmt.Errorf("%q: more than %d addresses", s, MaxScanHosts)
		}
		r.N = n + 1
	default:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return r, fmt.Errorf("%q is not an address", s)
		}
		r.First, r.N = a.Unmap(), 1
	}
	r.First = r.First.Unmap()
	for _, a := range []netip.Addr{r.First, r.addr(r.N - 1)} {
		if err := Sendable(a); err != nil {
			return r, fmt.Errorf("%s: %w", s, err)
		}
	}
	return r, nil
}

// Sendable refuses what no probe may be sent to: the unspecified address,
// a multicast group or the limited broadcast address (TCP talks to one
// host).
func Sendable(a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("scoped address %v is not supported", a)
	case a.IsUnspecified():
		return fmt.Errorf("%v is the unspecified address: it names no host", a)
	case a.IsMulticast():
		return fmt.Errorf("%v is a multicast address: TCP cannot talk to a group", a)
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%v is the broadcast address: TCP cannot talk to every host at once", a)
	}
	return nil
}

// permutation walks 0..n-1 in a fixed scrambled order: position j holds
// (a·j + b) mod n with a prime to n. The order depends on n only, so
// separate machines that scan shards of the same targets and ports agree on
// it without talking (zmap's --shards).
type permutation struct {
	n, a, b uint64
}

func newPermutation(n uint64) permutation {
	if n <= 1 {
		return permutation{n: n, a: 1}
	}
	// A multiplier near n/φ spreads neighbours far apart.
	a := uint64(float64(n)*0.6180339887) | 1
	for gcd(a, n) != 1 {
		a++
	}
	return permutation{n: n, a: a % n, b: n / 3}
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// at returns the element at position j (j < n).
func (p permutation) at(j uint64) uint64 {
	hi, lo := bits.Mul64(p.a, j)
	_, rem := bits.Div64(hi, lo, p.n)
	v, carry := bits.Add64(rem, p.b, 0)
	if carry != 0 || v >= p.n {
		v -= p.n
	}
	return v
}

// HostCount is how many addresses the ranges hold.
func HostCount(rs []ScanRange) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.N
	}
	return n
}
