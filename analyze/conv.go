package analyze

import (
	"net/netip"
	"strings"

	"tcpshake/craft"
)

// The words of event.Connection's Opened field.
const (
	OpenedThreeWay     = "3-way"
	OpenedSimultaneous = "simultaneous-open"
	OpenedNoHandshake  = "no-handshake"
	OpenedRefused      = "refused"
	OpenedUnanswered   = "unanswered"
	OpenedIncomplete   = "incomplete"
	openedICMPPrefix   = "icmp-"
)

// The words of event.Connection's Closed field.
const (
	ClosedFourWay      = "4-way-fin"
	ClosedFinAck       = "fin-ack-combined"
	ClosedHalfClose    = "half-close"
	ClosedSimultaneous = "simultaneous-close"
	ClosedRSTClient    = "rst-by-client"
	ClosedRSTServer    = "rst-by-server"
	ClosedHalfAtEnd    = "half-closed-at-end"
	ClosedOpenAtEnd    = "open-at-end"
	ClosedNever        = "never-opened"
)

// defaultOOOThreshold is how soon after the highest segment a lower one must come to count as out of order when
// the handshake's round trip is unknown; Wireshark uses the same 3 ms.
const defaultOOOThreshold = 3_000_000 // ns

// fastRetransWindow is how soon after the peer's duplicate ACKs a retransmission counts as fast (Wireshark: 20 ms).
const fastRetransWindow = 20_000_000 // ns

// key names a conversation independently of direction: A is the smaller endpoint.
type key struct{ a, b netip.AddrPort }

func keyOf(x, y netip.AddrPort) key {
	if x.Compare(y) > 0 {
		x, y = y, x
	}
	return key{x, y}
}

// side is what one direction (one sender) of a conversation has shown. The sequence numbers are those the
// sender used.
type side struct {
	seen    bool
	syn     bool      // sent a SYN without ACK
	synAck  bool      // sent a SYN with ACK
	isn     craft.Seq // the SYN's sequence number, valid when syn or synAck
	nextSeq craft.Seq // highest seq+len sent so far (Wireshark's nextseq)
	nextSet bool
	nextAt  int64 // when nextSeq last advanced (ns)

	ackSet    bool
	lastAck   craft.Seq
	lastAckAt int64  // when lastAck changed or was last repeated by a duplicate ACK
	dupAcks   int    // duplicate ACKs in a row (Wireshark's dupacknum)
	window    uint16 // of the last segment

	fin        bool
	finSeq     craft.Seq // the sequence number the FIN occupies
	finAckWith bool      // the FIN segment acknowledged the peer's FIN
	ackedPeer  bool      // acknowledged the peer's FIN (with any segment)
	dataAfter  bool      // sent new data after the peer's FIN
	finAt      uint64    // packet number (within the conversation) of the first FIN
	ackedAtFin bool      // had acknowledged the peer's FIN in an earlier segment when sending its FIN
	rst        bool

	// relative numbers as Wireshark shows them
	base    craft.Seq
	baseSet bool
}

// conv is one TCP conversation.
type conv struct {
	index          int
	client, server netip.AddrPort
	first, last    int64 // capture time of the first and last packet (ns since the epoch)
	pkts, bytes    [2]uint64
	retrans, ooo   uint64
	icmp           uint64
	icmpReason     string
	shown          bool  // passes the filter
	handshakeAck   bool  // the client acknowledged the server's SYN
	handshakeRTT   int64 // from the client's last SYN to its ACK of the server's SYN (Wireshark's iRTT), ns
	lastSYNAt      int64
	prevNext       craft.Seq // the sender's highest seq+len before the last segment (for the story's words)
	closedBy       closedBy  // what finished the conversation
	closedAt       int64
	npkts          uint64
	sides          [2]side // 0: sent by the client, 1: sent by the server
	story          *story
}

// dirOf is 0 for a segment from the client, 1 from the server.
func (c *conv) dirOf(src netip.AddrPort) int {
	if src == c.client {
		return 0
	}
	return 1
}

// segmentOutcome is what the sequence analysis found about one segment.
type segmentOutcome uint8

const (
	segNormal segmentOutcome = iota
	segRetrans
	segOutOfOrder
	segKeepAlive
)

// observe accounts one TCP segment of frameLen bytes captured at t (ns).
func (c *conv) observe(seg *craft.Segment, frameLen int, t int64) segmentOutcome {
	d := c.dirOf(seg.Src)
	s, peer := &c.sides[d], &c.sides[1-d]
	c.npkts++
	c.pkts[d]++
	c.bytes[d] += uint64(frameLen)
	c.last = t
	f := seg.Flags
	s.seen = true

	if !s.baseSet {
		s.base, s.baseSet = seg.Seq, true
		if !f.Has(craft.SYN) {
			s.base-- // Wireshark: the first segment of a direction met in mid-stream has relative seq 1
		}
	}
	if f.Has(craft.ACK) && !peer.baseSet {
		peer.base, peer.baseSet = seg.Ack-1, true
	}

	out := c.sequence(s, peer, seg, t)

	if f.Has(craft.SYN) {
		if f.Has(craft.ACK) {
			s.synAck = true
		} else {
			s.syn = true
			if d == 0 {
				c.lastSYNAt = t
			}
		}
		s.isn = seg.Seq
		s.base, s.baseSet = seg.Seq, true
	}
	if f.Has(craft.RST) && !s.rst {
		s.rst = true
		if c.closedBy == closedByNone {
			c.closedBy, c.closedAt = closedByRSTClient+closedBy(d), t
		}
	}
	if f.Has(craft.ACK) {
		// Wireshark's duplicate ACK: no data, SYN, FIN or RST, the same window, seq and ack as before.
		switch {
		case s.ackSet && seg.Ack == s.lastAck && len(seg.Payload) == 0 && seg.Window != 0 && seg.Window == s.window &&
			f&(craft.SYN|craft.FIN|craft.RST) == 0 && seg.Seq == s.nextSeq:
			s.dupAcks++
			s.lastAckAt = t
		case !s.ackSet || seg.Ack != s.lastAck:
			s.dupAcks = 0
			s.lastAckAt = t
		case seg.Len() == 0:
			s.dupAcks = 0 // a window update or another pure ACK ends the run; data segments do not (as in tshark)
		}
		s.ackSet, s.lastAck = true, seg.Ack
	}
	s.window = seg.Window
	if f.Has(craft.ACK) {
		if d == 0 && !c.handshakeAck && !f.Has(craft.SYN) && peer.synAck && peer.isn.LessThan(seg.Ack) {
			c.handshakeAck, c.handshakeRTT = true, t-c.lastSYNAt
		}
		if peer.fin && peer.finSeq.LessThan(seg.Ack) {
			if f.Has(craft.FIN) && !s.fin && !s.ackedPeer {
				s.finAckWith = true
			}
			s.ackedPeer = true
		}
	}
	if len(seg.Payload) > 0 && peer.fin && out == segNormal {
		s.dataAfter = true
	}
	if f.Has(craft.FIN) && !s.fin {
		s.fin, s.finSeq, s.finAt = true, seg.End()-1, c.npkts
		s.ackedAtFin = s.ackedPeer && !s.finAckWith
	}
	if c.closedBy == closedByNone && s.fin && peer.fin && s.ackedPeer && peer.ackedPeer {
		c.closedBy, c.closedAt = closedByFIN, t
	}
	switch out {
	case segRetrans:
		c.retrans++
	case segOutOfOrder:
		c.ooo++
	}
	return out
}

// sequence is Wireshark's basic sequence analysis (packet-tcp.c, tcp_analyze_sequence_number): a segment that
// occupies sequence space (data, SYN or FIN) and starts below the highest seq+len its sender already used is a
// retransmission, unless it came within one handshake round trip (3 ms when unknown) of the highest one and does
// not end where it did, which makes it out of order. It is a (fast) retransmission after all when the peer sent at
// least two duplicate ACKs for exactly its seq within the last 20 ms. A keep-alive (at most one byte at
// highest-1) is neither.
func (c *conv) sequence(s, peer *side, seg *craft.Segment, t int64) segmentOutcome {
	f := seg.Flags
	n := seg.Len()
	out := segNormal
	c.prevNext = s.nextSeq
	if s.nextSet {
		switch {
		case len(seg.Payload) <= 1 && !f.Has(craft.SYN) && !f.Has(craft.FIN) && !f.Has(craft.RST) &&
			seg.Seq == s.nextSeq-1:
			out = segKeepAlive
		case n > 0 && seg.Seq.LessThan(s.nextSeq) && peer.dupAcks >= 2 && peer.lastAck == seg.Seq &&
			t-peer.lastAckAt < fastRetransWindow:
			out = segRetrans
		case n > 0 && seg.Seq.LessThan(s.nextSeq):
			thresh := int64(defaultOOOThreshold)
			if c.handshakeAck && c.sides[0].syn {
				thresh = c.handshakeRTT
			}
			if t-s.nextAt < thresh && s.nextSeq != seg.Seq.Add(n) {
				out = segOutOfOrder
			} else {
				out = segRetrans
			}
		}
	}
	if end := seg.Seq.Add(n); (!s.nextSet || s.nextSeq.LessThan(end)) && !f.Has(craft.RST) {
		s.nextSeq, s.nextSet, s.nextAt = end, true, t
	}
	return out
}

// finished reports whether the conversation is over: both FINs acknowledged, or reset.
func (c *conv) finished() bool { return c.closedBy != closedByNone }

// closedBy says what finished a conversation first.
type closedBy uint8

const (
	closedByNone closedBy = iota
	closedByFIN
	closedByRSTClient
	closedByRSTServer
)

// opened classifies how the conversation began.
func (c *conv) opened() string {
	cl, sv := &c.sides[0], &c.sides[1]
	switch {
	case cl.syn && sv.syn:
		return OpenedSimultaneous
	case cl.syn && sv.synAck && c.handshakeAck:
		return OpenedThreeWay
	case cl.syn && sv.synAck:
		return OpenedIncomplete
	case cl.syn && sv.rst:
		return OpenedRefused
	case cl.syn && c.icmpReason != "" && !sv.seen:
		return openedICMPPrefix + c.icmpReason
	case cl.syn && !sv.seen:
		return OpenedUnanswered
	}
	return OpenedNoHandshake
}

// closed classifies how the conversation ended.
func (c *conv) closed(opened string) string {
	cl, sv := &c.sides[0], &c.sides[1]
	if opened == OpenedUnanswered || strings.HasPrefix(opened, openedICMPPrefix) {
		return ClosedNever
	}
	switch c.closedBy {
	case closedByRSTClient:
		return ClosedRSTClient
	case closedByRSTServer:
		return ClosedRSTServer
	}
	switch {
	case cl.fin && sv.fin:
		second := sv
		if sv.finAt < cl.finAt {
			second = cl
		}
		switch {
		case !second.ackedAtFin && !second.finAckWith:
			return ClosedSimultaneous
		case second.dataAfter:
			return ClosedHalfClose
		case second.finAckWith:
			return ClosedFinAck
		}
		return ClosedFourWay
	case cl.fin || sv.fin:
		return ClosedHalfAtEnd
	}
	return ClosedOpenAtEnd
}
