package probe

import (
	"context"
	"fmt"

	"tcpshake/craft"
	"tcpshake/event"
)

// The scenarios in the peer's SYN-RECEIVED: a RST or a FIN instead of the
// handshake's final ACK.

// synReceived sends our SYN, waits for the SYN-ACK and leaves the final ACK
// to the scenario; it notes a SYN cookie when the peer's kernel is in view.
func (r *rstRun) synReceived(ctx context.Context) (string, bool) {
	s := r.s
	s.ManualACK()
	if err := s.SYN(ctx); err != nil {
		return err.Error(), false
	}
	if got := r.collect(ctx, 1); len(got) == 0 || !got[0].Flags.Has(craft.SYN|craft.ACK) {
		return "no SYN-ACK: the port must be listening", false
	}
	r.noteCookie(ctx)
	return "", true
}

func rstInSynReceived(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	res := event.Scenario{Expected: "no answer; the peer drops the embryonic connection (only the listener remains)"}
	if why, ok := r.synReceived(ctx); !ok {
		return inconclusive(res, why)
	}
	seq := s.SndNxt()
	res.Sent = fmt.Sprintf("SYN, then RST seq %d = ISN + 1 instead of the final ACK", uint32(seq))
	if _, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 0); err != nil {
		return inconclusive(res, err.Error())
	}
	if s.Observing() {
		res.Observed += "; the peer's kernel shows " + res.ObservedAfter
		switch {
		case r.cookie:
			return inconclusive(res, "not tested: the peer answered with a SYN cookie and kept no SYN-RECEIVED connection (its kernel held no request socket), so there was no embryonic connection for the RST to return to LISTEN")
		case res.ObservedAfter != "CLOSED":
			return deviates(res, "MUST", "the embryonic connection is still there ("+res.ObservedAfter+"): the RST at RCV.NXT did not return it to LISTEN")
		}
		return conforms(res, "dropped at once, back to LISTEN only")
	}
	// Without a view of its kernel: an ACK whose seq is old for the
	// embryonic connection (our ISN + 1 − 1000) draws an ACK from a SYN-RECEIVED
	// connection (RFC 9293 §3.10.7.4, first check) and a RST from a
	// listener, and no SYN cookie can take it for a handshake's end.
	old, ack := r.oldSeq(), s.RcvNxt()
	if err := r.send(ctx, Crafted{Flags: craft.ACK, Seq: &old, Ack: &ack}); err != nil {
		return inconclusive(res, err.Error())
	}
	got := r.collect(ctx, 1)
	sg := first(got)
	res.Observed += fmt.Sprintf("; an ACK seq %d (old for SYN-RECEIVED) afterwards drew %s", uint32(old), describeSegs(got))
	switch {
	case sg == nil:
		return inconclusive(res, "the ACK afterwards drew nothing: neither the ACK of a SYN-RECEIVED connection nor the RST of a listener")
	case !sg.Flags.Has(craft.RST):
		return deviates(res, "MUST", "the embryonic connection survived: an ACK with an old seq afterwards drew "+describeSegs(got)+", as a SYN-RECEIVED connection answers")
	}
	// No embryonic connection is left. Did one ever exist? The handshake's
	// final ACK, with one byte, now draws a RST from a listener that kept
	// state, and opens a connection at a SYN-cookie listener (its data is
	// acknowledged): the cookie shows in the behaviour.
	switch r.cookieByBehaviour(ctx, &res) {
	case tupleAlive:
		return inconclusive(res, "not tested: the peer answered with a SYN cookie and kept no SYN-RECEIVED connection, so there was no embryonic connection for the RST to return to LISTEN (the connection the cookie opened was reset again)")
	case tupleUnknown:
		if r.cookie {
			return inconclusive(res, "not tested: the listener answers with SYN cookies ("+r.cookieHow+"), so it kept no SYN-RECEIVED connection for the RST to return to LISTEN")
		}
		return conforms(res, "no embryonic connection is left: the listener answered the ACK afterwards with RST (whether the peer used a SYN cookie, and so never had one, could not be told: the handshake's ACK afterwards drew no answer)")
	}
	return conforms(res, "no embryonic connection is left: the listener answered an ACK afterwards with RST, and the handshake's own final ACK too (no SYN cookie)")
}

// cookieByBehaviour sends the handshake's final ACK with one byte of data
// after the embryonic connection was shown gone: tupleGone (a RST: the
// listener kept state and dropped it), tupleAlive (the byte was
// acknowledged: a SYN cookie opened a connection, which is reset again), or
// tupleUnknown.
func (r *rstRun) cookieByBehaviour(ctx context.Context, res *event.Scenario) int {
	s := r.s
	seq, ack := s.ISS().Add(1), s.RcvNxt()
	if err := r.send(ctx, Crafted{Flags: craft.PSH | craft.ACK, Seq: &seq, Ack: &ack, Data: []byte("x")}); err != nil {
		return tupleUnknown
	}
	got := r.collect(ctx, 1)
	res.Observed += fmt.Sprintf("; the handshake's final ACK with \"x\" (seq %d ack %d) afterwards drew %s", uint32(seq), uint32(ack), describeSegs(got))
	sg := first(got)
	switch {
	case sg == nil:
		return tupleUnknown
	case sg.Flags.Has(craft.RST):
		return tupleGone
	}
	r.resetAt(ctx, seq.Add(1), seq)
	if sg.Flags.Has(craft.ACK) && sg.Ack == seq.Add(1) {
		r.cookie = true
		r.cookieHow = "after the embryonic connection was shown gone, the handshake's final ACK still opened a connection (its data was acknowledged): the SYN-ACK's ISN was a cookie"
		return tupleAlive
	}
	return tupleUnknown
}

func finInSynReceived(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	res := event.Scenario{}
	if why, ok := r.synReceived(ctx); !ok {
		return inconclusive(res, why)
	}
	fin := s.SndNxt().Add(1)
	res.Sent = fmt.Sprintf("SYN, then FIN,ACK seq %d ack %d instead of the final ACK", uint32(s.SndNxt()), uint32(s.RcvNxt()))
	res.Expected = fmt.Sprintf("the ACK completes the handshake and the FIN is acknowledged (ack %d); the peer moves to CLOSE-WAIT", uint32(fin))
	r.before(ctx, &res)
	if err := s.FIN(ctx); err != nil {
		return inconclusive(res, err.Error())
	}
	got := r.collect(ctx, 0)
	r.after(ctx, &res)
	res.Observed = describeSegs(got)
	acked := false
	for i := range got {
		if got[i].Flags.Has(craft.ACK) && got[i].Ack == fin {
			acked = true
		}
	}
	if s.Observing() {
		res.Observed += "; the peer's kernel shows " + res.ObservedAfter
	}
	switch {
	case !acked:
		return deviates(res, "MUST", fmt.Sprintf("our FIN was not acknowledged (no ACK with ack %d)", uint32(fin)))
	case s.Observing() && res.ObservedAfter != "CLOSE-WAIT" && res.ObservedAfter != "LAST-ACK" && res.ObservedAfter != "CLOSED":
		return deviates(res, "MUST", "the peer is in "+res.ObservedAfter+", not CLOSE-WAIT (or past it)")
	}
	return conforms(res, "FIN accepted with the handshake's ACK"+r.cookieNote())
}
