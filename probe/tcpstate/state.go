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

	// The windows (RFC 9293 §3.3.1, RFC 7323 §2.3). SndWnd is the window the
	// other end last advertised, scaled: how much this end may have in
	// flight. RcvWnd is the window this end last advertised, scaled; 0 means
	// the window is not modelled (a capture replayed without it), and then
	// any sequence number from RCV.NXT on is acceptable. ModelWindow makes
	// Send record RcvWnd from the segments this end sends, and Input apply
	// the window tests.
	ModelWindow bool
	SndWnd      uint32
	SndWL1      craft.Seq // the segment seq of the last window update
	SndWL2      craft.Seq // the segment ack of the last window update
	MaxSndWnd   uint32    // the largest SND.WND seen (RFC 5961 §5.2)
	RcvWnd      uint32
	// SndShift is the shift applied to the windows the other end sends;
	// RcvShift the shift this end applies to its own (RFC 7323: both 0
	// unless window scaling was negotiated).
	SndShift, RcvShift uint8
	// KeepData makes the endpoint keep the bytes it receives: Delivered is
	// the in-order stream, out-of-order bytes wait in held.
	KeepData  bool
	Delivered []byte

	// held are out-of-order segments kept until the gap before them is
	// filled, as a receiver reassembles them: start → end (and FIN).
	held      map[craft.Seq]heldSeg
	heldBytes int
}

type heldSeg struct {
	end  craft.Seq
	fin  bool
	data []byte // with KeepData
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
	if e.ModelWindow {
		if f.Has(craft.SYN) {
			e.RcvWnd = uint32(seg.Window) // a SYN's window is never scaled
		} else if f.Has(craft.ACK) {
			e.RcvWnd = uint32(seg.Window) << e.RcvShift
		}
	}
	if f.Has(craft.SYN) && (e.State == Closed || e.State == Listen || e.SndNxt == e.ISS) {
		// The first SYN this end sends sets ISS (a listener's SYN-ACK comes
		// after its move to SYN-RECEIVED); a later one (the SYN-ACK of a
		// simultaneous open) must not take back data sent on our SYN.
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

// Expire ends TIME-WAIT after its 2·MSL wait.
func (e *Endpoint) Expire() Change {
	if e.State != TimeWait {
		return e.stay()
	}
	return e.move(Closed, "2·MSL passed: TIME-WAIT ends")
}

// GiveUp closes the connection because its user gave up on it (RFC 9293
// §3.8.3: the retransmission threshold R2 was passed, or no answer came).
func (e *Endpoint) GiveUp(why string) Change {
	if e.State == Closed {
		return e.stay()
	}
	return e.move(Closed, why)
}
