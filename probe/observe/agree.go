package observe

import (
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// Agree compares the peer's state inferred from the segments with a reading
// of its kernel: [event.Agrees] when they are the same, [event.Ahead] when
// the peer can have moved there on its own without a segment from us,
// [event.Differs] otherwise, and [event.Unknown] when the reading failed.
//
// The peer is ahead when its application closed (FIN-WAIT-1 from ESTABLISHED
// or SYN-RECEIVED, LAST-ACK from CLOSE-WAIT) or the connection ended (no
// socket, CLOSED, except right after our SYN or in LISTEN, where CLOSED means
// the SYN has not arrived or was lost). Then its kernel is simply ahead of
// what its segments have told us so far; any other difference is a
// disagreement (a segment lost or still on its way).
//
// SYN cookies are not decided here: they take several steps ([Merger]).
func Agree(inferred tcpstate.State, r Reading) event.Agreement {
	if r.Err != nil {
		return event.Unknown
	}
	if r.State == inferred {
		return event.Agrees
	}
	if inferred == tcpstate.Listen && !r.Exists {
		// The connection's own socket does not exist yet: the listener that
		// the inference speaks of is another socket (Diag.Listening).
		return event.Agrees
	}
	if ahead(inferred, r.State) {
		return event.Ahead
	}
	return event.Differs
}

// ahead is the rule of [Agree] for two different states.
func ahead(inferred, observed tcpstate.State) bool {
	switch observed {
	case tcpstate.Closed:
		return inferred != tcpstate.SynReceived && inferred != tcpstate.Listen
	case tcpstate.FinWait1:
		return inferred == tcpstate.Established || inferred == tcpstate.SynReceived
	case tcpstate.LastAck:
		return inferred == tcpstate.CloseWait
	}
	return false
}

// parseState turns a Step's Remote (RFC 9293's name, as tcpstate.State's
// String gives it) back into a typed state at the event seam.
func parseState(name string) (tcpstate.State, bool) {
	for s := tcpstate.Closed; s <= tcpstate.TimeWait; s++ {
		if s.String() == name {
			return s, true
		}
	}
	return 0, false
}
