package probe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// establish performs the handshake for a scenario, notes a SYN cookie when
// the peer's kernel is in view, and sends eight bytes of data, so that no
// later segment of the scenario carries the handshake's numbers: a
// SYN-cookie listener would take such a segment, after a reset, for the end
// of a new handshake and open a connection from it (see cookieMayTake: on
// an echo port the peer's seq advances as far, so scenarios that use
// RCV.NXT check the numbers again).
func (r *rstRun) establish(ctx context.Context) (string, bool) {
	s := r.s
	s.ManualACK()
	if err := s.SYN(ctx); err != nil {
		return err.Error(), false
	}
	if err := s.WaitOpenWithin(ctx, 3*time.Second); err != nil {
		return err.Error(), false
	}
	if s.State() != tcpstate.Established {
		return fmt.Sprintf("no connection to port %d (we are in %s): the scenario needs a listening port", s.cfg.Remote.Port(), s.State()), false
	}
	r.noteCookie(ctx)
	if err := s.ACK(ctx); err != nil {
		return err.Error(), false
	}
	want := s.SndNxt().Add(establishBytes)
	if err := s.Write(ctx, []byte("........")); err != nil {
		return err.Error(), false
	}
	deadline := s.env.Now().Add(3 * time.Second)
	for s.me.SndUna != want && s.env.Now().Before(deadline) && ctx.Err() == nil && s.ended == nil {
		if _, err := s.Collect(ctx, 20*time.Millisecond, 1); err != nil {
			return err.Error(), false
		}
	}
	if s.me.SndUna != want {
		return fmt.Sprintf("the first %d bytes of data on the connection to port %d were not acknowledged within 3s", establishBytes, s.cfg.Remote.Port()), false
	}
	// Let an echo of it arrive before the test segment.
	if _, err := s.Collect(ctx, 20*time.Millisecond, 0); err != nil {
		return err.Error(), false
	}
	return "", true
}

// establishBytes is how much data establish sends.
const establishBytes = 8

// cookieMayTake reports whether a SYN-cookie listener could take a segment
// with seq and ack on this scenario's 4-tuple for a handshake's final ACK.
// Linux checks the cookie as (ack − 1) − hash − (seq − 1), whose low bits must
// give an MSS index below 4 (net/ipv4/syncookies.c, check_tcp_syn_cookie):
// seq and ack that advanced from the handshake's by the same count (an echo),
// or by counts within 3 of each other, validate.
func (r *rstRun) cookieMayTake(seq, ack craft.Seq) bool {
	d := int64(int32(uint32(ack-r.s.IRS().Add(1)))) - int64(int32(uint32(seq-r.s.ISS().Add(1))))
	return d >= -3 && d <= 3
}

// oldSeq is a seq that a live connection finds old and that no SYN cookie
// validates: 1000 before our ISN + 1.
func (r *rstRun) oldSeq() craft.Seq { return r.s.ISS().Add(1).Add(^uint32(999)) }

// noteCookie looks, between the SYN-ACK and our ACK, at the peer's kernel:
// no socket for the 4-tuple (no request socket in SYN-RECEIVED) means the
// SYN-ACK carried a SYN cookie (RFC 4987 §3.6).
//
// Not observing, it asks RSTConfig.CheckCookies once per run (the options
// of two more SYN-ACKs).
func (r *rstRun) noteCookie(ctx context.Context) {
	if !r.s.Observing() {
		c := r.cookies
		if c == nil || r.cfg.CheckCookies == nil {
			return
		}
		if !c.done {
			c.done = true
			ev, err := r.cfg.CheckCookies(ctx)
			if err != nil {
				ev = CookieEvidence{How: err.Error()}
			}
			c.ev = ev
		}
		if c.ev.Sign == CookieSeen {
			r.cookie, r.cookieHow = true, "from the options of two more SYN-ACKs: "+c.ev.How
		}
		return
	}
	r.s.Settle(ctx)
	if r.s.Observed() == "CLOSED" {
		r.cookie = true
		r.cookieHow = "after its SYN-ACK the peer's kernel held no socket for the 4-tuple (no request socket in SYN-RECEIVED), so the SYN-ACK's ISN was a cookie"
	}
}

// send crafts a segment for the scenario.
func (r *rstRun) send(ctx context.Context, c Crafted) error {
	r.noteSent(c)
	_, err := r.s.Craft(ctx, c)
	return err
}

// collect gathers the peer's answers.
func (r *rstRun) collect(ctx context.Context, enough int) []craft.Segment {
	got, _ := r.s.Collect(ctx, r.cfg.Wait, enough)
	return got
}

// before records the peer's state before the test segment.
func (r *rstRun) before(ctx context.Context, res *event.Scenario) {
	r.s.Settle(ctx)
	res.RemoteBefore = r.s.PeerState().String()
	res.ObservedBefore = r.s.Observed()
}

func (r *rstRun) after(ctx context.Context, res *event.Scenario) {
	r.s.Settle(ctx)
	res.RemoteAfter = r.s.PeerState().String()
	res.ObservedAfter = r.s.Observed()
}

// listening reports whether the peer's kernel is known to have a listener
// on the port (false when it cannot be asked).
func (r *rstRun) listening() bool {
	if r.s.env.Observer == nil {
		return false
	}
	ok, err := r.s.env.Observer.Listening(r.s.cfg.Remote)
	return err == nil && ok
}

// alive checks that the connection survived. With the peer's kernel in
// view, its state says so; otherwise one byte of data must be acknowledged.
func (r *rstRun) alive(ctx context.Context, res *event.Scenario) (bool, string) {
	if r.s.Observing() {
		ok := res.ObservedAfter == "ESTABLISHED"
		return ok, "the peer's kernel shows " + res.ObservedAfter
	}
	want := r.s.SndNxt().Add(1)
	if err := r.s.Write(ctx, []byte{'.'}); err != nil {
		return false, err.Error()
	}
	for _, seg := range r.collect(ctx, 1) {
		if seg.Flags.Has(craft.RST) {
			return false, "one byte of data drew a RST: the connection is gone"
		}
		if seg.Flags.Has(craft.ACK) && seg.Ack == want {
			return true, fmt.Sprintf("one byte of data was acknowledged (ack %d)", uint32(want))
		}
	}
	return false, "one byte of data was not acknowledged"
}

// survived is alive, with how it was checked added to what was observed.
func (r *rstRun) survived(ctx context.Context, res *event.Scenario) bool {
	ok, how := r.alive(ctx, res)
	res.Observed += "; " + how
	return ok
}

// What goneHow found.
const (
	tupleGone    = iota // no connection is left
	tupleAlive          // the connection still exists
	tupleUnknown        // no answer either way
)

// gone checks whether the peer still has a connection on the 4-tuple, and
// adds how it was checked to what was observed.
func (r *rstRun) gone(ctx context.Context, res *event.Scenario) int {
	st, how := r.goneHow(ctx, res)
	res.Observed += "; " + how
	return st
}

// goneHow is gone without the note. With the peer's kernel in view, its
// state tells; otherwise a bare ACK with seq = our ISN + 1 − 1000 asks: a live
// connection finds the seq old and answers with an ACK (RFC 9293 §3.10.7.4,
// first check), no connection draws <SEQ=SEG.ACK><CTL=RST>, and a
// SYN-cookie listener cannot take it for a handshake's last ACK (its seq is
// 1000 away from our ISN + 1), so the check opens nothing.
func (r *rstRun) goneHow(ctx context.Context, res *event.Scenario) (int, string) {
	if r.s.Observing() {
		if res.ObservedAfter == "CLOSED" {
			return tupleGone, "the peer's kernel shows CLOSED"
		}
		return tupleAlive, "the peer's kernel shows " + res.ObservedAfter
	}
	seq, ack := r.oldSeq(), r.s.RcvNxt()
	if err := r.send(ctx, Crafted{Flags: craft.ACK, Seq: &seq, Ack: &ack}); err != nil {
		return tupleUnknown, err.Error()
	}
	for _, seg := range r.collect(ctx, 1) {
		if seg.Flags.Has(craft.RST) {
			return tupleGone, fmt.Sprintf("a bare ACK afterwards (seq %d = our ISN + 1 − 1000, old for a live connection) drew RST: no connection is left", uint32(seq))
		}
		if seg.Flags.Has(craft.ACK) {
			return tupleAlive, fmt.Sprintf("a bare ACK afterwards (seq %d = our ISN + 1 − 1000, old for a live connection) drew an ACK: the connection still exists", uint32(seq))
		}
	}
	return tupleUnknown, fmt.Sprintf("a bare ACK afterwards (seq %d = our ISN + 1 − 1000, old for a live connection) drew nothing: neither the RST a closed 4-tuple gives nor the ACK of a live connection", uint32(seq))
}

// exchange sends c and collects the answers (enough: stop after that many,
// 0: wait the whole time), recording the peer's state before and after and
// what came back. A failure to send is the scenario's end (inconclusive).
func (r *rstRun) exchange(ctx context.Context, res *event.Scenario, c Crafted, enough int) ([]craft.Segment, error) {
	r.before(ctx, res)
	if err := r.send(ctx, c); err != nil {
		return nil, err
	}
	got := r.collect(ctx, enough)
	r.after(ctx, res)
	res.Observed = describeSegs(got)
	return got, nil
}

// fresh opens another session to port for a scenario that needs a second
// segment on a 4-tuple of its own; release ends it (resetting what it
// opened) and gives it back.
func (r *rstRun) fresh(port uint16) (*Session, func(), error) {
	if r.dial == nil {
		return nil, nil, fmt.Errorf("no dialer: the scenario needs a fresh connection")
	}
	s, closeFn, err := r.dial(port)
	if err != nil {
		return nil, nil, err
	}
	s.SetEpoch(r.s.start)
	if err := s.Begin("rst (second 4-tuple)"); err != nil {
		closeFn()
		return nil, nil, err
	}
	return s, func() { s.Abort(nil); closeFn() }, nil
}

// resetAt sends one RST per seq, in order: it clears a connection the peer
// may have opened behind our back (a SYN cookie turned into a connection by
// a segment with the handshake's numbers). An RST the peer does not accept
// only draws, at worst, a challenge ACK.
func (r *rstRun) resetAt(ctx context.Context, seqs ...craft.Seq) {
	for _, q := range seqs {
		q := q
		_ = r.send(ctx, Crafted{Flags: craft.RST, Seq: &q})
	}
	r.s.Collect(ctx, 20*time.Millisecond, 0)
}

func describeSegs(segs []craft.Segment) string {
	if len(segs) == 0 {
		return "nothing"
	}
	var parts []string
	for i := range segs {
		sg := &segs[i]
		p := fmt.Sprintf("%s seq %d", sg.Flags.Tcpdump(), uint32(sg.Seq))
		if sg.Flags.Has(craft.ACK) {
			p += fmt.Sprintf(" ack %d", uint32(sg.Ack))
		}
		if len(sg.Payload) > 0 {
			p += fmt.Sprintf(" len %d", len(sg.Payload))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

func first(segs []craft.Segment) *craft.Segment {
	if len(segs) == 0 {
		return nil
	}
	return &segs[0]
}

// challenge counts challenge ACKs: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> from
// the peer, i.e. bare ACKs whose ack is our SND.NXT.
func challenge(segs []craft.Segment, sndNxt craft.Seq) (n int) {
	for i := range segs {
		sg := &segs[i]
		if sg.Flags == craft.ACK && sg.Ack == sndNxt && len(sg.Payload) == 0 {
			n++
		}
	}
	return n
}
