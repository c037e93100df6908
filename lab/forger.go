package lab

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Bounds of the forger's traffic: every flood and every forging run stops by itself.
const (
	MaxFloodPackets  = 2_000_000
	MaxFloodDuration = 60 * time.Second
	DefaultFloodRate = 30_000
	MaxForged        = 100_000
	MaxForgeDuration = 120 * time.Second
)

// FloodConfig describes a flood of unrelated TCP that Flood puts on the lab link towards the client: IPv4
// segments with the client's MAC address as destination, on 4-tuples other than the one named here (other client
// ports from the server's port, other server ports to the client's port, another source host, another destination
// host). None of them belongs to the connection ClientPort–ServerPort.
type FloodConfig struct {
	Packets  int           // frames to send, 1 to MaxFloodPackets
	Rate     int           // frames per second at most; 0 means DefaultFloodRate
	Duration time.Duration // stop after this long even if Packets were not all sent, up to MaxFloodDuration
	// ClientPort and ServerPort name the connection the flood must not touch (either may be 0: none).
	ClientPort, ServerPort uint16
}

// FloodStats says what Flood sent.
type FloodStats struct {
	Sent    int
	Elapsed time.Duration
}

// check validates the bounds of a flood.
func (c FloodConfig) check() error {
	switch {
	case c.Packets < 1 || c.Packets > MaxFloodPackets:
		return fmt.Errorf("lab: flood: %d packets outside 1..%d", c.Packets, MaxFloodPackets)
	case c.Duration <= 0 || c.Duration > MaxFloodDuration:
		return fmt.Errorf("lab: flood: duration %v outside (0, %v]", c.Duration, MaxFloodDuration)
	case c.Rate < 0:
		return fmt.Errorf("lab: flood: negative rate %d", c.Rate)
	}
	return nil
}

// ForgeConfig describes what Forge does to one connection between the client and the server, IPv4 only: for each
// data segment the server sends the client, it sends the client, in turn, an exact duplicate; the same segment
// again after the next one (reordered); a segment at the next expected seq whose ack is far above what the client
// sent (RFC 9293: an ACK of unsent data is answered and dropped); one whose ack is far below what the server
// acknowledged (RFC 5961 §5.2: discarded); and one 2^30 past the window (not acceptable). Forged data is filled
// with 'X', so a receiver that takes any of it for the peer's corrupts its stream visibly.
type ForgeConfig struct {
	ServerPort uint16 // the server's port of the connection
	// ClientPort is the client's port of the connection; 0 takes the first client port seen sending data from
	// ServerPort.
	ClientPort uint16
	Max        int           // forged segments to send at most, 1 to MaxForged
	Duration   time.Duration // stop after this long, up to MaxForgeDuration
	// Kinds chooses which forgeries the rotation includes; 0 means all of them.
	Kinds ForgeKind
	// Ready, if not nil, is called once the forger listens, before any segment of the connection could be missed.
	Ready func()
}

// ForgeKind is a set of the forgeries Forge sends.
type ForgeKind uint8

// The forgeries, in the order of the rotation.
const (
	ForgeDuplicate   ForgeKind = 1 << iota // an exact copy of the server's segment (its first 1000 bytes)
	ForgeReordered                         // the same copy, sent after the server's next data segment
	ForgeAckAbove                          // 'X' data at the next expected seq, ack 2^28 beyond the server's
	ForgeAckBelow                          // 'X' data at the next expected seq, ack 2^30 below the server's
	ForgeOutOfWindow                       // 'X' data 2^30 past the segment's seq
	ForgeAll         = ForgeDuplicate | ForgeReordered | ForgeAckAbove | ForgeAckBelow | ForgeOutOfWindow
)

// ForgeStats counts what Forge saw and sent.
type ForgeStats struct {
	ClientPort  uint16 // the connection's client port (learnt if not given)
	Seen        int    // data segments from the server to the client seen on the link
	Duplicate   int    // exact copies sent
	Reordered   int    // copies sent after a later segment
	AckAbove    int    // forged data with an ack of data the client never sent
	AckBelow    int    // forged data with an ack far below what the server acknowledged
	OutOfWindow int    // forged data 2^30 past the expected seq
}

// Forged is the number of segments Forge sent.
func (s ForgeStats) Forged() int {
	return s.Duplicate + s.Reordered + s.AckAbove + s.AckBelow + s.OutOfWindow
}

func (c ForgeConfig) check() error {
	switch {
	case c.ServerPort == 0:
		return fmt.Errorf("lab: forge: no server port")
	case c.Max < 1 || c.Max > MaxForged:
		return fmt.Errorf("lab: forge: %d segments outside 1..%d", c.Max, MaxForged)
	case c.Duration <= 0 || c.Duration > MaxForgeDuration:
		return fmt.Errorf("lab: forge: duration %v outside (0, %v]", c.Duration, MaxForgeDuration)
	case c.Kinds&^ForgeAll != 0:
		return fmt.Errorf("lab: forge: unknown kinds %#x", c.Kinds&^ForgeAll)
	}
	return nil
}

// Offsets and sizes of the frames the forger reads and writes: Ethernet II, IPv4 without options is not assumed
// (the IHL is read), TCP with whatever options the original carried.
const (
	ethLen      = 14
	etherTypeV4 = 0x0800
	protoTCP    = 6
)

// frameTCP is a parsed Ethernet/IPv4/TCP frame: offsets into b, which it does not copy.
type frameTCP struct {
	b             []byte
	ip, tcp, data int // offsets of the IPv4 header, TCP header and payload
	srcIP, dstIP  [4]byte
	sport, dport  uint16
	seq, ack      uint32
	flags         byte
	end           int // end of the IP packet in b (frames may be padded)
	payloadLen    int
}

// id is the frame's IPv4 identification.
func (f frameTCP) id() uint16 { return binary.BigEndian.Uint16(f.b[f.ip+4 : f.ip+6]) }

// parseFrameTCP parses an Ethernet/IPv4/TCP frame, or reports false.
func parseFrameTCP(b []byte) (frameTCP, bool) {
	f := frameTCP{b: b, ip: ethLen}
	if len(b) < ethLen+20 || binary.BigEndian.Uint16(b[12:14]) != etherTypeV4 {
		return f, false
	}
	ip := b[ethLen:]
	if ip[0]>>4 != 4 || ip[9] != protoTCP {
		return f, false
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total < ihl+20 || ethLen+total > len(b) {
		return f, false
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 { // a fragment
		return f, false
	}
	f.tcp = ethLen + ihl
	f.end = ethLen + total
	t := b[f.tcp:f.end]
	off := int(t[12]>>4) * 4
	if off < 20 || off > len(t) {
		return f, false
	}
	copy(f.srcIP[:], ip[12:16])
	copy(f.dstIP[:], ip[16:20])
	f.sport = binary.BigEndian.Uint16(t[0:2])
	f.dport = binary.BigEndian.Uint16(t[2:4])
	f.seq = binary.BigEndian.Uint32(t[4:8])
	f.ack = binary.BigEndian.Uint32(t[8:12])
	f.flags = t[13]
	f.data = f.tcp + off
	f.payloadLen = f.end - f.data
	return f, true
}

// forgeFrom builds a new frame from f's Ethernet, IPv4 and TCP headers (options kept) with seq, ack and payload;
// IP length, IP id and both checksums are recomputed.
func forgeFrom(f frameTCP, seq, ack uint32, payload []byte, id uint16) []byte {
	hdr := f.data
	out := make([]byte, hdr+len(payload))
	copy(out, f.b[:hdr])
	copy(out[hdr:], payload)
	ip := out[ethLen:f.tcp]
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(out)-ethLen))
	binary.BigEndian.PutUint16(ip[4:6], id)
	t := out[f.tcp:]
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	fixChecksums(out, f.tcp)
	return out
}

// maxForgedPayload bounds the payload of every forged frame, so it fits the link's MTU of 1500 whatever the
// headers: a real segment seen as a larger (GSO) frame is copied in part, from its first byte.
const maxForgedPayload = 1000

// fixChecksums recomputes the IPv4 header checksum and the TCP checksum of an Ethernet/IPv4/TCP frame whose TCP
// header starts at tcpOff and whose IP packet ends at the end of b.
func fixChecksums(b []byte, tcpOff int) {
	ip := b[ethLen:tcpOff]
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip, 0))
	t := b[tcpOff:]
	t[16], t[17] = 0, 0
	var pseudo uint32
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(ip[i : i+2]))
	}
	pseudo += protoTCP + uint32(len(t))
	binary.BigEndian.PutUint16(t[16:18], checksum(t, pseudo))
}

// checksum is the Internet checksum (RFC 1071) of b, starting from the partial sum initial.
func checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i : i+2]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// floodFrame builds one unrelated IPv4 TCP frame (ACK, with PSH and 64 bytes of data when push) from src to dst.
func floodFrame(dstMAC, srcMAC [6]byte, src, dst [4]byte, sport, dport uint16, seq, ack uint32, push bool) []byte {
	n := 0
	flags := byte(0x10)
	if push {
		n, flags = 64, 0x18
	}
	b := make([]byte, ethLen+20+20+n)
	copy(b[0:6], dstMAC[:])
	copy(b[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(b[12:14], etherTypeV4)
	ip := b[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+20+n))
	binary.BigEndian.PutUint16(ip[4:6], uint16(sport^dport))
	ip[6] = 0x40 // don't fragment
	ip[8] = 64
	ip[9] = protoTCP
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	t := ip[20:]
	binary.BigEndian.PutUint16(t[0:2], sport)
	binary.BigEndian.PutUint16(t[2:4], dport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12] = 5 << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:16], 64240)
	for i := 20; i < len(t); i++ {
		t[i] = 'f'
	}
	fixChecksums(b, ethLen+20)
	return b
}
