package craft_test

import (
	"net/netip"
	"testing"

	"tcpshake/craft"
)

func TestEchoRoundTrip(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"198.51.100.1", "198.51.100.2"},
		{"2001:db8::1", "2001:db8::2"},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		b, err := craft.EchoRequest(src, dst, 0x1234, 7)
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := craft.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		want := craft.Echo{Src: src, Dst: dst, ID: 0x1234, Seq: 7}
		if pkt.Kind != craft.KindEcho || pkt.Echo != want {
			t.Errorf("%s: got %v %+v, want echo %+v", tc.src, pkt.Kind, pkt.Echo, want)
		}
		if sum := checksum(b, src.Is4()); sum != 0 {
			t.Errorf("%s: ICMP checksum does not verify (%#x)", tc.src, sum)
		}
	}
	if _, err := craft.EchoRequest(netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::2"), 1, 1); err == nil {
		t.Error("mixed families accepted")
	}
}

// checksum verifies the ICMP (v4) or ICMPv6 checksum over the message (and,
// for ICMPv6, the pseudo-header): a correct one sums to 0.
func checksum(b []byte, v4 bool) uint16 {
	var sum uint32
	add := func(p []byte) {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(p[i])<<8 | uint32(p[i+1])
		}
		if len(p)%2 == 1 {
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	if v4 {
		ihl := int(b[0]&0x0f) * 4
		add(b[ihl:])
	} else {
		msg := b[40:]
		add(b[8:40]) // source and destination
		add([]byte{0, 0, byte(len(msg) >> 8), byte(len(msg)), 0, 0, 0, 58})
		add(msg)
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
