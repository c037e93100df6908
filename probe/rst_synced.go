package probe

import (
	"context"
	"fmt"

	"tcpshake/craft"
	"tcpshake/event"
)

// The scenarios on an established connection: RSTs and a SYN (RFC 9293
// §3.10.7.4 with RFC 5961 §3.2 and §4.2), and data after a reset.

// cookieNote is added to a verdict when the connection was opened through
// a SYN cookie.
func (r *rstRun) cookieNote() string {
	if r.cookie {
		return " (the connection was opened through a SYN cookie)"
	}
	return ""
}

func exactRST(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt()
	res := event.Scenario{
		Sent:     fmt.Sprintf("RST seq %d = the peer's RCV.NXT (our SND.NXT)", uint32(seq)),
		Expected: "no answer; the peer aborts the connection (its socket is gone, its application sees a reset)",
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 0)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	switch r.gone(ctx, &res) {
	case tupleAlive:
		return deviates(res, "MUST", "the connection survived a RST at exactly RCV.NXT"+r.cookieNote())
	case tupleUnknown:
		return inconclusive(res, "whether the connection survived could not be told: the check afterwards drew no answer")
	}
	if len(got) > 0 {
		return deviates(res, "MUST", fmt.Sprintf("the connection was reset, but the peer answered the RST with %s (RFC 9293 §3.10.7.1: \"An incoming segment containing a RST is discarded\")", describeSegs(got)))
	}
	return conforms(res, "silent abort: the RST at RCV.NXT reset the connection"+r.cookieNote())
}

func inWindowRST(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt().Add(1)
	res := event.Scenario{
		Sent:     fmt.Sprintf("RST seq %d = RCV.NXT + 1: inside the window, not exact", uint32(seq)),
		Expected: fmt.Sprintf("a challenge ACK (ack %d = RCV.NXT), and the connection survives", uint32(s.SndNxt())),
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	n := challenge(got, s.SndNxt())
	return challenged(res, n, r.survived(ctx, &res),
		"no challenge ACK, and the connection was aborted by a RST that was not exact (RFC 793's rule, which RFC 5961 replaced)")
}

// challenged judges a segment that calls for a challenge ACK (RFC 5961
// §3.2, §4.2): n challenge ACKs came back, alive says whether the
// connection survived, aborted words the old RFC 793 behaviour.
func challenged(res event.Scenario, n int, alive bool, aborted string) event.Scenario {
	switch {
	case n == 0 && !alive:
		return deviates(res, "MUST", aborted)
	case n == 0:
		return deviates(res, "MUST", "no challenge ACK came back (no ACK with ack = RCV.NXT)")
	case !alive:
		return deviates(res, "MUST", "a challenge ACK came, but the connection did not survive")
	}
	return conforms(res, "challenge ACK, connection intact")
}

func outOfWindowRST(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt().Add(1 << 31)
	res := event.Scenario{
		Sent:     fmt.Sprintf("RST seq %d = RCV.NXT + 2^31: far outside any window", uint32(seq)),
		Expected: "dropped silently: no answer, the connection survives",
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 0)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	alive := r.survived(ctx, &res)
	switch {
	case !alive:
		return deviates(res, "MUST", "the connection did not survive an out-of-window RST")
	case len(got) > 0:
		return deviates(res, "MUST", "the peer answered an out-of-window RST ("+describeSegs(got)+"): it must drop it silently")
	}
	return conforms(res, "silently dropped, connection intact")
}

func synInEstablished(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt()
	res := event.Scenario{
		Sent:     fmt.Sprintf("SYN seq %d (inside the window) on the established connection", uint32(seq)),
		Expected: fmt.Sprintf("a challenge ACK (ack %d), no reset, and the connection survives", uint32(s.SndNxt())),
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.SYN, Seq: &seq}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	// Count before alive: its probe byte moves SND.NXT on.
	n := challenge(got, s.SndNxt())
	return challenged(res, n, r.survived(ctx, &res), "the SYN aborted the connection (RFC 793's old rule, which RFC 5961 replaced)")
}

func dataAfterReset(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt()
	res := event.Scenario{}
	if err := r.send(ctx, Crafted{Flags: craft.RST, Seq: &seq}); err != nil {
		return inconclusive(res, err.Error())
	}
	r.collect(ctx, 0)
	ack := s.RcvNxt()
	if r.cookieMayTake(seq, ack) && !r.cookieMayTake(seq, s.IRS().Add(1)) {
		// An echo sent back as many bytes as we sent: a SYN cookie would
		// validate seq and ack advanced alike. The handshake's ack is just as
		// acceptable to a live connection (an old ACK inside the window,
		// RFC 9293 §3.10.7.4 fifth check), and no cookie validates it.
		ack = s.IRS().Add(1)
	}
	res.Sent = fmt.Sprintf("after an exact RST aborted the connection: data \"x\" seq %d ack %d on the same 4-tuple", uint32(seq), uint32(ack))
	res.Expected = fmt.Sprintf("RST seq %d = our ack: <SEQ=SEG.ACK><CTL=RST>: the connection is gone, so the listener answers", uint32(ack))
	mark := r.cfg.Tap.mark()
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.PSH | craft.ACK, Seq: &seq, Ack: &ack, Data: []byte("x")}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	sg := first(got)
	if sg != nil && !sg.Flags.Has(craft.RST) {
		// Whatever holds the 4-tuple now, reset it: at the byte after "x"
		// if it was taken, else at "x".
		r.resetAt(ctx, seq.Add(1), seq)
	}
	// A SYN cookie may validate the segment (see cookieMayTake); the
	// scenario chose numbers it does not, the shell's connection may not.
	handshakeNumbers := r.cookieMayTake(seq, ack)
	switch {
	case sg != nil && !sg.Flags.Has(craft.RST) && handshakeNumbers && r.cookie && res.ObservedBefore == "CLOSED":
		return permitted(res, fmt.Sprintf("the exact RST aborted the connection (the peer's kernel showed CLOSED before the data); the data segment's seq and ack had advanced alike from the handshake's (seq %d = our ISN + 1 + %d, ack %d = the peer's ISN + 1 + %d), so the SYN-cookie listener validated it as a handshake's final ACK and opened a new connection from it (RFC 4987 §3.6), instead of answering RST; that connection was reset again", uint32(seq), uint32(seq-s.ISS().Add(1)), uint32(ack), uint32(ack-s.IRS().Add(1))))
	case sg != nil && !sg.Flags.Has(craft.RST) && handshakeNumbers:
		return inconclusive(res, "the data drew "+describeSegs(got)+", not a RST: either the exact RST did not abort the connection, or a SYN-cookie listener took the data (its seq and ack advanced alike from the handshake's) for a handshake's final ACK; without the peer's kernel in view this cannot be told (the connection was reset again)")
	case sg != nil && !sg.Flags.Has(craft.RST):
		return deviates(res, "MUST", "the data drew "+describeSegs(got)+", not a RST: the exact RST did not abort the connection (RFC 9293 §3.10.7.4: TCP endpoints MUST reset the connection); it was reset again")
	}
	c := judgeAckReset(check(ruleListenACK()), sg, ack, r.cfg.Tap.icmpSince(mark), "SHOULD")
	if sg == nil && c.Verdict == Inconclusive && len(r.cfg.Tap.icmpSince(mark)) == 0 {
		return deviates(res, "SHOULD", "nothing came back: a segment for no connection, on a port with a listener, must draw RST")
	}
	return fromCheck(res, c)
}
