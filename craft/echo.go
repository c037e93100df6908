package craft

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// EchoRequest returns an ICMP echo request (IPv4) or ICMPv6 echo request
// (IPv6) from src to dst with identifier id and sequence number seq, as a
// whole IP packet with correct checksums. It does no I/O.
func EchoRequest(src, dst netip.Addr, id, seq uint16) ([]byte, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, errors.New("craft: echo request: invalid or mixed-family addresses")
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	payload := gopacket.Payload("tcpshake rtt")
	var err error
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: DefaultTTL, Protocol: layers.IPProtocolICMPv4, Flags: layers.IPv4DontFragment,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: id, Seq: seq}
		err = gopacket.SerializeLayers(buf, opts, ip, icmp, payload)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: DefaultTTL, NextHeader: layers.IPProtocolICMPv6,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, fmt.Errorf("craft: echo request: %w", err)
		}
		echo := &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}
		err = gopacket.SerializeLayers(buf, opts, ip, icmp, echo, payload)
	}
	if err != nil {
		return nil, fmt.Errorf("craft: echo request: %w", err)
	}
	return buf.Bytes(), nil
}
