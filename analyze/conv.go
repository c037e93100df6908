package analyze

import (
	"net/netip"
	"strings"

	"tcpshake/craft"
	"tcpshake/event"
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
	seen   bool
	syn    bool      // sent a SYN without ACK
	synAck bool      // sent a SYN with ACK
	isn    craft.Seq // the SYN's sequence number, valid when syn or synAck
	// Wireshark's tcp_analyze_seq_info for this direction; as there, 0 stands for "not seen yet".
	nextSeq   craft.Seq // highest seq+len (+1 for SYN/FIN) sent so far (nextseq)
	nextAt    int64     // when nextSeq last advanced (ns)
	maxToAck  craft.Seq // the highest contiguous seq sent (maxseqtobeacked)
	lastAck   craft.Seq // the ack field of the last segment (with or without the ACK bit, as Wireshark)
	lastAckAt int64     // when the last segment was seen (lastacktime)
	dupAcks   int       // duplicate ACKs in a row (dupacknum; -1 after an ACK of an unseen segment)
	window    uint16    // raw window field of the last segment
	winSet    bool
	lastFlags analysis // what the analysis found about the last segment (lastsegmentflags)

	fin        bool
	finSeq     craft.Seq // the sequence number the FIN occupies
	finAckWith bool      // the FIN segment acknowledged the peer's FIN
	ackedPeer  bool      // acknowledged the peer's FIN (with any segment)
	dataAfter  bool      // sent new data after the peer's FIN
	finAt      uint64    // packet number (within the conversation) of the first FIN
	ackedAtFin bool      // had acknowledged the peer's FIN in an earlier segment when sending its FIN
	finLost    bool      // its FIN was sent again after the peer's FIN, which did not acknowledge it: lost
	rst        bool
	isnSet     bool
	wscale     int8 // the window scale its first SYN offered (valid when isnSet); -2 none

	// tsBase is Wireshark's base_seq, which decides port reuse; base is the origin of the relative numbers the
	// story shows: the same, except after an in-window SYN split the conversation, when it goes on from the
	// connection's old origin.
	tsBase    craft.Seq
	tsBaseSet bool
	base      craft.Seq
	baseSet   bool
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
	shown          bool      // passes the filter
	handshakeAck   bool      // the client acknowledged the server's SYN
	mruSYN         int64     // when the last SYN without ACK was seen (Wireshark's ts_mru_syn), 0: none yet
	firstRTT       int64     // from it to the first ACK without SYN (Wireshark's iRTT, ts_first_rtt), 0: unknown
	prevNext       craft.Seq // the sender's highest seq+len before the last segment (for the story's words)
	prevPeerAck    craft.Seq // the other side's last ack before the last segment
	prevWindow     uint16    // the sender's window before the last segment
	dupNum         int       // the duplicate ACK's number when the last segment was one
	splitFrom      int       // the open conversation a SYN with a new seq split this one from (0: none)
	closedBy       closedBy  // what finished the conversation
	closedAt       int64
	npkts          uint64
	sides          [2]side // 0: sent by the client, 1: sent by the server
	story          *story
	segs           event.SegmentCount // by phase, as the teaching texts count (told with --conn)
	data           [2]int             // new data bytes each way (not retransmitted copies)
}

// dirOf is 0 for a segment from the client, 1 from the server.
func (c *conv) dirOf(src netip.AddrPort) int {
	if src == c.client {
		return 0
	}
	return 1
}

// analysis is what Wireshark's sequence analysis (packet-tcp.c, tcp_analyze_sequence_number) finds about one
// segment: its TCP_A_* flags, one bit each, in the words of tcp.analysis.*.
type analysis uint16

const (
	aRetrans            analysis = 1 << iota // tcp.analysis.retransmission (and nothing more specific)
	aFastRetrans                             // tcp.analysis.fast_retransmission
	aSpurious                                // tcp.analysis.spurious_retransmission
	aOutOfOrder                              // tcp.analysis.out_of_order
	aKeepAlive                               // tcp.analysis.keep_alive
	aKeepAliveAck                            // tcp.analysis.keep_alive_ack
	aDupAck                                  // tcp.analysis.duplicate_ack
	aWindowUpdate                            // tcp.analysis.window_update
	aZeroWindow                              // tcp.analysis.zero_window
	aZeroWindowProbe                         // tcp.analysis.zero_window_probe
	aZeroWindowProbeAck                      // tcp.analysis.zero_window_probe_ack
	aLostSegment                             // tcp.analysis.lost_segment (previous segment not captured)
	aAckLostSegment                          // tcp.analysis.ack_lost_segment (ACKed unseen segment)
)

// analysisWords are the flags' names in event.Step.Analysis, in bit order: Wireshark's field names with dashes.
var analysisWords = [...]string{"retransmission", "fast-retransmission", "spurious-retransmission", "out-of-order",
	"keep-alive", "keep-alive-ack", "duplicate-ack", "window-update", "zero-window", "zero-window-probe",
	"zero-window-probe-ack", "lost-segment", "ack-lost-segment"}

// retransmission reports whether tshark shows tcp.analysis.retransmission for the segment: Wireshark adds that
// expert item for fast and spurious retransmissions too.
func (a analysis) retransmission() bool { return a&(aRetrans|aFastRetrans|aSpurious) != 0 }

// words lists the flags by name.
// A fast or spurious retransmission is named a retransmission too, as tshark shows both fields.
func (a analysis) words() []string {
	if a == 0 {
		return nil
	}
	var w []string
	for i, name := range analysisWords {
		if a&(1<<i) != 0 || (i == 0 && a.retransmission()) {
			w = append(w, name)
		}
	}
	return w
}

// observe accounts one TCP segment of frameLen bytes captured at t (ns).
func (c *conv) observe(seg *craft.Segment, frameLen int, t int64) analysis {
	d := c.dirOf(seg.Src)
	s, peer := &c.sides[d], &c.sides[1-d]
	c.npkts++
	c.pkts[d]++
	c.bytes[d] += uint64(frameLen)
	c.first, c.last = min(c.first, t), max(c.last, t) // the earliest and latest: records need not be in time order
	f := seg.Flags
	s.seen = true

	if !s.tsBaseSet {
		s.tsBase, s.tsBaseSet = seg.Seq, true
		if !f.Has(craft.SYN) {
			s.tsBase-- // Wireshark: the first segment of a direction met in mid-stream has relative seq 1
		}
	}
	if f.Has(craft.ACK) && !peer.tsBaseSet {
		peer.tsBase, peer.tsBaseSet = seg.Ack-1, true
	}
	if !s.baseSet {
		s.base, s.baseSet = s.tsBase, true
	}
	if !peer.baseSet && peer.tsBaseSet {
		peer.base, peer.baseSet = peer.tsBase, true
	}

	// The teaching texts' count: a bare ACK past the other side's FIN belongs to the close.
	c.segs.Add(seg, peer.fin && f.Has(craft.ACK) && peer.finSeq.LessThan(seg.Ack))
	out := c.sequence(s, peer, seg, t)
	if !out.retransmission() {
		c.data[d] += len(seg.Payload)
	}
	// Wireshark's iRTT: from the most recent SYN without ACK to the first ACK without SYN after it.
	switch {
	case f&(craft.SYN|craft.ACK) == craft.SYN:
		c.mruSYN = t
	case f&(craft.SYN|craft.ACK) == craft.ACK && c.firstRTT == 0 && c.mruSYN != 0:
		c.firstRTT = t - c.mruSYN
	}

	if f.Has(craft.SYN) {
		if f.Has(craft.ACK) {
			s.synAck = true
		} else {
			s.syn = true
		}
		if !s.isnSet {
			// Wireshark keeps the first base: after a later SYN (an in-window SYN, say) the relative numbers
			// go on from the same origin.
			s.isn, s.isnSet = seg.Seq, true
			if ws, ok := seg.Options.WindowScale(); ok {
				s.wscale = int8(min(ws, 14))
			} else {
				s.wscale = -2 // a SYN without the option: no scaling (RFC 7323 §2.2)
			}
		}
	}
	if f.Has(craft.RST) {
		s.rst = true
		if c.closedBy == closedByNone && c.rstInWindow(d, seg) {
			c.closedBy, c.closedAt = closedByRSTClient+closedBy(d), t
		}
	}
	if f.Has(craft.ACK) {
		// A reset that acknowledges the SYN-ACK refuses the connection: it does not complete the handshake.
		if d == 0 && !c.handshakeAck && !f.Has(craft.SYN) && !f.Has(craft.RST) && peer.synAck && peer.isn.LessThan(seg.Ack) {
			c.handshakeAck = true
		}
		if peer.fin && peer.finSeq.LessThan(seg.Ack) {
			if f.Has(craft.FIN) && !s.fin && !s.ackedPeer {
				s.finAckWith = true
			}
			s.ackedPeer = true
		}
	}
	if len(seg.Payload) > 0 && peer.fin && !out.retransmission() && out&aOutOfOrder == 0 {
		s.dataAfter = true
	}
	if f.Has(craft.FIN) && !s.fin {
		s.fin, s.finSeq, s.finAt = true, seg.End()-1, c.npkts
		s.ackedAtFin = s.ackedPeer && !s.finAckWith
	} else if f.Has(craft.FIN) && out.retransmission() && peer.fin && peer.finAt > s.finAt && !peer.ackedPeer {
		s.finLost = true // sent again after the peer's own FIN: the first copy never reached the peer
	}
	if c.closedBy == closedByNone && s.fin && peer.fin && s.ackedPeer && peer.ackedPeer {
		c.closedBy, c.closedAt = closedByFIN, t
	}
	if out.retransmission() {
		c.retrans++
	}
	if out&aOutOfOrder != 0 {
		c.ooo++
	}
	return out
}

// sequence is Wireshark's sequence analysis (packet-tcp.c, tcp_analyze_sequence_number), rule by rule and in
// its order, on the absolute numbers and the raw window field as Wireshark sees them (0 stands for "not seen").
// s is the sender's direction (fwd), peer the other (rev).
func (c *conv) sequence(s, peer *side, seg *craft.Segment, t int64) analysis {
	f := seg.Flags
	seq, ack, win := seg.Seq, seg.Ack, seg.Window
	seglen := uint32(len(seg.Payload))
	ctl := f&(craft.SYN|craft.FIN|craft.RST) != 0
	var a analysis
	c.prevNext, c.prevPeerAck, c.prevWindow = s.nextSeq, peer.lastAck, s.window
	sameAck := s.winSet && seglen == 0 && seq == s.nextSeq && ack == s.lastAck && !ctl

	switch {
	// ZERO WINDOW PROBE: exactly one byte at the next expected seq while the other side's window is 0.
	case seglen == 1 && seq == s.nextSeq && peer.winSet && peer.window == 0:
		a |= aZeroWindowProbe
	default:
		if win == 0 && !ctl {
			a |= aZeroWindow
		}
		// LOST PACKET: the segment starts beyond what this side sent so far.
		if s.nextSeq != 0 && s.nextSeq.LessThan(seq) && !f.Has(craft.RST) {
			a |= aLostSegment
		}
		// KEEP ALIVE: 0 or 1 byte starting one before the next expected seq.
		if seglen <= 1 && seq == s.nextSeq-1 && !ctl {
			a |= aKeepAlive
		}
		// WINDOW UPDATE: no data, same seq and ack as before, a new non-zero window.
		if sameAck && win != 0 && win != s.window {
			a |= aWindowUpdate
		}
		switch {
		case sameAck && win != 0 && win == s.window && peer.lastFlags&aKeepAlive != 0:
			a |= aKeepAliveAck // KEEP ALIVE ACK: repeats the ACK right after the peer's keep-alive
		case sameAck && win == 0 && win == s.window && peer.lastFlags&aZeroWindowProbe != 0:
			a |= aZeroWindowProbeAck
		case sameAck && win != 0 && win == s.window:
			// DUPLICATE ACK: no data, the same window, seq and ack as the last segment.
			if s.dupAcks == -1 {
				s.dupAcks = 1
			} else {
				s.dupAcks++
			}
			a |= aDupAck
			c.dupNum = s.dupAcks
		}
	}
	if ack != s.lastAck {
		s.dupAcks = 0
	}
	// ACKED LOST PACKET: it acknowledges more than the other side was seen to send.
	// (tshark 4.0's rule: flagged, then the mark moves to the peer's nextseq.)
	if peer.maxToAck != 0 && peer.maxToAck.LessThan(ack) && f.Has(craft.ACK) {
		a |= aAckLostSegment
		peer.maxToAck = peer.nextSeq
	}
	// RETRANSMISSION / FAST RETRANSMISSION / SPURIOUS / OUT-OF-ORDER: a segment that occupies sequence space
	// and does not advance the sequence number.
	if (seglen > 0 || f&(craft.SYN|craft.FIN) != 0) && a&aKeepAlive == 0 {
		notAdvanced := s.nextSeq != 0 && seq.LessThan(s.nextSeq)
		if seglen > 1 && s.nextSeq-1 == seq {
			notAdvanced = false // new data right after a zero window probe's byte
		}
		end := seq.Add(seglen)
		if f&(craft.SYN|craft.FIN) != 0 {
			end = end.Add(1)
		}
		thresh := int64(defaultOOOThreshold)
		if c.firstRTT > 0 {
			thresh = c.firstRTT
		}
		switch {
		case seglen > 0 && peer.lastAck != 0 && seq.Add(seglen).LessThanEq(peer.lastAck):
			a |= aSpurious // everything in it was acknowledged already
		case notAdvanced && peer.dupAcks >= 2 && peer.lastAck == seq && t-peer.lastAckAt < fastRetransWindow:
			a |= aFastRetrans
		case notAdvanced && t-s.nextAt < thresh && s.nextSeq != end:
			a |= aOutOfOrder
		case notAdvanced:
			a |= aRetrans
		}
	}
	// nextseq advances (a zero window probe does not), and with it maxseqtobeacked.
	end := seq.Add(seglen)
	if f&(craft.SYN|craft.FIN) != 0 {
		end = end.Add(1)
	}
	if (s.nextSeq.LessThan(end) || s.nextSeq == 0) && a&aZeroWindowProbe == 0 {
		s.nextSeq, s.nextAt = end, t
	}
	if (seq == s.maxToAck || s.maxToAck == 0) && a&aZeroWindowProbe == 0 {
		s.maxToAck = s.nextSeq
	}
	s.window, s.winSet = win, true
	s.lastAck, s.lastAckAt = ack, t
	s.lastFlags = a
	return a
}

// inherit carries the relative numbers' origin of a conversation that was still open when a SYN with a new
// sequence number split it (tshark's rule): for the story the numbers go on, they do not restart at 0.
func (c *conv) inherit(prev *conv) {
	for d := range c.sides {
		if prev.sides[d].baseSet {
			c.sides[d].base, c.sides[d].baseSet = prev.sides[d].base, true
		}
	}
}

// rstInWindow reports whether an RST from side d can be acceptable to the other side (RFC 9293 §3.10.7.4): its
// seq within the receive window that starts where d's data ends (one below too: Linux's tcp_reset_check after
// a FIN). One outside is dropped by the receiver and does not end the conversation. Unknown numbers accept it.
func (c *conv) rstInWindow(d int, seg *craft.Segment) bool {
	s := &c.sides[d]
	if s.nextSeq == 0 || seg.Seq == s.nextSeq {
		return true
	}
	w, known := c.window(1 - d)
	if !known {
		w = uint32(c.sides[1-d].window) << 14
	}
	return seg.Seq.InWindow(s.nextSeq-1, max(w, 1)+1)
}

// window is the window in bytes that side d last advertised, scaled when both SYNs showed window scaling; known
// is false when the handshake was not seen (the raw value is then a lower bound).
func (c *conv) window(d int) (w uint32, known bool) {
	s, p := &c.sides[d], &c.sides[1-d]
	raw := uint32(s.window)
	switch {
	case s.isnSet && p.isnSet && s.wscale >= 0 && p.wscale >= 0:
		return raw << uint(s.wscale), true
	case s.isnSet && p.isnSet:
		return raw, true
	}
	return raw, false
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
		first := cl
		if second == cl {
			first = sv
		}
		switch {
		case !second.ackedAtFin && !second.finAckWith && !first.finLost:
			// The second FIN does not acknowledge the first, which was not sent again: it was on its way
			// when the second left. The FINs crossed.
			return ClosedSimultaneous
		case !second.ackedAtFin && !second.finAckWith:
			// The first FIN was lost and sent again: the second FIN's sender closed without having it, and
			// each FIN was acknowledged on its own.
			return ClosedFourWay
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
