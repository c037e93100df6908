package craft

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fuzzSeeds returns marshalled fixtures: the golden segments, an ICMP and an ICMPv6 error, and cut copies.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, g := range goldenSegments() {
		b, err := hex.DecodeString(g.hex)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b, b[:len(b)-3])
	}
	syn4 := mustMarshal(t, Segment{Src: netip.MustParseAddrPort("198.51.100.1:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:81"),
		Seq: 7, Flags: SYN, Options: Options{MSS(1460), SACK(SACKBlock{1, 2})}})
	syn6 := mustMarshal(t, Segment{Src: netip.MustParseAddrPort("[2001:db8::1]:40000"), Dst: netip.MustParseAddrPort("[2001:db8::2]:81"),
		Seq: 7, Flags: SYN | AE, Payload: []byte("x")})
	seeds = append(seeds, syn4, syn6,
		icmp4Error(t, "198.51.100.2", "198.51.100.1", 3, 3, syn4),
		icmp4Error(t, "198.51.100.2", "198.51.100.1", 11, 0, syn4[:28]),
		icmp6Error(t, "2001:db8::2", "2001:db8::1", 1, 4, syn6),
		icmp6Error(t, "2001:db8::2", "2001:db8::1", 3, 0, syn6[:48]),
		[]byte{}, []byte{0x45}, []byte{0x60, 0, 0, 0})
	return seeds
}

// headerFields are the fields that must survive Parse, Marshal, Parse. The three reserved flag bits are not
// sent by Marshal, so they are left out; a TTL of 0 is marshalled as DefaultTTL; and trailing EOL options are
// dropped, since Parse skips a malformed last option while Marshal pads the gap it leaves with EOL.
func headerFields(s Segment) Segment {
	for len(s.Options) > 0 && s.Options[len(s.Options)-1].Kind == OptEOL {
		s.Options = s.Options[:len(s.Options)-1]
	}
	if len(s.Options) == 0 {
		s.Options = nil
	}
	s.Flags &= FIN | SYN | RST | PSH | ACK | URG | ECE | CWR | AE
	if s.TTL == 0 {
		s.TTL = DefaultTTL
	}
	return s
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := NewParser()
		var pkt Packet
		err := p.Parse(data, &pkt)
		if err != nil {
			return
		}
		switch pkt.Kind {
		case KindICMP:
			_ = pkt.ICMP.Reason()
			if pkt.ICMP.QuotedLen < 8 {
				t.Fatalf("ICMP error with %d quoted bytes", pkt.ICMP.QuotedLen)
			}
			return
		case KindOther:
			return
		case KindEcho:
			e := pkt.Echo
			b, err := EchoRequest(e.Src, e.Dst, e.ID, e.Seq)
			if err != nil {
				t.Fatalf("EchoRequest from a parsed echo %+v: %v", e, err)
			}
			again, err := Parse(b)
			if err != nil || again.Kind != KindEcho {
				t.Fatalf("re-built echo request parses as %v, %v", again.Kind, err)
			}
			e.Reply = false
			if again.Echo != e {
				t.Fatalf("echo round trip: %+v, want %+v", again.Echo, e)
			}
			return
		}
		seg := pkt.Seg.Clone()
		_ = seg.String()
		if seg.Src.Addr().Is4In6() || seg.Dst.Addr().Is4In6() {
			return // Marshal sends IPv4-mapped addresses as IPv4
		}
		b, err := seg.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed segment %v: %v", seg.String(), err)
		}
		var again Packet
		if err := p.Parse(b, &again); err != nil {
			t.Fatalf("Parse of a re-marshalled segment: %v\n%x", err, b)
		}
		if again.Kind != KindTCP {
			t.Fatalf("re-marshalled segment parses as %v", again.Kind)
		}
		if diff := cmp.Diff(headerFields(seg), headerFields(again.Seg), netipOpt()); diff != "" {
			t.Errorf("Parse(Marshal(Parse(data))) (-first +second):\n%s", diff)
		}
	})
}

func FuzzParseFlags(f *testing.F) {
	for _, s := range []string{"S", "S.", "SA", "FA", "FP.", "R", "R.", "PA", "[S.]", "syn,ack", "SYN|ACK", "none",
		"fin+psh+ack", "e", "E", "ns", "ae", "SQ", "", "[]", "syn foo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFlags(s)
		if err != nil {
			return
		}
		again, err := ParseFlags(fl.String())
		if err != nil {
			t.Fatalf("ParseFlags(%q) = %v, but ParseFlags(%q) fails: %v", s, fl, fl.String(), err)
		}
		if again != fl {
			t.Fatalf("ParseFlags(%q) = %#x, ParseFlags(%q) = %#x", s, uint16(fl), fl.String(), uint16(again))
		}
		_ = fl.BitView()
		_ = fl.Wireshark()
	})
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"80", "22,80,443", "1000-1010", "22,80-82", "0", "65536", "1-", "-5", "80-20", "abc", "1-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			return
		}
		if len(ports) == 0 || len(ports) > 65535 {
			t.Fatalf("ParsePorts(%q) gave %d ports", s, len(ports))
		}
		seen := make(map[uint16]bool, len(ports))
		for _, p := range ports {
			if p == 0 {
				t.Fatalf("ParsePorts(%q) gave port 0", s)
			}
			if seen[p] {
				t.Fatalf("ParsePorts(%q) gave port %d twice", s, p)
			}
			seen[p] = true
		}
	})
}
