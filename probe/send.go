package probe

import (
	"bytes"
	"fmt"
	"time"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// sendKind says what a segment is to the TCBs.
type sendKind uint8

const (
	sendOwn     sendKind = iota // ours in earnest: both TCBs follow it
	sendRetrans                 // a copy of a queued segment: nothing changes
	sendCrafted                 // a test segment: the peer's model judges it, ours does not move
	sendAbort                   // our RST that ends the connection
)

// segment builds a segment from the TCB's current numbers.
func (s *Session) segment(flags craft.Flags, payload []byte) craft.Segment {
	seg := craft.Segment{
		Src: s.cfg.Local, Dst: s.cfg.Remote, Seq: s.me.SndNxt, Flags: flags,
		Window: s.window(flags), TTL: s.cfg.TTL, ID: uint16(s.env.Rand()), Payload: payload,
	}
	if flags.Has(craft.ACK) {
		seg.Ack = s.me.RcvNxt
	}
	s.refreshOptions(&seg)
	return seg
}

// window is the window field we advertise: our window in bytes, scaled down
// by our shift once window scaling is agreed (never in a SYN, RFC 7323 §2.2).
func (s *Session) window(flags craft.Flags) uint16 {
	w := uint32(s.cfg.Window)
	if s.opt.wscale && !flags.Has(craft.SYN) {
		w >>= s.me.RcvShift
	}
	return uint16(min(w, 0xffff))
}

// refreshOptions gives a non-SYN segment the options the connection uses
// now: timestamps (RFC 7323) and SACK blocks for held data (RFC 2018).
func (s *Session) refreshOptions(seg *craft.Segment) {
	if seg.Flags.Has(craft.SYN) {
		return
	}
	var o craft.Options
	if s.opt.ts && !seg.Flags.Has(craft.RST) {
		o = append(o, craft.NOP(), craft.NOP(), craft.Timestamps(s.tsVal(), s.opt.tsRecent))
	}
	if s.opt.sack && seg.Flags.Has(craft.ACK) && !seg.Flags.Has(craft.RST) {
		n := 4
		if s.opt.ts {
			n = 3
		}
		if r := s.me.HeldRanges(n); len(r) > 0 {
			var blocks []craft.SACKBlock
			for _, b := range r {
				blocks = append(blocks, craft.SACKBlock{Left: b[0], Right: b[1]})
			}
			o = append(o, craft.NOP(), craft.NOP(), craft.SACK(blocks...))
		}
	}
	seg.Options = o
}

// tsVal is our timestamp clock: milliseconds since the session started.
func (s *Session) tsVal() uint32 { return uint32(s.env.Now().Sub(s.start)/time.Millisecond) + 1 }

// maxSegment is the most payload one segment may carry: the negotiated MSS,
// and never more than the route's MTU allows.
func (s *Session) maxSegment() int {
	hdr := 40
	if s.cfg.Remote.Addr().Is6() {
		hdr = 60
	}
	opts := 0
	if s.opt.ts {
		opts = 12
	}
	return max(min(int(max(s.opt.mss, 1)), s.cfg.MTU-hdr-opts), 1)
}

// sendSeg puts one segment on the wire, lets the TCBs follow it and holds
// its step until the wire copy gives it a kernel time. A send error ends
// the connection (s.ended).
func (s *Session) sendSeg(seg craft.Segment, why []string, kind sendKind) bool {
	st := event.StepOf(0, 0, "sent", &seg)
	s.relNumbers(&st, &seg)
	st.Explain, st.Retrans = why, kind == sendRetrans
	pkt, err := seg.Marshal()
	if err != nil {
		s.fail(fmt.Errorf("session: build segment: %w", err))
		return false
	}
	now := s.env.Now()
	if err := s.put(&seg, pkt); err != nil {
		s.fail(fmt.Errorf("session: send %s: %w", st.Flags, err))
		return false
	}
	s.tallySent(&seg)
	if seg.Flags.Has(craft.RST) {
		s.rstSent++
	} else if end := seg.End(); s.sndMax.LessThan(end) {
		s.sndMax = end
	}
	switch kind {
	case sendRetrans:
		s.retransmits++
	case sendOwn, sendAbort:
		chg := s.me.Send(&seg)
		prx := s.peer.Input(&seg)
		st.Explain = append(st.Explain, changes(chg, prx.Change)...)
	case sendCrafted:
		prx := s.peer.Input(&seg)
		st.Explain = append(st.Explain, changes(tcpstate.Change{}, prx.Change)...)
	}
	if kind != sendRetrans {
		s.sentBytes += len(seg.Payload)
	}
	if seg.Flags.Has(craft.ACK) && !seg.Flags.Has(craft.RST) && kind != sendCrafted && s.me.State != tcpstate.SynSent {
		s.ackDue, s.ackNow = 0, false
		if seg.Ack == s.me.RcvNxt && s.me.RcvNxt != s.me.IRS {
			s.ackSent = true
		}
	}
	s.states(&st)
	s.emit.sentStep(st, seg.Clone(), now)
	s.emit.before(now) // nothing older may wait behind it
	return true
}

// fail ends the connection with a local error (the send failed).
func (s *Session) fail(err error) {
	if s.ended == nil {
		s.ended = err
	}
	s.snd.queue, s.snd.deadline = nil, time.Time{}
}

// transmit sends a segment that occupies sequence space from SND.NXT (SYN,
// data, FIN) and queues it for retransmission until acknowledged.
func (s *Session) transmit(seg craft.Segment, why []string) bool {
	s.drain() // what already arrived is told before what we send now
	seg.Seq = s.me.SndNxt
	if seg.Flags.Has(craft.ACK) {
		seg.Ack = s.me.RcvNxt
	}
	if !s.sendSeg(seg, why, sendOwn) {
		return false
	}
	s.snd.sent(seg.Clone(), s.env.Now())
	return true
}

// relNumbers adds our relative numbers to a step.
func (s *Session) relNumbers(st *event.Step, seg *craft.Segment) {
	synced := s.me.State != tcpstate.SynSent && s.me.State != tcpstate.Closed || s.me.FinRcvd || s.ackSent
	if st.Direction == "sent" {
		st.RelSeq = uint32(seg.Seq - s.me.ISS)
		if seg.Flags.Has(craft.ACK) && (synced || s.me.IRS != 0) {
			st.RelAck = uint32(seg.Ack - s.me.IRS)
		}
	} else {
		irs := s.me.IRS
		if s.me.State == tcpstate.SynSent && seg.Flags.Has(craft.SYN) {
			irs = seg.Seq
		}
		st.RelSeq = uint32(seg.Seq - irs)
		if seg.Flags.Has(craft.ACK) {
			st.RelAck = uint32(seg.Ack - s.me.ISS)
		}
	}
	if len(seg.Payload) > 0 {
		// A copy: the step is rendered later, off the loop.
		st.Data = event.Payload(bytes.Clone(seg.Payload))
	}
}

// flushAck sends the ACK that is due: at once after an out-of-order
// segment, a FIN or a challenge, otherwise once the burst that arrived is
// handled (at least every second segment, RFC 9293 §3.8.6.3).
func (s *Session) flushAck() {
	if !s.ackNow && s.ackDue == 0 {
		return
	}
	if !s.ackNow && s.begun && len(s.stream.C()) > 0 && s.ackDue < 2 {
		return
	}
	if s.ended != nil || s.me.State == tcpstate.Closed || s.me.State == tcpstate.SynSent {
		s.ackDue, s.ackNow = 0, false
		return
	}
	if s.manualAck && !s.ackSent {
		s.ackDue, s.ackNow = 0, false // the shell's user gives the handshake's ACK
		return
	}
	why := s.ackWhy
	if len(why) == 0 {
		why = []string{fmt.Sprintf("ACK: ack %d = RCV.NXT, the next byte we expect; seq %d = SND.NXT", uint32(s.me.RcvNxt), uint32(s.me.SndNxt))}
	}
	s.ackWhy = nil
	s.sendSeg(s.segment(craft.ACK, nil), why, sendOwn)
}

// resetSegment is the RST the peer will accept: seq = its RCV.NXT. That is
// our SND.UNA while data or our FIN is unacknowledged (the peer has not
// taken it), what it acknowledged beyond SND.NXT when crafted data was
// taken, else SND.NXT (RFC 5961 §3.2: only an exact RST aborts).
func (s *Session) resetSegment() craft.Segment {
	rst := s.segment(craft.RST|craft.ACK, nil)
	rst.Seq = s.peerRcvNxt()
	return rst
}

// resetSeqs are the sequence numbers an abort must cover: the peer's
// RCV.NXT is SND.UNA unless it took some of what is in flight and its ACK is
// still on the way, so it may be any segment boundary up to SND.NXT. Only
// the exact one aborts (RFC 5961 §3.2); the others draw at most a challenge
// ACK. At most 8, the most likely first.
func (s *Session) resetSeqs() []craft.Seq {
	out := []craft.Seq{s.peerRcvNxt()}
	add := func(q craft.Seq) {
		for _, o := range out {
			if o == q {
				return
			}
		}
		if len(out) < 8 {
			out = append(out, q)
		}
	}
	if s.me.State != tcpstate.SynSent {
		for _, f := range s.snd.queue {
			add(f.seg.End())
		}
		add(s.me.SndNxt)
	}
	return out
}

// sendResets aborts the connection: one RST per candidate RCV.NXT of the
// peer, the first one moving both TCBs.
func (s *Session) sendResets(why []string) {
	seqs := s.resetSeqs()
	s.snd.queue, s.snd.deadline = nil, time.Time{}
	for i, q := range seqs {
		rst := s.segment(craft.RST|craft.ACK, nil)
		rst.Seq = q
		lines := append(append([]string(nil), why...), s.explainRST(rst))
		if i == 0 && len(seqs) > 1 {
			lines = append(lines, fmt.Sprintf("%d more RSTs follow, at seq %s: data of ours may have reached the peer with its ACK still on the way, so its RCV.NXT can be any of them; the exact one aborts, the others draw at most a challenge ACK (RFC 5961 §3.2)", len(seqs)-1, seqList(seqs[1:])))
		}
		kind := sendAbort
		if i > 0 {
			kind = sendCrafted
			lines = []string{fmt.Sprintf("RST at seq %d: another candidate for the peer's RCV.NXT", uint32(q))}
		}
		if !s.sendSeg(rst, lines, kind) {
			return
		}
	}
}

func seqList(qs []craft.Seq) string {
	var b []byte
	for i, q := range qs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%d", uint32(q))
	}
	return string(b)
}

// peerRcvNxt is our best knowledge of the peer's RCV.NXT.
func (s *Session) peerRcvNxt() craft.Seq {
	switch {
	case s.me.SndNxt.LessThan(s.peerAck) && s.peerAck.LessThanEq(s.sndMax):
		return s.peerAck
	case s.me.State == tcpstate.SynSent, s.me.State == tcpstate.SynReceived && s.me.SndUna == s.me.ISS:
		return s.me.ISS.Add(1)
	default:
		return s.me.SndUna
	}
}

// changes words the state transitions a segment caused.
func changes(me, peer tcpstate.Change) []string {
	var out []string
	if me.Changed() {
		out = append(out, fmt.Sprintf("we: %s → %s (%s)", me.From, me.To, me.Why))
	}
	if peer.Changed() {
		out = append(out, fmt.Sprintf("peer: %s → %s (%s)", peer.From, peer.To, peer.Why))
	}
	return out
}
