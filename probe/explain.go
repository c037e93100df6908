package probe

import (
	"fmt"
	"time"

	"tcpshake/craft"
	"tcpshake/probe/tcpstate"
)

// The explainer: it turns the deciders' typed decisions (tcpstate.Rx for
// what arrived, ackDecision for what the ACK did to our sender) into the
// teaching text, computed from the TCB's numbers so the words cannot
// disagree with them.

// negotiate reads the peer's SYN options, records what was agreed in the
// TCBs and the sender, and keeps the words for the SYN-ACK's step.
func (s *Session) negotiate(seg *craft.Segment) {
	s.optWhy = nil
	out := &s.optWhy
	mss, ok := seg.Options.MSS()
	def := uint16(craft.DefaultMSSv4)
	if s.cfg.Remote.Addr().Is6() {
		def = craft.DefaultMSSv6
	}
	if !ok {
		mss = def
		*out = append(*out, fmt.Sprintf("no MSS option: the default %d applies (RFC 9293 §3.7.1)", def))
	}
	s.opt.peerMSS = mss
	ours := s.cfg.SYN.MSS
	if ours == 0 {
		ours = def
	}
	s.opt.mss = min(mss, ours)
	if ok {
		*out = append(*out, fmt.Sprintf("MSS: the peer accepts %d, we %d: segments carry at most min(%d, %d) = %d bytes", mss, ours, mss, ours, s.opt.mss))
	}
	var declined []string
	ws, peerWS := seg.Options.WindowScale()
	switch {
	case peerWS && s.cfg.SYN.WScale >= 0:
		s.opt.wscale = true
		ourWS := uint8(min(s.cfg.SYN.WScale, 14))
		ws = min(ws, 14) // RFC 7323 §2.3: a shift above 14 is taken as 14
		s.me.SndShift, s.me.RcvShift = ws, ourWS
		s.peer.SndShift, s.peer.RcvShift = ourWS, ws
		*out = append(*out, fmt.Sprintf("window scale: the peer's windows count in units of 2^%d, ours of 2^%d (RFC 7323): our --window %d goes out as %d × 2^%d", ws, ourWS, s.cfg.Window, uint32(s.cfg.Window)>>ourWS, ourWS))
	case s.cfg.SYN.WScale >= 0:
		declined = append(declined, "window scaling (windows stay at most 65535 bytes both ways, RFC 7323 §2.2)")
	}
	switch {
	case seg.Options.SACKPermitted() && s.cfg.SYN.SACKOK:
		s.opt.sack = true
		*out = append(*out, "SACK permitted by both ends (RFC 2018): our ACKs name the out-of-order blocks we hold, and theirs tell our sender what to retransmit")
	case s.cfg.SYN.SACKOK:
		declined = append(declined, "SACK (only cumulative ACKs: a loss is repaired one hole per round trip, RFC 6582)")
	}
	if val, _, ok := seg.Options.Timestamps(); ok && s.cfg.SYN.Timestamp {
		s.opt.ts, s.opt.tsRecent = true, val
		*out = append(*out, "timestamps on both ends: every segment now carries TSval/TSecr (RFC 7323)")
	} else if s.cfg.SYN.Timestamp {
		declined = append(declined, "timestamps (no TSval/TSecr from here on, RFC 7323 §3.2)")
	}
	if len(declined) > 0 {
		line := "the peer declined "
		for i, d := range declined {
			if i > 0 {
				line += "; "
			}
			line += d
		}
		if _, hasMSS := seg.Options.MSS(); hasMSS && !seg.Options.SACKPermitted() && !peerWS {
			if _, _, ts := seg.Options.Timestamps(); !ts {
				line += ". An answer with MSS only is also what a SYN cookie without timestamps looks like: the cookie has no room for the other options (RFC 4987 §3.6)"
			}
		}
		*out = append(*out, line)
	}
	if s.cfg.ECN {
		switch f := seg.Flags; {
		case f.Has(craft.ECE) && !f.Has(craft.CWR):
			s.opt.ecn = true
			*out = append(*out, "[S.E]: ECE without CWR on the SYN-ACK answers our ECN-setup SYN: both ends will mark congestion instead of dropping (RFC 3168 §6.1.1)")
		default:
			*out = append(*out, "no ECE on the SYN-ACK: the peer did not agree to ECN, so congestion is signalled by loss only (RFC 3168 §6.1.1)")
		}
	} else if seg.Flags.Has(craft.ECE) {
		*out = append(*out, "ECE on a SYN-ACK to a SYN that did not ask for ECN: RFC 3168 §6.1.1 says a host must not send it; we ignore it")
	}
	s.snd.setMSS(uint32(s.maxSegment()))
}

func (s *Session) explainSynAck(seg *craft.Segment, rx tcpstate.Rx) []string {
	var why []string
	if rx.Change.To == tcpstate.Established {
		n := uint32(seg.Ack - s.me.ISS - 1)
		if n > 0 {
			why = append(why, fmt.Sprintf("SYN-ACK: the peer's ISN is %d (relative 0); ack %d = our seq %d + %d bytes + 1: the data on our SYN and the SYN itself", uint32(seg.Seq), uint32(seg.Ack), uint32(s.me.ISS), n))
		} else {
			why = append(why, fmt.Sprintf("SYN-ACK: the peer's ISN is %d (relative 0); ack %d = our seq %d + 1: a SYN takes one sequence number", uint32(seg.Seq), uint32(seg.Ack), uint32(s.me.ISS)))
		}
	} else {
		why = append(why, fmt.Sprintf("SYN: the peer's ISN is %d (relative 0)", uint32(seg.Seq)))
	}
	if rx.InOrder > 0 {
		why = append(why, fmt.Sprintf("%d bytes of data ride on the peer's SYN (RFC 9293 §3.10.7.3 queues them)", rx.InOrder))
	}
	return append(why, s.optWhy...)
}

// explainAck words what the peer's ACK did to our sender.
func (s *Session) explainAck(seg *craft.Segment, rx tcpstate.Rx, d ackDecision) []string {
	var why []string
	ack := seg.Ack
	switch {
	case s.passive && rx.Change.From == tcpstate.SynReceived && rx.Acked > 0:
		why = append(why, s.explainHandshakeACK(seg)...)
	case rx.Acked > 0 && s.me.FinSent && ack == s.me.FinSeq.Add(1):
		if data := rx.Acked - 1; data > 0 {
			why = append(why, fmt.Sprintf("ack %d = %d + %s + 1 for our FIN: the peer has all our data and our FIN", uint32(ack), uint32(rx.AckedFrom), plural(int(data), "byte")))
		} else {
			why = append(why, fmt.Sprintf("ack %d = our FIN's seq %d + 1: the peer has our FIN (a FIN takes one sequence number)", uint32(ack), uint32(s.me.FinSeq)))
		}
	case rx.Acked > 0 && s.me.State != tcpstate.SynReceived:
		why = append(why, fmt.Sprintf("ack %d = %d + %s: the peer has all our data up to here", uint32(ack), uint32(rx.AckedFrom), plural(int(rx.Acked), "byte")))
	case d.dup > 0:
		why = append(why, fmt.Sprintf("duplicate ACK %d (no data, same ack %d, same window): the peer still waits for seq %d", d.dup, uint32(ack), uint32(ack)))
	}
	if d.karn {
		why = append(why, "no RTT sample from this ACK: it covers a retransmitted segment, and which copy it answers cannot be told (Karn's rule, RFC 6298 §3)")
	}
	if d.exited {
		why = append(why, "recovery is over: everything outstanding when the loss was detected is acknowledged (RFC 6582)")
	}
	if rx.WindowUpdate && s.opt.wscale && s.me.SndShift > 0 {
		why = append(why, fmt.Sprintf("the peer's window: %d × 2^%d = %d bytes", seg.Window, s.me.SndShift, s.me.SndWnd))
	} else if rx.WindowUpdate && s.me.SndWnd == 0 {
		why = append(why, "the peer's window is 0: its receive buffer is full; we may send nothing but a window probe until it opens")
	}
	return why
}

// explainRx words the receiver's verdict on a segment.
func (s *Session) explainRx(seg *craft.Segment, rx tcpstate.Rx) []string {
	n := uint32(len(seg.Payload))
	end := seg.Seq.Add(n)
	switch rx.Verdict {
	case tcpstate.ExactReset:
		return []string{fmt.Sprintf("RST with seq %d = RCV.NXT: acceptable, the peer aborted the connection", uint32(seg.Seq))}
	case tcpstate.ChallengeReset:
		return []string{fmt.Sprintf("RST with seq %d in our window but ≠ RCV.NXT %d: not exact, so it may be forged (RFC 5961 §3.2); we answer with a challenge ACK and a real peer will then send the exact RST", uint32(seg.Seq), uint32(s.me.RcvNxt))}
	case tcpstate.ChallengeSYN:
		return []string{"a SYN inside a synchronized connection (RFC 5961 §4.2): we answer with a challenge ACK, nothing changes"}
	case tcpstate.RepeatedSYN:
		switch {
		case s.snd.synRexmit:
			return []string{"a second SYN-ACK: it answers our retransmitted SYN (the peer got both copies of our SYN, or its answer to the first was slower than our timer); we acknowledge again"}
		case s.manualAck && !s.ackSent:
			return []string{"the peer repeats its SYN-ACK: its timer fired and it has had no ACK from us yet (type `ack`)"}
		case !s.ackSent:
			return []string{"the peer repeats its SYN-ACK: its timer fired before any ACK of ours (we had not sent it yet); we acknowledge"}
		case !s.synAckAt.IsZero() && !s.rxAt.IsZero():
			// How long after the first copy tells a retransmission timer
			// (RFC 6298: 1 s; RFC 1122's older 3 s) from a copy crossing
			// our ACK, and says which timer the peer's stack runs.
			gap := s.rxAt.Sub(s.synAckAt)
			if gap >= 200*time.Millisecond {
				return []string{fmt.Sprintf("the peer repeats its SYN-ACK %.3f s after the first: its retransmission timer fired without taking our ACK (RFC 6298 §2.1 starts at 1 s; a first timeout near 3 s is RFC 1122's older value) — our ACK was lost, or its stack did not accept it; we acknowledge again", gap.Seconds())}
			}
			return []string{fmt.Sprintf("the peer repeats its SYN-ACK %.3f ms after the first, too soon for its retransmission timer: a copy that crossed our ACK on the way, or a duplicate; we acknowledge again", float64(gap)/float64(time.Millisecond))}
		default:
			return []string{"the peer repeats its SYN-ACK: our ACK was lost, or this copy crossed it on the way; we acknowledge again"}
		}
	case tcpstate.NoACK:
		return []string{"no ACK bit in a synchronized connection: dropped (RFC 9293 §3.10.7.4, fifth check)"}
	case tcpstate.OldAck:
		return []string{fmt.Sprintf("ack %d lies further back than SND.UNA %d less the largest window the peer offered (%d): not from this connection's recent past, so the segment is discarded and we answer with an ACK (RFC 5961 §5.2)", uint32(seg.Ack), uint32(s.me.SndUna), s.me.MaxSndWnd)}
	case tcpstate.AckUnsent:
		return []string{fmt.Sprintf("ack %d acknowledges data we never sent (SND.NXT %d): RFC 9293 §3.10.7.4 says send an ACK and drop the segment", uint32(seg.Ack), uint32(s.me.SndNxt))}
	case tcpstate.NotAcceptable:
		switch {
		case seg.Flags.Has(craft.RST):
			return []string{fmt.Sprintf("RST with seq %d outside our window (RCV.NXT %d, window %d): dropped without an answer (RFC 5961 §3.2)", uint32(seg.Seq), uint32(s.me.RcvNxt), s.me.RcvWnd)}
		case rx.Old && seg.Flags.Has(craft.FIN) && n == 0:
			return []string{"the peer repeats its FIN: our ACK of it was lost or late; we acknowledge again"}
		case rx.Old && rx.AckTaken && n == 0:
			return []string{fmt.Sprintf("seq %d is before RCV.NXT %d, so RFC 9293's test calls it old, but it ends within the last window and carries a current ACK: the ACK is taken (as Linux's tcp_sequence does), the segment otherwise dropped", uint32(seg.Seq), uint32(s.me.RcvNxt))}
		case rx.Old:
			why := fmt.Sprintf("duplicate: seq %d to %d was already received (the peer retransmitted; our ACK may have been lost or late); we acknowledge again", uint32(seg.Seq), uint32(end))
			if rx.AckTaken {
				why += "; its ACK is still taken"
			}
			return []string{why}
		}
		return []string{fmt.Sprintf("not acceptable: seq %d (%d bytes) is outside our receive window, RCV.NXT %d to %d (RFC 9293 §3.10.7.4): dropped, and we answer with an ACK of what we expect", uint32(seg.Seq), n, uint32(s.me.RcvNxt), uint32(s.me.RcvNxt.Add(s.me.RcvWnd)))}
	}
	var why []string
	switch {
	case rx.Held:
		why = append(why, fmt.Sprintf("out of order: we expect seq %d, this starts %d bytes later; kept until the gap is filled (%d bytes held), and we repeat ack %d", uint32(s.me.RcvNxt), uint32(seg.Seq-s.me.RcvNxt), s.me.HeldBytes(), uint32(s.me.RcvNxt)))
	case rx.HeldFull:
		why = append(why, fmt.Sprintf("out of order, and holding it would exceed our window of %d bytes: dropped (the peer will retransmit)", s.me.RcvWnd))
	case rx.PartOld > 0 && rx.InOrder > 0:
		why = append(why, fmt.Sprintf("partly new: %d of %d bytes were already received", rx.PartOld, n))
	case rx.InOrder > 0:
		why = append(why, fmt.Sprintf("%s of data from the peer (relative seq %d to %d)", plural(int(rx.InOrder), "byte"), uint32(seg.Seq-s.me.IRS), uint32(end-s.me.IRS)))
	}
	if rx.Filled > 0 {
		why = append(why, fmt.Sprintf("the gap is filled: %d held bytes are now in order", rx.Filled))
	}
	if rx.FIN {
		why = append(why, fmt.Sprintf("FIN at seq %d: the peer has nothing more to send", uint32(s.me.RcvNxt-1)))
	}
	return why
}

// explainOurAck is what the ACK we owe for seg will say.
func (s *Session) explainOurAck(seg *craft.Segment, rx tcpstate.Rx) []string {
	n := uint32(len(seg.Payload))
	switch {
	case rx.Verdict == tcpstate.ChallengeReset || rx.Verdict == tcpstate.ChallengeSYN:
		return []string{fmt.Sprintf("challenge ACK: seq %d ack %d, our real numbers; only the true peer can answer with an exact RST (RFC 5961 §3.2, §4.2)", uint32(s.me.SndNxt), uint32(s.me.RcvNxt))}
	case rx.Verdict == tcpstate.RepeatedSYN:
		return []string{fmt.Sprintf("ACK again: ack %d = peer ISN %d + 1", uint32(s.me.RcvNxt), uint32(s.me.IRS))}
	case rx.Verdict != tcpstate.Accepted:
		return []string{fmt.Sprintf("ACK of what we really have: ack %d = RCV.NXT, seq %d = SND.NXT", uint32(s.me.RcvNxt), uint32(s.me.SndNxt))}
	case rx.FIN && s.me.RcvNxt == seg.Seq.Add(n+1):
		if n > 0 {
			return []string{fmt.Sprintf("ack %d = peer seq %d + %s + 1 for the FIN (a FIN takes one sequence number)", uint32(s.me.RcvNxt), uint32(seg.Seq), plural(int(n), "byte"))}
		}
		return []string{fmt.Sprintf("ack %d = peer FIN seq %d + 1: a FIN takes one sequence number; seq stays %d: nothing new sent", uint32(s.me.RcvNxt), uint32(seg.Seq), uint32(s.me.SndNxt))}
	case n > 0 && seg.Seq.Add(n) == s.me.RcvNxt && rx.Filled == 0:
		return []string{fmt.Sprintf("ack %d = %d + %s; seq stays %d: nothing new sent", uint32(s.me.RcvNxt), uint32(seg.Seq), plural(int(n), "byte"), uint32(s.me.SndNxt))}
	default:
		return []string{fmt.Sprintf("ack %d: everything before it is here, nothing after (RCV.NXT)", uint32(s.me.RcvNxt))}
	}
}

// explainRST says why our RST carries the sequence number it does.
func (s *Session) explainRST(rst craft.Segment) string {
	switch {
	case rst.Seq == s.me.SndNxt:
		return fmt.Sprintf("RST with seq %d = our SND.NXT, which is the peer's RCV.NXT: it accepts the reset and aborts; nothing waits in TIME-WAIT", uint32(rst.Seq))
	case rst.Seq == s.me.SndUna:
		return fmt.Sprintf("RST with seq %d = our SND.UNA, not SND.NXT %d: the peer has not acknowledged what we sent after it, so its RCV.NXT is still here and only this seq is an exact reset (RFC 5961 §3.2)", uint32(rst.Seq), uint32(s.me.SndNxt))
	default:
		return fmt.Sprintf("RST with seq %d: what the peer last acknowledged, its RCV.NXT (RFC 5961 §3.2)", uint32(rst.Seq))
	}
}
