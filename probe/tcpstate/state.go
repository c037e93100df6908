// Package tcpstate is tcpshake's one model of RFC 9293's connection state
// machine (§3.3.2, Figure 5). An [Endpoint] is fed the segments one end sends
// and receives and tells, in words, which transitions they cause.
//
// The same model gives our own state in a live session, the peer's state
// inferred from the segments we exchange with it, and both ends' states when
// a capture is replayed. It is pure: no I/O, no clock; TIME-WAIT's 2·MSL
// timer is the caller's to run ([Endpoint.Expire]).
package tcpstate

import (
	"fmt"

	"tcpshake/craft"
)

// State is one of RFC 9293's eleven connection states.
type State uint8

// The states, in the order of RFC 9293 §3.3.2.
const (
	Closed State = iota
	Listen
	SynSent
	SynReceived
	Established
	FinWait1
	FinWait2
	CloseWait
	Closing
	LastAck
	TimeWait
)

var names = [...]string{"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
	"FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}

// String is the RFC's name, e.g. "SYN-RECEIVED".
func (s State) String() string {
	if int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// Synchronized reports whether the state is one where both ISNs are known.
func (s State) Synchronized() bool { return s >= Established }

// An Endpoint is one end of a connection as RFC 9293 models it: its state and
// the sequence variables of its TCB (§3.3.1).
type Endpoint struct {
	State  State
	ISS    craft.Seq // initial send sequence number
	SndUna craft.Seq // oldest unacknowledged
	SndNxt craft.Seq // next to send
	IRS    craft.Seq // initial receive sequence number
	RcvNxt craft.Seq // next expected
	// FinSeq is the sequence number our FIN occupies, valid when FinSent.
	FinSeq  craft.Seq
	FinSent bool
	// FinRcvd: the peer's FIN was received (in order).
	FinRcvd bool
	// Passive: this end was listening (an RST in SYN-RECEIVED returns it to LISTEN).
	Passive bool
	// held are out-of-order segments kept until the gap before them is
	// filled, as a receiver reassembles them: start → end (and FIN).
	held map[craft.Seq]heldSeg
}

type heldSeg struct {
	end craft.Seq
	fin bool
}

// NewActive is an endpoint about to open a connection (CLOSED).
func NewActive() *Endpoint { return &Endpoint{State: Closed} }

// NewListener is an endpoint waiting in LISTEN.
func NewListener() *Endpoint { return &Endpoint{State: Listen, Passive: true} }

// NewEstablished is an endpoint met in the middle of a connection (a capture
// that starts after the handshake): next to send snd, next expected rcv.
func NewEstablished(snd, rcv craft.Seq) *Endpoint {
	return &Endpoint{State: Established, ISS: snd - 1, SndUna: snd, SndNxt: snd, IRS: rcv - 1, RcvNxt: rcv}
}

// A Change is what one segment did to an endpoint.
type Change struct {
	From, To State
	Why      string // the rule, in words; empty when nothing changed
}

// Changed reports whether the state moved.
func (c Change) Changed() bool { return c.From != c.To }

func (c Change) String() string {
	if !c.Changed() {
		return c.From.String()
	}
	return fmt.Sprintf("%s → %s (%s)", c.From, c.To, c.Why)
}

func (e *Endpoint) move(to State, why string) Change {
	c := Change{From: e.State, To: to, Why: why}
	e.State = to
	return c
}

func (e *Endpoint) stay() Change { return Change{From: e.State, To: e.State} }

// Send records a segment this endpoint sends.
func (e *Endpoint) Send(seg *craft.Segment) Change {
	f := seg.Flags
	if f.Has(craft.RST) {
		if e.State == Closed || e.State == Listen {
			return e.stay()
		}
		return e.move(Closed, "sent RST: the connection is aborted")
	}
	if f.Has(craft.SYN) {
		e.ISS, e.SndUna, e.SndNxt = seg.Seq, seg.Seq, seg.End()
	} else if end := seg.End(); e.SndNxt.LessThan(end) {
		e.SndNxt = end
	}
	if f.Has(craft.FIN) && !e.FinSent {
		e.FinSent = true
		e.FinSeq = seg.End().Add(^uint32(0)) // the FIN is the last number the segment occupies
	}
	switch e.State {
	case Closed:
		if f.Has(craft.SYN) && !f.Has(craft.ACK) {
			return e.move(SynSent, "sent SYN: active open")
		}
	case Listen:
		// A listener answers a SYN with SYN-ACK; the move happened on receipt.
	case SynReceived:
		if f.Has(craft.FIN) {
			return e.move(FinWait1, "sent FIN before the handshake completed")
		}
	case Established:
		if f.Has(craft.FIN) {
			return e.move(FinWait1, "sent FIN: active close")
		}
	case CloseWait:
		if f.Has(craft.FIN) {
			return e.move(LastAck, "sent FIN after the peer's FIN: passive close")
		}
	}
	return e.stay()
}

// Receive records a segment this endpoint receives, applying RFC 9293
// §3.10.7's checks in order: RST first, then SYN, then ACK, then FIN.
func (e *Endpoint) Receive(seg *craft.Segment) Change {
	f := seg.Flags
	switch e.State {
	case Closed:
		return e.stay()
	case Listen:
		if f.Has(craft.RST) || f.Has(craft.ACK) || !f.Has(craft.SYN) {
			return e.stay()
		}
		e.IRS, e.RcvNxt = seg.Seq, seg.Seq.Add(1)
		return e.move(SynReceived, "received SYN: a listener answers with SYN-ACK")
	case SynSent:
		ackOK := f.Has(craft.ACK) && e.ISS.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.SndNxt)
		if f.Has(craft.RST) {
			if ackOK {
				return e.move(Closed, "received RST acknowledging our SYN: connection refused")
			}
			return e.stay()
		}
		if f.Has(craft.ACK) && !ackOK {
			return e.stay()
		}
		if !f.Has(craft.SYN) {
			return e.stay()
		}
		e.IRS, e.RcvNxt = seg.Seq, seg.Seq.Add(1)
		if ackOK {
			e.SndUna = seg.Ack
			return e.move(Established, "received SYN-ACK acknowledging our SYN")
		}
		return e.move(SynReceived, "received a SYN without ACK: simultaneous open")
	}

	// Synchronized states and SYN-RECEIVED.
	if f.Has(craft.RST) {
		if !e.inWindow(seg) {
			return e.stay()
		}
		if seg.Seq != e.RcvNxt {
			return e.stay() // RFC 5961 §3.2: only an exact RST aborts; others get a challenge ACK
		}
		if e.State == SynReceived && e.Passive {
			return e.move(Listen, "received RST: the embryonic connection is dropped, back to LISTEN")
		}
		return e.move(Closed, "received RST: the connection is aborted")
	}
	if f.Has(craft.SYN) {
		// Simultaneous open (RFC 9293 Figure 8): the peer's SYN-ACK repeats
		// its SYN and acknowledges ours; Linux accepts exactly this one
		// (tcp_validate_incoming). Any other SYN gets a challenge ACK and
		// changes nothing (RFC 5961 §4).
		if e.State == SynReceived && !e.Passive && f.Has(craft.ACK) && seg.Seq.Add(1) == e.RcvNxt && seg.Ack == e.SndNxt {
			e.SndUna = seg.Ack
			return e.move(Established, "received the SYN-ACK acknowledging our SYN: simultaneous open complete")
		}
		return e.stay()
	}
	if !f.Has(craft.ACK) {
		return e.stay()
	}
	c := e.stay()
	ackedFIN := e.FinSent && e.FinSeq.LessThan(seg.Ack)
	if e.SndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.SndNxt) {
		e.SndUna = seg.Ack
	}
	switch e.State {
	case SynReceived:
		if e.ISS.LessThan(seg.Ack) && seg.Ack.LessThanEq(e.SndNxt) {
			c = e.move(Established, "received the ACK of our SYN")
			if e.FinSent && ackedFIN {
				c = e.move(FinWait2, "received the ACK of our FIN")
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
			return e.move(Closed, "received the ACK of our FIN: connection closed")
		}
	}
	// Text and FIN processing: in-order data advances RCV.NXT, out-of-order
	// data is held until the gap before it is filled.
	end := seg.Seq.Add(uint32(len(seg.Payload)))
	fin := f.Has(craft.FIN)
	switch {
	case e.RcvNxt.LessThan(seg.Seq):
		if e.held == nil {
			e.held = map[craft.Seq]heldSeg{}
		}
		e.held[seg.Seq] = heldSeg{end: end, fin: fin}
		return c
	case e.RcvNxt.LessThan(end):
		e.RcvNxt = end
	case !(fin && end == e.RcvNxt):
		return c // old data, nothing new
	}
	for {
		h, ok := e.held[e.RcvNxt]
		if !ok {
			break
		}
		delete(e.held, e.RcvNxt)
		if e.RcvNxt.LessThan(h.end) {
			e.RcvNxt = h.end
		}
		fin = fin || h.fin
	}
	if fin && !e.FinRcvd {
		e.FinRcvd = true
		e.RcvNxt = e.RcvNxt.Add(1)
		from := c.From
		switch e.State {
		case SynReceived, Established:
			c = e.move(CloseWait, "received FIN: the peer has finished sending")
		case FinWait1:
			c = e.move(Closing, "received FIN before the ACK of ours: simultaneous close")
		case FinWait2:
			c = e.move(TimeWait, "received FIN: wait 2·MSL before closing")
		}
		c.From = from
	}
	return c
}

// inWindow is the RST acceptability test of RFC 9293 §3.10.7.4: the RST's
// sequence number must be in the receive window. The window is not modelled,
// so anything from RCV.NXT on within 2^30 counts.
func (e *Endpoint) inWindow(seg *craft.Segment) bool {
	return seg.Seq.InWindow(e.RcvNxt, 1<<30)
}

// Expire ends TIME-WAIT after its 2·MSL wait.
func (e *Endpoint) Expire() Change {
	if e.State != TimeWait {
		return e.stay()
	}
	return e.move(Closed, "2·MSL passed: TIME-WAIT ends")
}

// Ahead reports whether a peer can have moved from the inferred state to
// the observed one on its own, without a segment from us: its application
// closed (FIN-WAIT-1 from ESTABLISHED or SYN-RECEIVED, LAST-ACK from
// CLOSE-WAIT) or the connection ended (CLOSED, except right after our SYN,
// where CLOSED means the SYN was lost). Then the peer's kernel is simply
// ahead of what its segments have told us so far; any other difference is a
// disagreement (a segment lost or still on its way).
func Ahead(inferred, observed string) bool {
	switch observed {
	case Closed.String():
		return inferred != SynReceived.String() && inferred != Listen.String()
	case FinWait1.String():
		return inferred == Established.String() || inferred == SynReceived.String()
	case LastAck.String():
		return inferred == CloseWait.String()
	}
	return false
}
