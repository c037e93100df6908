package probe

import (
	"fmt"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// receive runs one of the peer's segments through our TCB (tcpstate
// decides: acceptable or not, and what it did), then through the sender
// (ACK, duplicate ACK, recovery), moves the peer's model only when our end
// accepted the segment, and shows it.
func (s *Session) receive(rep capture.Reply) {
	seg := &rep.Packet.Seg
	if s.passive && s.sameFirstSYN(rep) {
		return // the listener handed it over already (listen_session.go)
	}
	s.rxAt = rep.Time
	s.emit.before(rep.Time)
	s.inbox.add(seg)
	s.tallyReceived(seg)
	if s.me.State == tcpstate.Closed && s.ended == nil && s.me.ISS == s.me.SndNxt {
		// Nothing sent yet: a stray segment for a connection that does not
		// exist here.
		s.show(rep, seg, []string{"a segment before we opened the connection: nothing to do with it"}, tcpstate.Change{}, tcpstate.Change{}, true)
		s.ignored["before-open"]++
		return
	}
	if s.opt.ts {
		if val, _, ok := seg.Options.Timestamps(); ok && seg.Seq.LessThanEq(s.me.RcvNxt) {
			s.opt.tsRecent = val
		}
	}
	if s.me.State == tcpstate.SynSent {
		s.receiveSynSent(rep, seg)
		return
	}
	if s.passive && s.receivePassive(rep, seg) {
		return // LISTEN, the client's repeated SYN, a teaching switch (listen.go)
	}
	s.receiveSynced(rep, seg)
}

func (s *Session) receiveSynSent(rep capture.Reply, seg *craft.Segment) {
	if seg.Flags.Has(craft.SYN) && !seg.Flags.Has(craft.RST) && (!seg.Flags.Has(craft.ACK) || s.me.AcksSYN(seg.Ack)) {
		s.negotiate(seg)
	}
	una := s.me.SndUna
	rx := s.me.Input(seg)
	var why []string
	var pchg tcpstate.Change
	switch rx.Verdict {
	case tcpstate.Refused:
		why = []string{fmt.Sprintf("RST,ACK with ack %d = our ISN %d + 1: nothing listens on port %d, the peer's stack refused (RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN>)", uint32(seg.Ack), uint32(s.me.ISS), s.cfg.Remote.Port())}
		if n := uint32(s.me.SndNxt - s.me.ISS - 1); n > 0 {
			why[0] = fmt.Sprintf("RST,ACK with ack %d = our ISN %d + 1 + %d bytes of data on the SYN: nothing listens on port %d (RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN>)", uint32(seg.Ack), uint32(s.me.ISS), n, s.cfg.Remote.Port())
		}
		s.ended = ErrRefused
		s.snd.queue, s.snd.deadline = nil, time.Time{}
		pchg = tcpstate.Change{From: s.peer.State, To: tcpstate.Closed, Why: "it has no listener: it answered RST"}
		s.peer.State = tcpstate.Closed
	case tcpstate.BadAck:
		s.ignored["bad-ack"]++
		why = []string{fmt.Sprintf("ack %d does not acknowledge our SYN (want %d): a stale or forged segment, not the peer's answer; ignored (RFC 9293 §3.10.7.3)", uint32(seg.Ack), uint32(s.me.SndNxt))}
	case tcpstate.Ignored:
		s.ignored["unexpected-in-syn-sent"]++
		why = []string{"not an answer to our SYN (an RST must acknowledge it, RFC 9293 §3.10.7.3): ignored"}
	case tcpstate.Accepted:
		if s.synAckAt.IsZero() {
			s.synAckAt = rep.Time
		}
		why = s.explainSynAck(seg, rx)
		if rx.Acked > 0 {
			s.snd.onAck(una, seg.Ack, nil, rep.Time, s.env.Now(), false, false)
		}
		pchg = s.peer.Send(seg)
		s.peerAck = seg.Ack
		if rx.Change.To == tcpstate.SynReceived {
			why = append(why, "simultaneous open: both ends sent SYN; we answer with SYN-ACK")
		}
	}
	s.show(rep, seg, why, rx.Change, pchg, rx.Verdict != tcpstate.Accepted && rx.Verdict != tcpstate.Refused)
	if rx.Verdict == tcpstate.Accepted && rx.Change.To == tcpstate.SynReceived {
		syn := s.segment(craft.SYN|craft.ACK, nil)
		syn.Seq = s.me.ISS
		syn.Options = craft.SYNOptions(s.cfg.SYN)
		s.sendSeg(syn, []string{"SYN-ACK: we acknowledge its SYN and repeat ours (RFC 9293 §3.5, Figure 8)"}, sendOwn)
	}
	if rx.Verdict == tcpstate.Accepted && rx.Change.To == tcpstate.Established && s.manualAck {
		s.note("your turn: `ack` completes the handshake (the peer waits in SYN-RECEIVED and will repeat its SYN-ACK)")
	}
}

// receiveSynced processes a segment in SYN-RECEIVED or a synchronized state.
func (s *Session) receiveSynced(rep capture.Reply, seg *craft.Segment) {
	// Crafted data we sent beyond SND.NXT that the peer took and
	// acknowledged counts as sent.
	var why []string
	if seg.Flags.Has(craft.ACK) && s.me.SndNxt.LessThan(seg.Ack) && seg.Ack.LessThanEq(s.sndMax) {
		why = append(why, fmt.Sprintf("ack %d covers bytes of a crafted segment we sent beyond SND.NXT %d: the peer reassembled them, so they count as sent", uint32(seg.Ack), uint32(s.me.SndNxt)))
		s.me.SndNxt = seg.Ack
		s.peer.RcvNxt = seg.Ack
	}
	una, wnd := s.me.SndUna, s.me.SndWnd
	crossed := s.finsCrossed(seg)
	rx := s.me.Input(seg)
	var pchg tcpstate.Change
	accepted := rx.Verdict == tcpstate.Accepted || rx.Verdict == tcpstate.ExactReset
	if accepted {
		if seg.Flags.Has(craft.ACK) && s.peerAck.LessThan(seg.Ack) {
			s.peerAck = seg.Ack
		}
		if crossed {
			pchg = s.crossFINs(seg)
			why = append(why, fmt.Sprintf("its FIN does not acknowledge ours (ack %d ≤ our FIN's seq %d): it left before ours arrived, the FINs crossed (simultaneous close)", uint32(seg.Ack), uint32(s.me.FinSeq)))
		} else {
			pchg = s.peer.Send(seg)
		}
	} else {
		s.ignored[rx.Verdict.String()]++
	}
	if rx.AckTaken && s.peerAck.LessThan(seg.Ack) {
		s.peerAck = seg.Ack
	}
	if (rx.Verdict == tcpstate.Accepted || rx.AckTaken) && seg.Flags.Has(craft.ACK) {
		dupCandidate := rx.Verdict == tcpstate.Accepted && len(seg.Payload) == 0 && !seg.Flags.Has(craft.FIN) && s.me.SndWnd == wnd
		var blocks [][2]craft.Seq
		if s.opt.sack {
			for _, b := range seg.Options.SACKBlocks() {
				blocks = append(blocks, [2]craft.Seq{b.Left, b.Right})
			}
		}
		d := s.snd.onAck(una, seg.Ack, blocks, rep.Time, s.env.Now(), dupCandidate, s.writing)
		why = append(why, s.explainAck(seg, rx, d)...)
		if d.fastRexmt != nil {
			defer s.fastRetransmit(*d.fastRexmt, d)
		}
	}
	why = append(why, s.explainRx(seg, rx)...)
	if rx.Verdict == tcpstate.ExactReset {
		s.ended = ErrReset
		s.snd.queue, s.snd.deadline = nil, time.Time{}
	}
	quiet := !accepted && !s.challenge.allow(s.env.Now())
	if quiet {
		// A flood of segments we do not accept: counted, not each shown
		// nor each answered (RFC 5961 §7).
		if s.ignored["suppressed"] == 0 {
			s.warn("many segments we do not accept arrive (forged or stale?): from now on they are counted, not each shown nor answered (see the summary's ignored counts)")
		}
		s.ignored["suppressed"]++
		return
	}
	s.show(rep, seg, why, rx.Change, pchg, !accepted)
	s.scheduleAck(seg, rx)
}

// scheduleAck decides when the ACK a segment calls for goes out.
func (s *Session) scheduleAck(seg *craft.Segment, rx tcpstate.Rx) {
	if !rx.AckDue {
		return
	}
	s.ackDue++
	s.ackWhy = s.explainOurAck(seg, rx)
	switch {
	case rx.Verdict != tcpstate.Accepted, rx.Held, rx.HeldFull, rx.FIN, rx.Filled > 0, rx.PartOld > 0:
		s.ackNow = true // out of order, a gap filled, a FIN, a challenge: at once (RFC 5681 §4.2)
	}
	if rx.Verdict == tcpstate.RepeatedSYN && s.manualAck && !s.ackSent {
		s.ackDue, s.ackNow = 0, false // the shell's user has not sent the handshake's ACK yet
	}
}

// fastRetransmit resends the first unacknowledged segment after three
// duplicate ACKs, a SACK-detected loss or a NewReno partial ACK.
func (s *Session) fastRetransmit(seg craft.Segment, d ackDecision) {
	if len(s.snd.queue) == 0 || s.snd.queue[0].seg.Seq != seg.Seq {
		return
	}
	if seg.Flags.Has(craft.ACK) {
		seg.Ack = s.me.RcvNxt
		s.refreshOptions(&seg)
	}
	why := fmt.Sprintf("fast retransmit of %s: %d duplicate ACKs say it was lost while later segments arrived (RFC 5681 §3.2)", describe(&seg), d.dup)
	switch {
	case d.partial:
		why = fmt.Sprintf("NewReno: that ACK was partial (the peer still misses seq %d), so the next hole is retransmitted at once (RFC 6582 §3.2)", uint32(seg.Seq))
	case d.probeLost:
		why = fmt.Sprintf("%s again: the duplicate ACK answers our tail loss probe, so the probe arrived and this segment did not: it was lost (RFC 8985 §7.4)", describe(&seg))
	case d.early:
		why = fmt.Sprintf("early retransmit of %s: with only %d segments in flight three duplicate ACKs cannot come, so %d suffice (RFC 5827)", describe(&seg), len(s.snd.queue), d.dup)
	case d.dup > 3:
		why = fmt.Sprintf("%s again: the peer keeps reporting later segments but not it, long after our retransmission should have arrived (lost again)", describe(&seg))
	case d.sackedNew > 0 && d.dup < 3:
		why = fmt.Sprintf("fast retransmit of %s: the peer's SACK blocks hold three later segments, so it was lost (RFC 6675 §5)", describe(&seg))
	}
	s.snd.retransmitted(s.env.Now())
	s.sendSeg(seg, []string{why}, sendRetrans)
}

// show emits a received segment's step with both ends' changes.
func (s *Session) show(rep capture.Reply, seg *craft.Segment, why []string, me, peer tcpstate.Change, ignored bool) {
	st := event.StepOf(0, 0, "received", seg)
	st.Ignored = ignored
	st.TTL = seg.TTL
	s.relNumbers(&st, seg)
	st.Explain = append(why, changes(me, peer)...)
	s.states(&st)
	s.emit.received++
	s.emit.now(&st, rep.Time, &rep)
}

// finsCrossed reports whether seg is the peer's FIN sent before our FIN
// reached it: its ack stops at our FIN while the model already had the peer
// in CLOSE-WAIT (RFC 9293 §3.6, simultaneous close).
func (s *Session) finsCrossed(seg *craft.Segment) bool {
	return seg.Flags.Has(craft.FIN) && seg.Flags.Has(craft.ACK) && s.me.FinSent &&
		s.peer.State == tcpstate.CloseWait && s.peer.FinRcvd && seg.Ack.LessThanEq(s.me.FinSeq)
}

// crossFINs corrects the peer's model: it let the peer receive our FIN when
// we sent it, but the peer's FIN shows it had not: it closed from
// ESTABLISHED, then got ours.
func (s *Session) crossFINs(seg *craft.Segment) tcpstate.Change {
	s.peer.State, s.peer.FinRcvd, s.peer.RcvNxt = tcpstate.Established, false, s.me.FinSeq
	first := s.peer.Send(seg)
	ours := craft.Segment{Seq: s.me.FinSeq, Ack: seg.Seq, Flags: craft.FIN | craft.ACK}
	pchg := s.peer.Input(&ours).Change
	pchg.From = first.From
	pchg.Why = "sent its FIN, then received ours: simultaneous close"
	return pchg
}
