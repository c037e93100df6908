package capture

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"tcpshake/craft"
)

// tcpPacket marshals a SYN from src to dst.
func tcpPacket(t *testing.T, src, dst string) []byte {
	t.Helper()
	seg := craft.Segment{
		Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst),
		Seq: 1000, Flags: craft.SYN, Window: 1024,
	}
	b, err := seg.Marshal()
	if err != nil {
		t.Fatalf("marshal %v: %v", seg.String(), err)
	}
	return b
}

// icmpPacket builds an ICMP (or ICMPv6) destination unreachable from src to
// dst quoting quote.
func icmpPacket(t *testing.T, src, dst string, quote []byte) []byte {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if s.Is6() {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodePortUnreachable)}
		if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		err = gopacket.SerializeLayers(buf, opts, ip, ic, gopacket.Payload(append([]byte{0, 0, 0, 0}, quote...)))
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
		err = gopacket.SerializeLayers(buf, opts, ip, ic, gopacket.Payload(quote))
	}
	if err != nil {
		t.Fatalf("serialize icmp: %v", err)
	}
	return buf.Bytes()
}

// udpPacket builds a UDP datagram from src to dst.
func udpPacket(t *testing.T, src, dst string) []byte {
	t.Helper()
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	buf := gopacket.NewSerializeBuffer()
	udp := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
	var nl gopacket.SerializableLayer
	if s.Addr().Is6() {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(ip)
		nl = ip
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(ip)
		nl = ip
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, nl, udp, gopacket.Payload("hi")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// vm assembles the filter for peer as the kernel gets it and loads it into
// x/net/bpf's interpreter.
func vm(t *testing.T, peer netip.Addr) *bpf.VM {
	t.Helper()
	raw, err := Filter(peer)
	if err != nil {
		t.Fatalf("Filter(%v): %v", peer, err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("Filter(%v): the assembled program does not disassemble", peer)
	}
	v, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("Filter(%v): %v", peer, err)
	}
	return v
}

func TestFilter(t *testing.T) {
	syn4 := tcpPacket(t, "198.51.100.1:40000", "198.51.100.2:80")
	syn6 := tcpPacket(t, "[2001:db8::1]:40000", "[2001:db8::2]:80")
	// An ARP request as a SOCK_DGRAM packet socket delivers it: hardware type
	// 1, protocol type 0x0800, sizes 6 and 4, opcode 1, then addresses.
	arp := []byte{0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, 2, 0, 0, 0, 0, 1, 198, 51, 100, 1, 0, 0, 0, 0, 0, 0, 198, 51, 100, 2}

	packets := map[string][]byte{
		"tcp4 to peer":      syn4,
		"tcp4 from peer":    tcpPacket(t, "198.51.100.2:80", "198.51.100.1:40000"),
		"tcp4 other hosts":  tcpPacket(t, "198.51.100.1:40000", "198.51.100.3:80"),
		"tcp6 to peer":      syn6,
		"tcp6 from peer":    tcpPacket(t, "[2001:db8::2]:80", "[2001:db8::1]:40000"),
		"tcp6 other hosts":  tcpPacket(t, "[2001:db8::1]:40000", "[2001:db8::3]:80"),
		"tcp6 peer prefix":  tcpPacket(t, "[2001:db8::1]:40000", "[2001:db8:0:0:1::2]:80"),
		"icmp4 from router": icmpPacket(t, "192.0.2.254", "198.51.100.1", syn4),
		"icmp6 from router": icmpPacket(t, "2001:db8:ffff::1", "2001:db8::1", syn6),
		"udp4 to peer":      udpPacket(t, "198.51.100.1:40000", "198.51.100.2:53"),
		"udp6 to peer":      udpPacket(t, "[2001:db8::1]:40000", "[2001:db8::2]:53"),
		"arp":               arp,
		"empty":             {},
	}
	tests := []struct {
		peer   string // "" for none
		accept []string
	}{
		{"198.51.100.2", []string{"tcp4 to peer", "tcp4 from peer", "icmp4 from router", "icmp6 from router"}},
		{"2001:db8::2", []string{"tcp6 to peer", "tcp6 from peer", "icmp4 from router", "icmp6 from router"}},
		{"", []string{"tcp4 to peer", "tcp4 from peer", "tcp4 other hosts",
			"tcp6 to peer", "tcp6 from peer", "tcp6 other hosts", "tcp6 peer prefix", "icmp4 from router", "icmp6 from router"}},
	}
	for _, tt := range tests {
		var peer netip.Addr
		if tt.peer != "" {
			peer = netip.MustParseAddr(tt.peer)
		}
		t.Run("peer="+tt.peer, func(t *testing.T) {
			v := vm(t, peer)
			accept := map[string]bool{}
			for _, n := range tt.accept {
				accept[n] = true
			}
			for name, pkt := range packets {
				n, err := v.Run(pkt)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if got := n > 0; got != accept[name] {
					t.Errorf("%s: accepted %v, want %v", name, got, accept[name])
				}
				if n > 0 && n < len(pkt) {
					t.Errorf("%s: kept %d of %d bytes, want all", name, n, len(pkt))
				}
			}
		})
	}
}

// TestFilterSnapLen checks that an accepted packet is kept whole, up to the
// largest IP packet.
func TestFilterSnapLen(t *testing.T) {
	prog := filterProgram(netip.Addr{})
	last := prog[len(prog)-2]
	if r, ok := last.(bpf.RetConstant); !ok || r.Val != snapLen {
		t.Errorf("accept instruction %v, want RetConstant{Val: %d}", last, snapLen)
	}
}
