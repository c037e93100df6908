package craft

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checksum is the Internet checksum of RFC 1071, written here independently of gopacket's: the one's
// complement of the one's complement sum of the 16-bit words of the concatenated parts, a trailing odd byte
// padded with zero. A part list that already holds a correct checksum sums to 0.
func checksum(parts ...[]byte) uint16 {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// checkChecksums verifies the IP header checksum (IPv4) and the TCP checksum over the pseudo-header of a
// marshalled packet.
func checkChecksums(t *testing.T, pkt []byte) {
	t.Helper()
	var pseudo, tcp []byte
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		if got := checksum(pkt[:ihl]); got != 0 {
			t.Errorf("IPv4 header checksum does not verify: sum gives %#04x", got)
		}
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		if total != len(pkt) {
			t.Errorf("IPv4 total length = %d, packet has %d bytes", total, len(pkt))
		}
		tcp = pkt[ihl:]
		pseudo = append(append(append([]byte{}, pkt[12:20]...), 0, pkt[9]), byte(len(tcp)>>8), byte(len(tcp)))
	case 6:
		tcp = pkt[40:]
		if pl := int(binary.BigEndian.Uint16(pkt[4:])); pl != len(tcp) {
			t.Errorf("IPv6 payload length = %d, payload has %d bytes", pl, len(tcp))
		}
		pseudo = append([]byte{}, pkt[8:40]...)
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(tcp)))
		pseudo = append(pseudo, 0, 0, 0, pkt[6])
	default:
		t.Fatalf("IP version %d", pkt[0]>>4)
	}
	if got := checksum(pseudo, tcp); got != 0 {
		t.Errorf("TCP checksum does not verify: sum gives %#04x", got)
	}
}

func TestChecksumHelper(t *testing.T) {
	// The example of RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2, whose complement is 220d.
	if got := checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Fatalf("checksum of the RFC 1071 example = %#04x, want 0x220d", got)
	}
}

// golden is one hex fixture.
type golden struct {
	name string
	seg  Segment
	line string // tcpdump's line and Segment.String
	hex  string
}

// goldenSegments returns hex fixtures checked against tcpdump 4.99 (tcpdump -nn -S -v), each under the line
// tcpdump prints for it.
func goldenSegments() []golden {
	return []golden{
		{
			name: "linux syn ipv4",
			// IP (tos 0x0, ttl 64, id 4660, offset 0, flags [DF], proto TCP (6), length 60)
			// 198.51.100.1.40000 > 198.51.100.2.80: Flags [S], cksum 0x57c8 (correct), seq 100, win 64240, options [mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 7], length 0
			seg: Segment{
				Src: netip.MustParseAddrPort("198.51.100.1:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:80"),
				Seq: 100, Flags: SYN, Window: 64240, ID: 0x1234,
				Options: SYNOptions(SYNOptionSet{MSS: 1460, WScale: 7, SACKOK: true, Timestamp: true, TSVal: 1000}),
			},
			line: "198.51.100.1.40000 > 198.51.100.2.80: Flags [S], seq 100, win 64240, options [mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 7], length 0",
			hex:  "4500003c123440004006d41dc6336401c63364029c4000500000006400000000a002faf057c80000020405b40402080a000003e80000000001030307",
		},
		{
			name: "syn-ack ipv6",
			// IP6 (hlim 64, next-header TCP (6) payload length: 24) 2001:db8::2.80 > 2001:db8::1.40000: Flags [S.], cksum 0x8c38 (correct), seq 5000, ack 101, win 65535, options [mss 1440], length 0
			seg: Segment{
				Src: netip.MustParseAddrPort("[2001:db8::2]:80"), Dst: netip.MustParseAddrPort("[2001:db8::1]:40000"),
				Seq: 5000, Ack: 101, Flags: SYN | ACK, Window: 65535, Options: Options{MSS(1440)},
			},
			line: "2001:db8::2.80 > 2001:db8::1.40000: Flags [S.], seq 5000, ack 101, win 65535, options [mss 1440], length 0",
			hex:  "600000000018064020010db800000000000000000000000220010db800000000000000000000000100509c4000001388000000656012ffff8c380000020405a0",
		},
		{
			name: "data ipv4",
			// IP (tos 0x0, ttl 63, id 2, offset 0, flags [DF], proto TCP (6), length 45)
			// 198.51.100.1.40000 > 198.51.100.2.80: Flags [P.], cksum 0x6516 (correct), seq 101:106, ack 5001, win 502, length 5
			seg: Segment{
				Src: netip.MustParseAddrPort("198.51.100.1:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:80"),
				Seq: 101, Ack: 5001, Flags: PSH | ACK, Window: 502, ID: 2, TTL: 63, Payload: []byte("hello"),
			},
			line: "198.51.100.1.40000 > 198.51.100.2.80: Flags [P.], seq 101:106, ack 5001, win 502, length 5",
			hex:  "4500002d000240003f06e75ec6336401c63364029c4000500000006500001389501801f66516000068656c6c6f",
		},
	}
}

func TestMarshalGolden(t *testing.T) {
	for _, tt := range goldenSegments() {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.seg.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if diff := cmp.Diff(tt.hex, hex.EncodeToString(b)); diff != "" {
				t.Errorf("Marshal (-want +got):\n%s", diff)
			}
			checkChecksums(t, b)
			if got := tt.seg.String(); got != tt.line {
				t.Errorf("String() =\n%s\nwant\n%s", got, tt.line)
			}
			raw, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			pkt, err := Parse(raw)
			if err != nil {
				t.Fatalf("Parse of the fixture: %v", err)
			}
			if got := pkt.Seg.String(); got != tt.line {
				t.Errorf("String() of the parsed fixture =\n%s\nwant\n%s", got, tt.line)
			}
		})
	}
}

func TestMarshalChecksums(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.2:65535")
	v6a, v6b := netip.MustParseAddrPort("[::1]:1234"), netip.MustParseAddrPort("[2001:db8::ff]:22")
	tests := []struct {
		name string
		seg  Segment
	}{
		{"v4 bare", Segment{Src: v4a, Dst: v4b, Flags: ACK}},
		{"v4 odd payload", Segment{Src: v4a, Dst: v4b, Seq: 0xffffffff, Flags: PSH | ACK, Payload: []byte("odd")}},
		{"v4 options and payload", Segment{Src: v4a, Dst: v4b, Flags: SYN, Options: SYNOptions(SYNOptionSet{MSS: 1460, WScale: 7, SACKOK: true, Timestamp: true}), Payload: make([]byte, 1000)}},
		{"v4 all flags", Segment{Src: v4a, Dst: v4b, Flags: 0x1ff, Urgent: 0xffff, Window: 0xffff}},
		{"v6 bare", Segment{Src: v6a, Dst: v6b, Flags: RST}},
		{"v6 odd payload", Segment{Src: v6a, Dst: v6b, Flags: PSH | ACK, Payload: []byte{0xff, 0xff, 0xff}}},
		{"v6 options", Segment{Src: v6a, Dst: v6b, Flags: SYN | ACK, Options: Options{MSS(1220), NOP(), WindowScale(14)}}},
		{"v4-mapped addresses are IPv4", Segment{Src: netip.MustParseAddrPort("[::ffff:127.0.0.1]:5"), Dst: netip.MustParseAddrPort("[::ffff:127.0.0.2]:6"), Flags: SYN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.seg.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			checkChecksums(t, b)
			wantVersion := byte(4)
			if tt.seg.IPv6() {
				wantVersion = 6
			}
			if b[0]>>4 != wantVersion {
				t.Errorf("IP version %d, want %d", b[0]>>4, wantVersion)
			}
			if wantVersion == 4 {
				if b[6]&0x40 == 0 {
					t.Error("DF is not set")
				}
				if b[8] != DefaultTTL {
					t.Errorf("TTL = %d, want DefaultTTL %d", b[8], DefaultTTL)
				}
			} else if b[7] != DefaultTTL {
				t.Errorf("hop limit = %d, want DefaultTTL %d", b[7], DefaultTTL)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	v4, v6 := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("[::1]:2")
	tests := []struct {
		name string
		seg  Segment
		want string
	}{
		{"no source", Segment{Dst: v4}, "invalid source address"},
		{"no destination", Segment{Src: v4}, "invalid destination address"},
		{"mixed families", Segment{Src: v4, Dst: v6}, "mixed address families"},
		{"options too long", Segment{Src: v4, Dst: v4, Options: Options{RawOption(30, make([]byte, 39))}}, "options take 41 bytes"},
		{"too many options", Segment{Src: v4, Dst: v4, Options: Options{Timestamps(1, 2), Timestamps(1, 2), Timestamps(1, 2), Timestamps(1, 2), MSS(1)}}, "options take 44 bytes"},
		{"v4 too large", Segment{Src: v4, Dst: v4, Payload: make([]byte, 65535-40+1)}, "packet too large"},
		{"v6 too large", Segment{Src: v6, Dst: v6, Payload: make([]byte, 65535-20+1)}, "packet too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.seg.Marshal()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Marshal error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	// The largest packets that fit still marshal.
	for _, seg := range []Segment{
		{Src: v4, Dst: v4, Payload: make([]byte, 65535-40)},
		{Src: v6, Dst: v6, Payload: make([]byte, 65535-20)},
	} {
		if _, err := seg.Marshal(); err != nil {
			t.Errorf("Marshal of %d payload bytes: %v", len(seg.Payload), err)
		}
	}
}

func TestSegmentString(t *testing.T) {
	a, b := netip.MustParseAddrPort("198.51.100.1:40000"), netip.MustParseAddrPort("198.51.100.2:80")
	// Lines checked against tcpdump 4.99 -nn -S (its "IP " prefix left out).
	tests := []struct {
		seg  Segment
		want string
	}{
		{Segment{Src: a, Dst: b, Seq: 101, Ack: 5001, Flags: ACK, Window: 502},
			"198.51.100.1.40000 > 198.51.100.2.80: Flags [.], ack 5001, win 502, length 0"},
		{Segment{Src: a, Dst: b, Seq: 101, Flags: RST},
			"198.51.100.1.40000 > 198.51.100.2.80: Flags [R], seq 101, win 0, length 0"},
		{Segment{Src: a, Dst: b, Seq: 101, Ack: 7, Flags: URG | ACK | PSH, Urgent: 3, Window: 9, Payload: []byte("abc")},
			"198.51.100.1.40000 > 198.51.100.2.80: Flags [P.U], seq 101:104, ack 7, win 9, urg 3, length 3"},
		{Segment{Src: a, Dst: b, Ack: 7, Flags: ACK, Window: 9, Options: Options{NOP(), NOP(), SACK(SACKBlock{200, 300}, SACKBlock{400, 500})}},
			"198.51.100.1.40000 > 198.51.100.2.80: Flags [.], ack 7, win 9, options [nop,nop,sack 2 {200:300}{400:500}], length 0"},
		{Segment{Src: a, Dst: b, Seq: 101, Window: 9},
			"198.51.100.1.40000 > 198.51.100.2.80: Flags [none], win 9, length 0"},
		{Segment{Src: a, Dst: b, Seq: 101, Ack: 1, Flags: FIN | ACK, Window: 9},
			"198.51.100.1.40000 > 198.51.100.2.80: Flags [F.], seq 101, ack 1, win 9, length 0"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.seg.String(); got != tt.want {
				t.Errorf("String() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestSegmentLen(t *testing.T) {
	tests := []struct {
		name string
		seg  Segment
		len  uint32
		end  Seq
	}{
		{"syn", Segment{Seq: 100, Flags: SYN}, 1, 101},
		{"syn-ack", Segment{Seq: 100, Flags: SYN | ACK}, 1, 101},
		{"ack", Segment{Seq: 100, Flags: ACK}, 0, 100},
		{"fin with data", Segment{Seq: 100, Flags: FIN | ACK, Payload: []byte("bye")}, 4, 104},
		{"syn and fin", Segment{Seq: 0xffffffff, Flags: SYN | FIN}, 2, 1},
		{"rst", Segment{Seq: 9, Flags: RST}, 0, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.seg.Len(); got != tt.len {
				t.Errorf("Len() = %d, want %d", got, tt.len)
			}
			if got := tt.seg.End(); got != tt.end {
				t.Errorf("End() = %d, want %d", got, tt.end)
			}
		})
	}
}
