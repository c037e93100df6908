package tcpstate

import "tcpshake/craft"

// A Verdict is what RFC 9293 §3.10.7 (with RFC 5961) makes of one arriving
// segment, decided before anything else is done with it.
type Verdict uint8

// The verdicts, in the order of the checks.
const (
	// Accepted: the segment was processed (its ACK, data and FIN).
	Accepted Verdict = iota
	// Ignored: the state has no use for it (CLOSED, LISTEN without a SYN,
	// SYN-SENT without a SYN or an acceptable RST).
	Ignored
	// Refused: in SYN-SENT, an RST that acknowledges our SYN.
	Refused
	// BadAck: in SYN-SENT, an ACK that does not acknowledge our SYN (§3.10.7.3:
	// answered with <SEQ=SEG.ACK><CTL=RST> by a real stack, dropped here).
	BadAck
	// NotAcceptable: the sequence number test failed (§3.10.7.4 first check):
	// an ACK is due and the segment is dropped. Old is set when it is an old
	// duplicate (everything in it was received before).
	NotAcceptable
	// ExactReset: an RST with seq = RCV.NXT: the connection is aborted.
	ExactReset
	// ChallengeReset: an RST in the window but not at RCV.NXT: a challenge
	// ACK is due, nothing else changes (RFC 5961 §3.2).
	ChallengeReset
	// ChallengeSYN: a SYN in a synchronized state: a challenge ACK is due
	// (RFC 5961 §4.2).
	ChallengeSYN
	// RepeatedSYN: the other end repeats its SYN (or SYN-ACK) with seq = IRS:
	// it has not had our ACK of it; an ACK is due.
	RepeatedSYN
	// NoACK: a segment without the ACK bit in a synchronized state: dropped
	// (§3.10.7.4 fifth check).
	NoACK
	// OldAck: SEG.ACK is below SND.UNA − MAX.SND.WND: discarded, an ACK is due
	// (RFC 5961 §5.2).
	OldAck
	// AckUnsent: SEG.ACK acknowledges something not yet sent: an ACK is due
	// and the segment is dropped (§3.10.7.4).
	AckUnsent
)

var verdictNames = [...]string{"accepted", "ignored", "refused", "bad-ack", "not-acceptable", "exact-reset",
	"challenge-reset", "challenge-syn", "repeated-syn", "no-ack", "old-ack", "ack-unsent"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// Rx is what one arriving segment did: the verdict, the state change, and
// the numbers the explanation needs.
type Rx struct {
	Verdict Verdict
	Change  Change
	// AckDue: the receiving end must send an ACK (data or FIN arrived, an
	// unacceptable segment, a challenge).
	AckDue bool
	// Old: everything in an unacceptable segment was received before.
	Old bool
	// Acked is how much sequence space the segment's ACK newly acknowledged
	// (SND.UNA moved from AckedFrom by Acked).
	Acked     uint32
	AckedFrom craft.Seq
	// InOrder is the payload bytes of this segment that advanced RCV.NXT;
	// PartOld the bytes of it that were already received; Filled the held
	// bytes that became in order behind it.
	InOrder, PartOld, Filled uint32
	// Held: the segment starts after RCV.NXT and is kept until the gap is
	// filled. HeldFull: it would have been kept, but the held bytes would
	// exceed the window, so it was dropped.
	Held, HeldFull bool
	// FIN: the other end's FIN was consumed (RCV.NXT moved past it).
	FIN bool
	// WindowUpdate: SND.WND changed.
	WindowUpdate bool
	// AckTaken: the segment was not acceptable (an old duplicate), but its
	// ACK was processed (Acked, WindowUpdate and the state change say what
	// it did).
	AckTaken bool
}

// Receive records a segment this endpoint receives and returns the state
// change; [Endpoint.Input] also says why.
func (e *Endpoint) Receive(seg *craft.Segment) Change { return e.Input(seg).Change }

// Input processes a segment this endpoint receives by RFC 9293 §3.10.7's
// checks in order: sequence number, RST, SYN, ACK, then text and FIN. With
// ModelWindow the sequence test uses RCV.WND; without it, anything from
// RCV.NXT on is acceptable (a capture's window is not known).
func (e *Endpoint) Input(seg *craft.Segment) Rx {
	f := seg.Flags
	switch e.State {
	case Closed:
		return Rx{Verdict: Ignored, Change: e.stay()}
	case Listen:
		if f.Has(craft.RST) || f.Has(craft.ACK) || !f.Has(craft.SYN) {
			return Rx{Verdict: Ignored, Change: e.stay()}
		}
		e.IRS, e.RcvNxt = seg.Seq, seg.Seq.Add(1)
		if e.ModelWindow {
			e.SndWnd = uint32(seg.Window)
			e.MaxSndWnd = max(e.MaxSndWnd, e.SndWnd)
		}
		return Rx{Verdict: Accepted, Change: e.move(SynReceived, "received SYN: a listener answers with SYN-ACK")}
	case SynSent:
		return e.inputSynSent(seg)
	}
	return e.inputSynced(seg)
}

// AcksSYN reports whether ack acknowledges this end's SYN: SND.UNA < SEG.ACK
// =< SND.NXT while the SYN is outstanding (RFC 9293 §3.10.7.3).
func (e *Endpoint) AcksSYN(ack craft.Seq) bool {
	return e.ISS.LessThan(ack) && ack.LessThanEq(e.SndNxt)
}

func (e *Endpoint) inputSynSent(seg *craft.Segment) Rx {
	f := seg.Flags
	ackOK := f.Has(craft.ACK) && e.AcksSYN(seg.Ack)
	switch {
	case f.Has(craft.RST) && ackOK:
		return Rx{Verdict: Refused, Change: e.move(Closed, "received RST acknowledging our SYN: connection refused")}
	case f.Has(craft.RST):
		return Rx{Verdict: Ignored, Change: e.stay()}
	case f.Has(craft.ACK) && !ackOK:
		return Rx{Verdict: BadAck, Change: e.stay()}
	case !f.Has(craft.SYN):
		return Rx{Verdict: Ignored, Change: e.stay()}
	}
	e.IRS, e.RcvNxt = seg.Seq, seg.Seq.Add(1)
	e.SndWnd, e.SndWL1, e.SndWL2 = uint32(seg.Window), seg.Seq, seg.Ack // a SYN's window is never scaled
	e.MaxSndWnd = max(e.MaxSndWnd, e.SndWnd)
	rx := Rx{Verdict: Accepted, AckDue: true, WindowUpdate: true}
	if ackOK {
		rx.AckedFrom, rx.Acked = e.SndUna, uint32(seg.Ack-e.SndUna)
		e.SndUna = seg.Ack
		rx.Change = e.move(Established, "received SYN-ACK acknowledging our SYN")
	} else {
		rx.Change = e.move(SynReceived, "received a SYN without ACK: simultaneous open")
	}
	if n := uint32(len(seg.Payload)); n > 0 && e.KeepData {
		// Data on a SYN is queued until the connection is established
		// (RFC 9293 §3.10.7.3); it is in order right after the SYN.
		e.deliver(seg.Payload)
		e.RcvNxt = e.RcvNxt.Add(n)
		rx.InOrder = n
	} else if n > 0 {
		e.RcvNxt = e.RcvNxt.Add(n)
		rx.InOrder = n
	}
	return rx
}

// acceptable is the sequence number test of §3.10.7.4.
func (e *Endpoint) acceptable(seg *craft.Segment) bool {
	n := uint32(len(seg.Payload))
	if seg.Flags.Has(craft.SYN) {
		n++
	}
	if seg.Flags.Has(craft.FIN) {
		n++
	}
	if !e.ModelWindow {
		// The window is not known (a capture): every segment is taken, old
		// data is recognised when its text is processed.
		return true
	}
	return craft.Acceptable(seg.Seq, n, e.RcvNxt, e.RcvWnd)
}

func (e *Endpoint) inputSynced(seg *craft.Segment) Rx {
	f := seg.Flags
	// RST first (RFC 5961 §3.2): only an exact RST aborts; one in the
	// window draws a challenge ACK; one outside is dropped.
	if f.Has(craft.RST) {
		switch {
		case seg.Seq == e.RcvNxt:
			if e.State == SynReceived && e.Passive {
				return Rx{Verdict: ExactReset, Change: e.move(Listen, "received RST: the embryonic connection is dropped, back to LISTEN")}
			}
			return Rx{Verdict: ExactReset, Change: e.move(Closed, "received RST: the connection is aborted")}
		case e.rstInWindow(seg):
			return Rx{Verdict: ChallengeReset, Change: e.stay(), AckDue: true}
		}
		return Rx{Verdict: NotAcceptable, Change: e.stay()}
	}
	if f.Has(craft.SYN) {
		// Simultaneous open (RFC 9293 Figure 8): the peer's SYN-ACK repeats
		// its SYN and acknowledges ours; Linux accepts exactly this one
		// (tcp_validate_incoming).
		if e.State == SynReceived && !e.Passive && f.Has(craft.ACK) && seg.Seq.Add(1) == e.RcvNxt && seg.Ack == e.SndNxt {
			e.SndUna = seg.Ack
			return Rx{Verdict: Accepted, Change: e.move(Established, "received the SYN-ACK acknowledging our SYN: simultaneous open complete")}
		}
		if seg.Seq == e.IRS {
			return Rx{Verdict: RepeatedSYN, Change: e.stay(), AckDue: true}
		}
		return Rx{Verdict: ChallengeSYN, Change: e.stay(), AckDue: true}
	}
	ackOnly := false
	if !e.acceptable(seg) {
		end := seg.Seq.Add(uint32(len(seg.Payload)))
		old := end.LessThanEq(e.RcvNxt)
		if f.Has(craft.FIN) && end.Add(1) == e.RcvNxt && e.FinRcvd {
			old = true // a repeated FIN
		}
		// An old duplicate that ends within the last window still carries a
		// current ACK: Linux takes it (tcp_sequence accepts any segment ending
		// at or after RCV.WUP) and sends such ACKs, e.g. with seq at the end
		// of the window it last saw. Its text is dropped as the RFC says; its
		// ACK is processed, or a real peer's acknowledgments would be lost.
		if !(old && e.ModelWindow && f.Has(craft.ACK) && e.RcvNxt.Add(^uint32(0)-max(e.RcvWnd, 1)+1).LessThanEq(end)) {
			return Rx{Verdict: NotAcceptable, Change: e.stay(), AckDue: true, Old: old}
		}
		ackOnly = true
	}
	if !f.Has(craft.ACK) {
		return Rx{Verdict: NoACK, Change: e.stay()}
	}
	if e.ModelWindow {
		// RFC 5961 §5.2: an ACK further back than the largest window the
		// other end ever had is not from this connection's past.
		if seg.Ack.LessThan(e.SndUna.Add(^uint32(0) - max(e.MaxSndWnd, 1) + 1)) {
			return Rx{Verdict: OldAck, Change: e.stay(), AckDue: true}
		}
		if e.SndNxt.LessThan(seg.Ack) {
			return Rx{Verdict: AckUnsent, Change: e.stay(), AckDue: true}
		}
	}
	rx := Rx{Verdict: Accepted}
	c := e.stay()
	ackedFIN := e.FinSent && e.FinSeq.LessThan(seg.Ack)
	if e.SndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.SndNxt) {
		rx.AckedFrom, rx.Acked = e.SndUna, uint32(seg.Ack-e.SndUna)
		e.SndUna = seg.Ack
	}
	if e.ModelWindow && (e.SndWL1.LessThan(seg.Seq) || (e.SndWL1 == seg.Seq && e.SndWL2.LessThanEq(seg.Ack))) {
		// RFC 9293 §3.10.7.4: update the window from a newer segment.
		w := uint32(seg.Window) << e.SndShift
		rx.WindowUpdate = w != e.SndWnd
		e.SndWnd, e.SndWL1, e.SndWL2 = w, seg.Seq, seg.Ack
		e.MaxSndWnd = max(e.MaxSndWnd, w)
	}
	if c = e.ackMoves(seg, ackedFIN); e.State == Closed {
		rx.Change = c // LAST-ACK's FIN acknowledged: nothing more to process
		return rx
	}
	rx.Change = c
	if ackOnly {
		rx.Verdict, rx.Old, rx.AckDue, rx.AckTaken = NotAcceptable, true, true, true
		return rx
	}
	e.text(seg, &rx)
	return rx
}

// ackMoves is the state change an acceptable ACK causes (RFC 9293
// §3.10.7.4, fifth check): our SYN or our FIN acknowledged.
func (e *Endpoint) ackMoves(seg *craft.Segment, ackedFIN bool) Change {
	c := e.stay()
	switch e.State {
	case SynReceived:
		if e.ISS.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.SndNxt) {
			c = e.move(Established, "received the ACK of our SYN")
			if e.FinSent && ackedFIN {
				c = e.move(FinWait2, "received the ACK of our FIN")
				c.From = SynReceived
			}
		}
	case FinWait1:
		if ackedFIN {
			c = e.move(FinWait2, "received the ACK of our FIN")
		}
	case Closing:
		if ackedFIN {
			c = e.move(TimeWait, "received the ACK of our FIN: wait 2·MSL")
		}
	case LastAck:
		if ackedFIN {
			c = e.move(Closed, "received the ACK of our FIN: connection closed")
		}
	}
	return c
}

// rstInWindow is the RST acceptability test: its seq in the receive window
// (without a modelled window, anything from RCV.NXT on within 2^30).
func (e *Endpoint) rstInWindow(seg *craft.Segment) bool {
	if !e.ModelWindow {
		return seg.Seq.InWindow(e.RcvNxt, 1<<30)
	}
	return seg.Seq.InWindow(e.RcvNxt, max(e.RcvWnd, 1))
}

// text is §3.10.7.4's seventh and eighth checks: in-order data advances
// RCV.NXT, out-of-order data is held until the gap before it is filled, and
// a FIN in order moves the state.
func (e *Endpoint) text(seg *craft.Segment, rx *Rx) {
	n := uint32(len(seg.Payload))
	end := seg.Seq.Add(n)
	fin := seg.Flags.Has(craft.FIN)
	if n > 0 || fin {
		rx.AckDue = true
	}
	if e.FinRcvd {
		// After the other end's FIN nothing more can come from it: RFC 9293
		// §3.10.7.4, eighth check, ignores the text in CLOSE-WAIT, CLOSING,
		// LAST-ACK and TIME-WAIT.
		rx.PartOld = n
		return
	}
	switch {
	case e.RcvNxt.LessThan(seg.Seq):
		e.hold(seg, end, fin, rx)
		return
	case e.RcvNxt.LessThan(end):
		skip := uint32(e.RcvNxt - seg.Seq)
		rx.PartOld, rx.InOrder = skip, n-skip
		if e.KeepData {
			e.deliver(seg.Payload[skip:])
		}
		e.RcvNxt = end
	case !(fin && end == e.RcvNxt):
		rx.PartOld = n
		return // old data, nothing new
	}
	for {
		h, ok := e.held[e.RcvNxt]
		if !ok {
			break
		}
		delete(e.held, e.RcvNxt)
		e.heldBytes -= len(h.data)
		if e.RcvNxt.LessThan(h.end) {
			d := uint32(h.end - e.RcvNxt)
			if e.KeepData {
				e.deliver(h.data[uint32(len(h.data))-d:])
			}
			rx.Filled += d
			e.RcvNxt = h.end
		}
		fin = fin || h.fin
	}
	if fin && !e.FinRcvd {
		e.FinRcvd = true
		e.RcvNxt = e.RcvNxt.Add(1)
		rx.FIN = true
		from := rx.Change.From
		switch e.State {
		case SynReceived, Established:
			rx.Change = e.move(CloseWait, "received FIN: the peer has finished sending")
		case FinWait1:
			rx.Change = e.move(Closing, "received FIN before the ACK of ours: simultaneous close")
		case FinWait2:
			rx.Change = e.move(TimeWait, "received FIN: wait 2·MSL before closing")
		}
		rx.Change.From = from
	}
}

// hold keeps an out-of-order segment until the gap before it is filled. The
// held bytes never exceed the receive window (with a modelled window), so
// whatever arrives, memory stays bounded.
func (e *Endpoint) hold(seg *craft.Segment, end craft.Seq, fin bool, rx *Rx) {
	if e.held == nil {
		e.held = map[craft.Seq]heldSeg{}
	}
	prev, had := e.held[seg.Seq]
	if had && !prev.end.LessThan(end) && (prev.fin || !fin) {
		rx.Held = true // a copy of what is already held
		return
	}
	var data []byte
	if e.KeepData {
		data = seg.Payload
	}
	grow := len(data) - len(prev.data)
	if e.ModelWindow && e.heldBytes+grow > int(max(e.RcvWnd, 1)) {
		rx.HeldFull = true
		return
	}
	if e.KeepData {
		data = append([]byte(nil), seg.Payload...)
	}
	e.held[seg.Seq] = heldSeg{end: end, fin: fin, data: data}
	e.heldBytes += grow
	rx.Held = true
}

// HeldBytes is how many out-of-order bytes wait for a gap to be filled.
func (e *Endpoint) HeldBytes() int { return e.heldBytes }

// HeldRanges lists the out-of-order ranges held, as SACK blocks would name
// them (RFC 2018): start and end of each, at most n, lowest first.
func (e *Endpoint) HeldRanges(n int) [][2]craft.Seq {
	var out [][2]craft.Seq
	for s, h := range e.held {
		out = append(out, [2]craft.Seq{s, h.end})
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j][0].LessThan(out[j-1][0]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	// Merge adjacent or overlapping ranges.
	var merged [][2]craft.Seq
	for _, r := range out {
		if k := len(merged); k > 0 && r[0].LessThanEq(merged[k-1][1]) {
			if merged[k-1][1].LessThan(r[1]) {
				merged[k-1][1] = r[1]
			}
			continue
		}
		merged = append(merged, r)
	}
	if len(merged) > n {
		merged = merged[:n]
	}
	return merged
}

// deliver appends in-order bytes to Delivered. The buffer doubles when it is
// full (append grows a large slice by only a quarter, which for a 1 MB
// transfer copied the received bytes about five times over).
func (e *Endpoint) deliver(b []byte) {
	if need := len(e.Delivered) + len(b); need > cap(e.Delivered) {
		grown := make([]byte, len(e.Delivered), max(need, 2*cap(e.Delivered), 16<<10))
		copy(grown, e.Delivered)
		e.Delivered = grown
	}
	e.Delivered = append(e.Delivered, b...)
}
