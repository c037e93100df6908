package analyze

import (
	"fmt"
	"time"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// story tells one conversation step by step: every segment as an event.Step with Wireshark's relative numbers,
// the arithmetic behind them in words, and both ends' states from the one state model (package tcpstate), the
// client's as Local and the server's as Remote. The client's opening SYNs are held back until the server's first
// answer shows whether it was listening (SYN-ACK), closed (RST) or opening too (a SYN of its own).
type story struct {
	sink    event.Sink
	start   int64
	n       int
	ends    [2]*tcpstate.Endpoint // client, server; nil until known
	unknown bool                  // the server never answered: its state cannot be inferred
	pending []pendingSYN
	defer1  []craft.Segment // client SYNs the server receives after sending its own SYN (simultaneous open)
	last    [2]lastSeg
	acked   [2]ackSeen
	note    string // said at the next step: how the story began
}

type pendingSYN struct {
	seg craft.Segment
	t   int64
	out analysis
}

// lastSeg is the last segment that occupied sequence space from one side, in relative numbers.
type lastSeg struct {
	set       bool
	seq, n    uint32 // relative seq and payload length
	syn, fin  bool
	finRelSeq uint32
}

type ackSeen struct {
	set bool
	rel uint32
}

func newStory(sink event.Sink, start int64) *story { return &story{sink: sink, start: start} }

// segment tells one TCP segment of c, already accounted by c.observe.
func (s *story) segment(c *conv, seg *craft.Segment, t int64, out analysis) {
	d := c.dirOf(seg.Src)
	if s.ends[0] == nil {
		if d == 0 && seg.Flags.Has(craft.SYN) && !seg.Flags.Has(craft.ACK) {
			s.pending = append(s.pending, pendingSYN{seg.Clone(), t, out})
			return
		}
		if len(s.pending) == 0 {
			s.midStream(c, d, seg)
		} else {
			s.resolve(c, seg, d)
		}
	}
	s.tell(c, d, seg, t, out)
}

// midStream sets up both ends for a conversation whose opening SYN was not captured.
func (s *story) midStream(c *conv, d int, seg *craft.Segment) {
	if seg.Flags.Has(craft.SYN) && seg.Flags.Has(craft.ACK) {
		// The SYN-ACK's receiver (the client) sent a SYN we did not see.
		iss := seg.Ack - 1
		s.ends[0] = &tcpstate.Endpoint{State: tcpstate.SynSent, ISS: iss, SndUna: iss, SndNxt: seg.Ack}
		s.ends[1] = &tcpstate.Endpoint{State: tcpstate.SynReceived, Passive: true, IRS: iss, RcvNxt: seg.Ack}
		return
	}
	s.ends[d] = tcpstate.NewEstablished(seg.Seq, seg.Ack)
	s.ends[1-d] = tcpstate.NewEstablished(seg.Ack, seg.Seq)
	s.note = "already established when the capture began: its handshake is not in the capture, so both ends are taken as ESTABLISHED from this segment on"
}

// resolve chooses the server's model from its first answer (or, with seg nil, from silence) and tells the held
// SYNs.
func (s *story) resolve(c *conv, seg *craft.Segment, d int) {
	s.ends[0] = tcpstate.NewActive()
	simultaneous := false
	switch {
	case seg != nil && d == 0 && seg.Flags.Has(craft.ACK) && !seg.Flags.Has(craft.RST) && !seg.Flags.Has(craft.SYN):
		// The client acknowledges something before any answer was captured: it is synchronized. Either its SYN
		// went into an open connection (an in-window SYN), or the server's SYN-ACK is missing from the capture
		// (one direction captured, or lost at the capture point).
		held := s.pending
		s.pending = nil
		continues := false
		for i := range held {
			continues = continues || held[i].seg.End() == seg.Seq
		}
		s.midStream(c, 0, seg)
		if continues {
			s.note = "the server's SYN-ACK is not in the capture, but the client goes on past its SYN and acknowledges the server: both ends are taken as ESTABLISHED"
		}
		for i := range held {
			s.tellWith(c, 0, &held[i].seg, held[i].t, held[i].out, !continues)
		}
		return
	case seg == nil || d == 0:
		s.ends[1] = tcpstate.NewListener()
		s.unknown = true
	case seg.Flags.Has(craft.SYN) && !seg.Flags.Has(craft.ACK):
		s.ends[1] = tcpstate.NewActive()
		simultaneous = true
	case seg.Flags.Has(craft.RST):
		s.ends[1] = tcpstate.NewActive() // nothing listens: CLOSED answers a SYN with RST
	case seg.Flags.Has(craft.ACK) && !seg.Flags.Has(craft.SYN) && !answersSYN(s.pending, seg.Ack):
		// An ACK that acknowledges none of the held SYNs: the connection existed before the capture, and the
		// SYN is one sent into it (an in-window SYN).
		s.midStream(c, 1, seg)
		held := s.pending
		s.pending = nil
		for i := range held {
			s.tellWith(c, 0, &held[i].seg, held[i].t, held[i].out, true)
		}
		return
	default:
		s.ends[1] = tcpstate.NewListener()
	}
	held := s.pending
	s.pending = nil
	for i := range held {
		p := &held[i]
		if simultaneous {
			s.defer1 = append(s.defer1, p.seg)
		}
		s.tellWith(c, 0, &p.seg, p.t, p.out, !simultaneous && !s.unknown)
	}
}

// answersSYN reports whether ack acknowledges one of the held SYNs (SYN seq + 1, or more when it carried data).
func answersSYN(held []pendingSYN, ack craft.Seq) bool {
	for i := range held {
		if held[i].seg.Seq.LessThan(ack) && ack.LessThanEq(held[i].seg.End()) {
			return true
		}
	}
	return false
}

// tell feeds seg to both ends and emits its step.
func (s *story) tell(c *conv, d int, seg *craft.Segment, t int64, out analysis) {
	s.tellWith(c, d, seg, t, out, true)
}

// tellWith is tell; deliver false keeps the receiver from seeing the segment (yet).
func (s *story) tellWith(c *conv, d int, seg *craft.Segment, t int64, out analysis, deliver bool) {
	snd, rcv := s.ends[d], s.ends[1-d]
	var judged []string
	ignored := false
	crossed := seg.Flags.Has(craft.FIN) && !snd.FinSent && snd.FinRcvd && c.sides[1-d].fin &&
		!(seg.Flags.Has(craft.ACK) && c.sides[1-d].finSeq.LessThan(seg.Ack))
	sc := snd.Send(seg)
	if crossed && sc.To == tcpstate.LastAck {
		// The model took the peer's FIN as received, but this FIN's ack does not cover it: it was sent before
		// that FIN arrived. Both ends closed at once; with both FINs on their way this end is in CLOSING.
		sc = tcpstate.Change{From: sc.From, To: tcpstate.Closing, Why: fmt.Sprintf(
			"sent FIN before the peer's FIN arrived (ack %d does not cover the FIN at seq %d): not a passive close; "+
				"both ends are closing at once (the FINs crossed, unless the peer's FIN was lost), so with both FINs out: CLOSING",
			seg.Ack.Rel(c.sides[1-d].base), c.sides[1-d].finSeq.Rel(c.sides[1-d].base))}
		snd.State = tcpstate.Closing
	}
	var rc tcpstate.Change
	in := seg
	if deliver && seg.Flags.Has(craft.RST) {
		in, judged = s.judgeRST(c, d, seg, rcv)
		deliver, ignored = in != nil, in == nil
	}
	if deliver {
		rx := rcv.Input(in)
		rc = rx.Change
		if w := verdictWords(rx.Verdict); w != "" {
			judged = append(judged, w)
			ignored = true
		}
	} else {
		rc = tcpstate.Change{From: rcv.State, To: rcv.State}
	}
	var extra []tcpstate.Change
	if d == 1 && len(s.defer1) > 0 && seg.Flags.Has(craft.SYN) {
		// Simultaneous open: the client's SYN reaches the server after the server sent its own.
		for i := range s.defer1 {
			extra = append(extra, snd.Receive(&s.defer1[i]))
		}
		s.defer1 = nil
	}
	s.n++
	dir := "sent"
	if d == 1 {
		dir = "received"
	}
	st := event.StepOf(s.n, time.Duration(t-s.start), dir, seg)
	st.RelSeq = seg.Seq.Rel(c.sides[d].base)
	if seg.Flags.Has(craft.ACK) {
		st.RelAck = seg.Ack.Rel(c.sides[1-d].base)
	}
	st.Retrans = out.retransmission()
	st.Analysis = out.words()
	st.Explain = s.explain(c, d, seg, st.RelSeq, st.RelAck, out)
	if s.note != "" {
		st.Explain = append([]string{s.note}, st.Explain...)
		s.note = ""
	}
	st.Explain = append(st.Explain, judged...)
	st.Ignored = ignored
	who := [2]string{"client", "server"}
	if sc.Changed() {
		st.Explain = append(st.Explain, fmt.Sprintf("%s: %s", who[d], sc))
	}
	if rc.Changed() {
		st.Explain = append(st.Explain, fmt.Sprintf("%s: %s", who[1-d], rc))
	}
	for _, ch := range extra {
		if ch.Changed() {
			st.Explain = append(st.Explain, fmt.Sprintf("%s: %s (the client's SYN arrives after the server sent its own: simultaneous open)", who[1], ch))
		}
	}
	st.Local = s.ends[0].State.String()
	if !s.unknown {
		st.Remote = s.ends[1].State.String()
	}
	s.sink.Emit(st)
}

// explain puts the segment's arithmetic into words, in relative numbers.
func (s *story) explain(c *conv, d int, seg *craft.Segment, relSeq, relAck uint32, out analysis) []string {
	var why []string
	f := seg.Flags
	n := uint32(len(seg.Payload))
	highest := c.prevNext.Rel(c.sides[d].base)
	peerAck := c.prevPeerAck.Rel(c.sides[d].base)
	switch {
	case out&aSpurious != 0:
		why = append(why, fmt.Sprintf("spurious retransmission: seq %d to %d was already acknowledged by the peer (its last ack was %d): a copy of data it has", relSeq, relSeq+n, peerAck))
	case out&aFastRetrans != 0:
		why = append(why, fmt.Sprintf("fast retransmission: the peer's duplicate ACKs asked for seq %d again (RFC 5681 §3.2)", relSeq))
	case out&aRetrans != 0:
		why = append(why, fmt.Sprintf("retransmission: seq %d was already sent by this side, which had sent up to seq %d", relSeq, highest))
	case out&aOutOfOrder != 0:
		why = append(why, fmt.Sprintf("out of order: seq %d is below seq %d already sent, less than a handshake round trip ago: sent or delivered out of order", relSeq, highest))
	case out&aKeepAlive != 0:
		why = append(why, fmt.Sprintf("keep-alive: seq %d is one below the next new byte: it asks the peer to acknowledge again", relSeq))
	case out&aZeroWindowProbe != 0:
		why = append(why, fmt.Sprintf("zero-window probe: 1 byte at seq %d, the next new one, while the peer's window is 0: it asks whether the window has opened", relSeq))
	}
	if out&aLostSegment != 0 {
		why = append(why, fmt.Sprintf("previous segment not captured: seq %d is beyond seq %d, the next one expected from this side", relSeq, highest))
	}
	if out&aAckLostSegment != 0 {
		why = append(why, fmt.Sprintf("ack %d acknowledges data from the peer that the capture did not see", relAck))
	}
	if out&aZeroWindow != 0 {
		why = append(why, "zero window: this side can take no more data for now; the peer must wait (and probe)")
	}
	if f.Has(craft.SYN) && relSeq != 0 && c.splitFrom != 0 {
		why = append(why, fmt.Sprintf("SYN at seq %d (relative to conversation #%d, still open on these ports): tshark starts a new conversation here, and so does the table; the relative numbers go on from #%d", relSeq, c.splitFrom, c.splitFrom))
	} else if f.Has(craft.SYN) {
		why = append(why, fmt.Sprintf("SYN: initial sequence number %d is relative seq 0; a SYN takes one sequence number, so the first data byte will be seq 1", uint32(seg.Seq)))
	}
	if f.Has(craft.ACK) {
		if a := s.ackWords(c, d, relAck, seg, out); a != "" {
			why = append(why, a)
		}
		s.acked[d] = ackSeen{true, relAck}
	}
	if n > 0 {
		why = append(why, fmt.Sprintf("data: %s at seq %d, so the next byte from this side is seq %d = %d + %d", nbytes(int(n)), relSeq, relSeq+n, relSeq, n))
	}
	if f.Has(craft.FIN) {
		fin := relSeq + n
		why = append(why, fmt.Sprintf("FIN at seq %d: no more data from this side; the FIN takes one sequence number, so the peer will ack %d", fin, fin+1))
	}
	if f.Has(craft.RST) {
		why = append(why, "RST: this side aborts the connection (or has none on these ports) and keeps no state for it")
	}
	if seg.Len() > 0 && !out.retransmission() && out&(aKeepAlive|aZeroWindowProbe) == 0 {
		s.last[d] = lastSeg{set: true, seq: relSeq, n: n, syn: f.Has(craft.SYN), fin: f.Has(craft.FIN), finRelSeq: relSeq + n}
	}
	return why
}

// judgeRST decides whether the receiver accepts an RST (RFC 9293 §3.10.7.4, which includes RFC 5961 §3.2): one at
// RCV.NXT resets the connection; one elsewhere in the receive window draws a challenge ACK and changes nothing; one
// outside the window is dropped. Linux also takes one at RCV.NXT-1 once the peer's FIN was received
// (tcp_reset_check). It returns the segment to deliver to the model (nil: none), and the words.
func (s *story) judgeRST(c *conv, d int, seg *craft.Segment, rcv *tcpstate.Endpoint) (*craft.Segment, []string) {
	if !rcv.State.Synchronized() && rcv.State != tcpstate.SynReceived {
		return seg, nil // CLOSED, LISTEN, SYN-SENT: the model's own rules
	}
	base := c.sides[d].base
	nxt := rcv.RcvNxt
	wnd, known := c.window(1 - d)
	scale := ""
	if !known {
		wnd = uint32(c.sides[1-d].window) << 14
		scale = ", its scale unknown without the handshake, so up to ×16384"
	}
	switch {
	case seg.Seq == nxt:
		return seg, []string{fmt.Sprintf("accepted: seq %d = RCV.NXT, the next byte the receiver expects (RFC 9293 §3.10.7.4): it aborts too", seg.Seq.Rel(base))}
	case rcv.FinRcvd && seg.Seq.Add(1) == nxt:
		r := *seg
		r.Seq = nxt // the model takes only RCV.NXT
		return &r, []string{fmt.Sprintf("accepted: seq %d is one below RCV.NXT, after the FIN the receiver already has: Linux takes it (tcp_reset_check)", seg.Seq.Rel(base))}
	case wnd > 0 && seg.Seq.InWindow(nxt, wnd):
		return nil, []string{fmt.Sprintf("ignored: seq %d is in the receive window but not at RCV.NXT %d: the receiver answers with a challenge ACK and keeps the connection (RFC 9293 §3.10.7.4, RFC 5961 §3.2); its state is unchanged", seg.Seq.Rel(base), nxt.Rel(base))}
	}
	return nil, []string{fmt.Sprintf("ignored: outside the window: seq %d is not within RCV.NXT %d + RCV.WND %d%s, so the receiver drops the RST (RFC 9293 §3.10.7.4); its state is unchanged", seg.Seq.Rel(base), nxt.Rel(base), wnd, scale)}
}

// verdictWords explains a segment the receiver's model did not accept, or "" when it did.
func verdictWords(v tcpstate.Verdict) string {
	switch v {
	case tcpstate.ChallengeSYN:
		return "ignored: a SYN in a synchronized state (an in-window SYN): the receiver answers with a challenge ACK and changes nothing (RFC 9293 §3.10.7.4, RFC 5961 §4.2)"
	case tcpstate.RepeatedSYN:
		return "ignored: a repeat of the SYN already received (its ACK was lost or is on its way): the receiver acknowledges it again"
	case tcpstate.BadAck:
		return "ignored: in SYN-SENT, an ACK that does not acknowledge the SYN: a real stack answers with a reset (RFC 9293 §3.10.7.3)"
	case tcpstate.NoACK:
		return "ignored: no ACK bit in a synchronized state: the receiver drops it (RFC 9293 §3.10.7.4)"
	case tcpstate.NotAcceptable, tcpstate.ChallengeReset:
		return "ignored: not acceptable to the receiver (RFC 9293 §3.10.7.4): its state is unchanged"
	}
	return ""
}

// ackWords explains an acknowledgment number by the peer's last segment, and a repeated one by Wireshark's
// analysis: a duplicate ACK, the answer to a keep-alive or a zero-window probe, or a window update.
func (s *story) ackWords(c *conv, d int, relAck uint32, seg *craft.Segment, out analysis) string {
	p := s.last[1-d]
	prev := s.acked[d]
	switch {
	case out&aDupAck != 0:
		return fmt.Sprintf("duplicate ACK #%d: ack %d again with the same window and nothing new: the peer's segment after seq %d has not arrived (or arrived out of order)", c.dupNum, relAck, relAck)
	case out&aKeepAliveAck != 0:
		return fmt.Sprintf("ack %d again: the answer to the peer's keep-alive; the connection is alive", relAck)
	case out&aZeroWindowProbeAck != 0:
		return fmt.Sprintf("ack %d again with window 0: the answer to the peer's zero-window probe; the window is still shut", relAck)
	case out&aWindowUpdate != 0:
		return fmt.Sprintf("window update: ack %d again, only the window changed (from %d to %d): this side can take more data", relAck, c.prevWindow, seg.Window)
	}
	if prev.set && prev.rel == relAck && !seg.Flags.Has(craft.SYN) {
		return ""
	}
	switch {
	case !p.set:
		return fmt.Sprintf("ack %d: every byte before seq %d from the peer has arrived", relAck, relAck)
	case p.syn && relAck == p.seq+1:
		return fmt.Sprintf("ack %d = peer seq %d + 1: a SYN takes one sequence number", relAck, p.seq)
	case p.fin && p.n == 0 && relAck == p.seq+1:
		return fmt.Sprintf("ack %d = peer FIN at seq %d + 1: a FIN takes one sequence number", relAck, p.seq)
	case p.fin && relAck == p.seq+p.n+1:
		return fmt.Sprintf("ack %d = %d + %s + 1: the data and the FIN after it (a FIN takes one sequence number)", relAck, p.seq, nbytes(int(p.n)))
	case p.n > 0 && relAck == p.seq+p.n:
		return fmt.Sprintf("ack %d = %d + %s: the peer's data up to seq %d has arrived", relAck, p.seq, nbytes(int(p.n)), relAck-1)
	}
	return fmt.Sprintf("ack %d: every byte before seq %d from the peer has arrived", relAck, relAck)
}

// icmp tells an ICMP error about the conversation.
func (s *story) icmp(c *conv, e *craft.ICMPError, t int64) {
	if s.ends[0] == nil && len(s.pending) > 0 {
		s.resolve(c, nil, 1)
	}
	s.n++
	dir := "received"
	if c.dirOf(e.Quoted.Src) == 1 {
		dir = "sent"
	}
	st := event.Step{
		N: s.n, TimeMs: nsToMs(t - s.start), Direction: dir, Src: e.From.String(), Dst: e.Quoted.Src.Addr().String(),
		ICMP: e.Reason(),
		Explain: []string{fmt.Sprintf("ICMP %s from %v quoting the segment %v -> %v seq %d: something on the way (or the host) refused it",
			e.Reason(), e.From, e.Quoted.Src, e.Quoted.Dst, uint32(e.Quoted.Seq))},
	}
	if s.ends[0] != nil {
		st.Local = s.ends[0].State.String()
		if !s.unknown {
			st.Remote = s.ends[1].State.String()
		}
	}
	s.sink.Emit(st)
}

// flush tells SYNs still held when the conversation ends: nothing answered them.
func (s *story) flush(c *conv) {
	if s.ends[0] == nil && len(s.pending) > 0 {
		s.resolve(c, nil, 0)
	}
}

// nbytes counts bytes in words: "1 byte", "2 bytes".
func nbytes(n int) string {
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
