package craft

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// netipOpt lets cmp compare netip values, whose fields are unexported.
func netipOpt() cmp.Option {
	return cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})
}

// mustMarshal marshals seg or fails the test.
func mustMarshal(t testing.TB, seg Segment) []byte {
	t.Helper()
	b, err := seg.Marshal()
	if err != nil {
		t.Fatalf("Marshal %v: %v", seg.String(), err)
	}
	return b
}

// serialize builds a packet from gopacket layers, fixing lengths and checksums.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

// icmp4Error wraps quote in an ICMP error of the given type and code from `from` to `to`.
func icmp4Error(t testing.TB, from, to string, typ, code uint8, quote []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: net.ParseIP(from).To4(), DstIP: net.ParseIP(to).To4()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return serialize(t, ip, icmp, gopacket.Payload(quote))
}

// icmp6Error wraps quote in an ICMPv6 error of the given type and code from `from` to `to`.
func icmp6Error(t testing.TB, from, to string, typ, code uint8, quote []byte) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: net.ParseIP(from), DstIP: net.ParseIP(to)}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, icmp, gopacket.Payload(append([]byte{0, 0, 0, 0}, quote...)))
}

// normalized returns seg as Parse gives it back after Marshal: TTL filled in, ID dropped for IPv6, addresses
// unmapped, empty slices nil.
func normalized(seg Segment) Segment {
	if seg.TTL == 0 {
		seg.TTL = DefaultTTL
	}
	seg.Src = netip.AddrPortFrom(seg.Src.Addr().Unmap(), seg.Src.Port())
	seg.Dst = netip.AddrPortFrom(seg.Dst.Addr().Unmap(), seg.Dst.Port())
	if seg.IPv6() {
		seg.ID = 0
	}
	if len(seg.Payload) == 0 {
		seg.Payload = nil
	}
	if len(seg.Options) == 0 {
		seg.Options = nil
	}
	return seg
}

func TestMarshalParseRoundTrip(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("198.51.100.1:40000"), netip.MustParseAddrPort("198.51.100.2:22")
	v6a, v6b := netip.MustParseAddrPort("[2001:db8::1]:40000"), netip.MustParseAddrPort("[2001:db8::2]:22")
	tests := []struct {
		name string
		seg  Segment
	}{
		{"v4 syn", Segment{Src: v4a, Dst: v4b, Seq: 0xfffffffe, Flags: SYN, Window: 64240, ID: 77,
			Options: SYNOptions(SYNOptionSet{MSS: 1460, WScale: 7, SACKOK: true, Timestamp: true, TSVal: 99})}},
		{"v4 syn-ack", Segment{Src: v4b, Dst: v4a, Seq: 1, Ack: 0xffffffff, Flags: SYN | ACK, Window: 65160, TTL: 1,
			Options: Options{MSS(1460), NOP(), NOP(), SACKPermitted(), NOP(), WindowScale(7)}}},
		{"v4 data", Segment{Src: v4a, Dst: v4b, Seq: 1000, Ack: 2000, Flags: PSH | ACK, Window: 502, TTL: 255, ID: 0xffff,
			Options: Options{NOP(), NOP(), Timestamps(1, 2)}, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}},
		{"v4 rst", Segment{Src: v4a, Dst: v4b, Seq: 5, Flags: RST}},
		{"v4 every flag", Segment{Src: v4a, Dst: v4b, Flags: FIN | SYN | RST | PSH | ACK | URG | ECE | CWR | AE, Urgent: 7}},
		{"v6 syn", Segment{Src: v6a, Dst: v6b, Seq: 42, Flags: SYN | ECE | CWR, Window: 65535,
			Options: SYNOptions(SYNOptionSet{MSS: 1440, WScale: 9, SACKOK: true})}},
		{"v6 fin with data", Segment{Src: v6b, Dst: v6a, Seq: 3, Ack: 4, Flags: FIN | ACK | PSH, Window: 1, TTL: 3,
			Payload: []byte{0, 1, 2, 3, 4, 5, 6}}},
		{"v6 sack", Segment{Src: v6a, Dst: v6b, Ack: 10, Flags: ACK,
			Options: Options{NOP(), NOP(), SACK(SACKBlock{20, 30}, SACKBlock{40, 50}, SACKBlock{60, 70})}}},
		{"v4-mapped", Segment{Src: netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"), Dst: netip.MustParseAddrPort("127.0.0.1:2"), Flags: SYN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustMarshal(t, tt.seg)
			pkt, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if pkt.Kind != KindTCP {
				t.Fatalf("Kind = %v, want tcp", pkt.Kind)
			}
			if diff := cmp.Diff(normalized(tt.seg), pkt.Seg, netipOpt()); diff != "" {
				t.Errorf("Parse(Marshal(seg)) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseICMPErrors(t *testing.T) {
	syn4 := Segment{Src: netip.MustParseAddrPort("198.51.100.1:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:81"),
		Seq: 0xdeadbeef, Flags: SYN, Window: 64240, ID: 9, TTL: 5, Options: Options{MSS(1460)}}
	syn6 := Segment{Src: netip.MustParseAddrPort("[2001:db8::1]:40000"), Dst: netip.MustParseAddrPort("[2001:db8::2]:81"),
		Seq: 12345, Flags: SYN, Window: 64800, TTL: 7}
	raw4, raw6 := mustMarshal(t, syn4), mustMarshal(t, syn6)

	tests := []struct {
		name   string
		pkt    []byte
		want   ICMPError
		reason string
	}{
		{
			name: "v4 port unreachable, full quote",
			pkt:  icmp4Error(t, "198.51.100.2", "198.51.100.1", 3, 3, raw4),
			want: ICMPError{From: netip.MustParseAddr("198.51.100.2"), Type: 3, Code: 3, QuotedLen: 24,
				Quoted: Segment{Src: syn4.Src, Dst: syn4.Dst, Seq: syn4.Seq, Flags: SYN, Window: 64240, TTL: 5, ID: 9}},
			reason: "port-unreach",
		},
		{
			name: "v4 admin prohibited, 8 bytes quoted",
			pkt:  icmp4Error(t, "198.51.100.254", "198.51.100.1", 3, 13, raw4[:28]),
			want: ICMPError{From: netip.MustParseAddr("198.51.100.254"), Type: 3, Code: 13, QuotedLen: 8,
				Quoted: Segment{Src: syn4.Src, Dst: syn4.Dst, Seq: syn4.Seq, TTL: 5, ID: 9}},
			reason: "admin-prohibited",
		},
		{
			name: "v4 time exceeded, 14 bytes quoted",
			pkt:  icmp4Error(t, "198.51.100.254", "198.51.100.1", 11, 0, raw4[:34]),
			want: ICMPError{From: netip.MustParseAddr("198.51.100.254"), Type: 11, QuotedLen: 14,
				Quoted: Segment{Src: syn4.Src, Dst: syn4.Dst, Seq: syn4.Seq, Flags: SYN, TTL: 5, ID: 9}},
			reason: "time-exceeded",
		},
		{
			name: "v6 port unreachable",
			pkt:  icmp6Error(t, "2001:db8::2", "2001:db8::1", 1, 4, raw6),
			want: ICMPError{From: netip.MustParseAddr("2001:db8::2"), V6: true, Type: 1, Code: 4, QuotedLen: 20,
				Quoted: Segment{Src: syn6.Src, Dst: syn6.Dst, Seq: syn6.Seq, Flags: SYN, Window: 64800, TTL: 7}},
			reason: "port-unreach",
		},
		{
			name: "v6 address unreachable, 8 bytes quoted",
			pkt:  icmp6Error(t, "2001:db8::fe", "2001:db8::1", 1, 3, raw6[:48]),
			want: ICMPError{From: netip.MustParseAddr("2001:db8::fe"), V6: true, Type: 1, Code: 3, QuotedLen: 8,
				Quoted: Segment{Src: syn6.Src, Dst: syn6.Dst, Seq: syn6.Seq, TTL: 7}},
			reason: "host-unreach",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, err := Parse(tt.pkt)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if pkt.Kind != KindICMP {
				t.Fatalf("Kind = %v, want icmp", pkt.Kind)
			}
			if diff := cmp.Diff(tt.want, pkt.ICMP, netipOpt()); diff != "" {
				t.Errorf("ICMP (-want +got):\n%s", diff)
			}
			if got := pkt.ICMP.Reason(); got != tt.reason {
				t.Errorf("Reason() = %q, want %q", got, tt.reason)
			}
		})
	}
}

func TestICMPReason(t *testing.T) {
	tests := []struct {
		v6        bool
		typ, code uint8
		want      string
	}{
		{false, 3, 0, "net-unreach"}, {false, 3, 1, "host-unreach"}, {false, 3, 2, "proto-unreach"},
		{false, 3, 3, "port-unreach"}, {false, 3, 4, "frag-needed"}, {false, 3, 9, "net-prohibited"},
		{false, 3, 10, "host-prohibited"}, {false, 3, 13, "admin-prohibited"}, {false, 11, 1, "time-exceeded"},
		{false, 3, 5, "icmp-3-5"}, {false, 12, 0, "param-problem"}, {false, 99, 7, "icmp-99-7"},
		{true, 1, 0, "no-route"}, {true, 1, 1, "admin-prohibited"}, {true, 1, 3, "host-unreach"},
		{true, 1, 4, "port-unreach"}, {true, 2, 0, "frag-needed"}, {true, 3, 0, "time-exceeded"},
		{true, 1, 5, "icmp6-1-5"}, {true, 100, 2, "icmp6-100-2"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			e := ICMPError{V6: tt.v6, Type: tt.typ, Code: tt.code}
			if got := e.Reason(); got != tt.want {
				t.Errorf("Reason() of v6=%v type %d code %d = %q, want %q", tt.v6, tt.typ, tt.code, got, tt.want)
			}
		})
	}
}

func TestParseOther(t *testing.T) {
	udp := func() []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1)}
		u := &layers.UDP{SrcPort: 53, DstPort: 53}
		if err := u.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		return serialize(t, ip, u, gopacket.Payload("x"))
	}()
	echo := func() []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1)}
		return serialize(t, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, gopacket.Payload("ping"))
	}()
	udpQuote := icmp4Error(t, "127.0.0.2", "127.0.0.1", 3, 3, udp)
	fragment := mustMarshal(t, Segment{Src: netip.MustParseAddrPort("127.0.0.1:1"), Dst: netip.MustParseAddrPort("127.0.0.1:2"), Flags: SYN})
	fragment[6], fragment[7] = 0x20, 0x00 // MF set: a first fragment, decoded as a fragment, not as TCP
	echo6 := icmp6Error(t, "::1", "::1", 128, 0, []byte("ping"))

	tests := []struct {
		name string
		pkt  []byte
	}{
		{"udp", udp},
		{"icmp error quoting udp", udpQuote},
		{"ipv4 fragment", fragment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, err := Parse(tt.pkt)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if pkt.Kind != KindOther {
				t.Errorf("Kind = %v, want other", pkt.Kind)
			}
		})
	}
	// Echo requests are their own kind (tcpshake's RTT primer).
	for name, b := range map[string][]byte{"icmp echo": echo, "icmpv6 echo": echo6} {
		pkt, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: Parse: %v", name, err)
		}
		if pkt.Kind != KindEcho || pkt.Echo.Reply {
			t.Errorf("%s: Kind = %v (reply %v), want an echo request", name, pkt.Kind, pkt.Echo.Reply)
		}
	}
}

func TestParseErrors(t *testing.T) {
	syn4 := mustMarshal(t, Segment{Src: netip.MustParseAddrPort("127.0.0.1:1"), Dst: netip.MustParseAddrPort("127.0.0.1:2"),
		Flags: SYN, Options: Options{MSS(1460), NOP(), WindowScale(7)}, Payload: []byte("data")})
	syn6 := mustMarshal(t, Segment{Src: netip.MustParseAddrPort("[::1]:1"), Dst: netip.MustParseAddrPort("[::1]:2"), Flags: SYN, Payload: []byte("data")})
	badOffset := append([]byte{}, syn4...)
	badOffset[20+12] = 0x40 // data offset 4 words
	tests := []struct {
		name string
		pkt  []byte
		want string
	}{
		{"empty", nil, "empty packet"},
		{"version 5", []byte{0x50, 0, 0, 0}, "unknown IP version 5"},
		{"short ipv4 header", syn4[:19], "craft: parse"},
		{"ipv4 header only", syn4[:20], "truncated"},
		{"short tcp header", syn4[:30], "craft: parse"},
		{"tcp options cut", syn4[:44], "craft: parse"},
		{"payload cut", syn4[:len(syn4)-1], "truncated"},
		{"tcp data offset below 5", badOffset, "craft: parse"},
		{"short ipv6 header", syn6[:39], "craft: parse"},
		{"ipv6 payload cut", syn6[:len(syn6)-2], "truncated"},
		{"icmp quote too short", icmp4Error(t, "127.0.0.2", "127.0.0.1", 3, 3, syn4[:27]), "quotes too little"},
		{"icmp quote of ip header cut", icmp4Error(t, "127.0.0.2", "127.0.0.1", 3, 3, syn4[:10]), "quotes too little"},
		{"icmpv6 quote too short", icmp6Error(t, "::2", "::1", 1, 4, syn6[:47]), "quotes too little"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pkt Packet
			err := NewParser().Parse(tt.pkt, &pkt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	seg := Segment{Src: netip.MustParseAddrPort("198.51.100.1:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:80"),
		Seq: 1, Ack: 2, Flags: PSH | ACK, Window: 100,
		Options: SYNOptions(SYNOptionSet{MSS: 1460, WScale: 7, SACKOK: true, Timestamp: true}), Payload: []byte("payload")}
	v4 := mustMarshal(t, seg)
	seg6 := seg
	seg6.Src, seg6.Dst = netip.MustParseAddrPort("[2001:db8::1]:40000"), netip.MustParseAddrPort("[2001:db8::2]:80")
	v6 := mustMarshal(t, seg6)
	tests := []struct {
		name string
		pkt  []byte
		kind Kind
	}{
		{"tcp v4 with options and payload", v4, KindTCP},
		{"tcp v6 with options and payload", v6, KindTCP},
		{"icmp error", icmp4Error(t, "198.51.100.2", "198.51.100.1", 3, 3, v4), KindICMP},
		{"icmpv6 error", icmp6Error(t, "2001:db8::2", "2001:db8::1", 1, 4, v6), KindICMP},
	}
	p := NewParser()
	var pkt Packet
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Parse(tt.pkt, &pkt); err != nil || pkt.Kind != tt.kind {
				t.Fatalf("Parse = kind %v, %v; want %v", pkt.Kind, err, tt.kind)
			}
			allocs := testing.AllocsPerRun(100, func() {
				if err := p.Parse(tt.pkt, &pkt); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("Parse allocates %v times per call, want 0", allocs)
			}
		})
	}
}

func TestParserAliasingAndClone(t *testing.T) {
	seg := Segment{Src: netip.MustParseAddrPort("127.0.0.1:1"), Dst: netip.MustParseAddrPort("127.0.0.1:2"),
		Flags: PSH | ACK, Options: Options{MSS(1460)}, Payload: []byte("abc")}
	b := mustMarshal(t, seg)
	p := NewParser()
	var pkt Packet
	if err := p.Parse(b, &pkt); err != nil {
		t.Fatal(err)
	}
	kept := pkt.Seg.Clone()
	aliased := pkt.Seg
	for i := range b {
		b[i] = 0xff
	}
	if diff := cmp.Diff(normalized(seg), kept, netipOpt()); diff != "" {
		t.Errorf("clone changed when the buffer was reused (-want +got):\n%s", diff)
	}
	if string(aliased.Payload) == "abc" {
		t.Error("Parse copied the payload; it should alias the input")
	}
	// Clone keeps nil slices nil.
	empty := Segment{}
	if c := empty.Clone(); c.Options != nil || c.Payload != nil {
		t.Errorf("Clone of an empty segment = %+v, want nil slices", c)
	}
}
