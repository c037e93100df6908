package probe

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"tcpshake/craft"
	"tcpshake/event"
)

// The scenarios of acknowledgments: an ACK of data never sent (RFC 9293
// §3.10.7.4, RFC 5961 §5.2) and the throttling of challenge ACKs (RFC 5961
// §7).

// echoWithin writes data and waits up to d for its echo; it returns how long
// the echo took (false: it did not come).
func (r *rstRun) echoWithin(ctx context.Context, data []byte, d time.Duration) (time.Duration, bool, error) {
	s := r.s
	have := len(s.Received())
	t0 := s.env.Now()
	if err := s.Write(ctx, data); err != nil {
		return 0, false, err
	}
	deadline := t0.Add(d)
	for s.env.Now().Before(deadline) && ctx.Err() == nil && s.ended == nil {
		if bytes.Contains(s.Received()[have:], data) {
			return s.env.Now().Sub(t0), true, nil
		}
		if _, err := s.Collect(ctx, min(deadline.Sub(s.env.Now()), 10*time.Millisecond), 1); err != nil {
			return 0, false, err
		}
	}
	if bytes.Contains(s.Received()[have:], data) {
		return s.env.Now().Sub(t0), true, nil
	}
	return 0, false, nil
}

// stalled is how much longer than the first echo the one after the test
// segment may take before its window counts as taken: a peer that took a
// zero window waits for its persist timer (hundreds of milliseconds).
func stalled(first, after time.Duration) bool {
	return after > max(100*time.Millisecond, 10*first)
}

func ackOfUnsent(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	const echoWait = 1500 * time.Millisecond
	res := event.Scenario{Figures: map[string]float64{}}
	d0, ok, err := r.echoWithin(ctx, []byte("a"), echoWait)
	switch {
	case err != nil:
		return inconclusive(res, err.Error())
	case !ok && r.cfg.Drops:
		return r.ackOfUnsentByDrop(ctx, res)
	case !ok:
		res.Sent, res.Expected, res.Observed = "one byte \"a\" to see it echoed", "its echo", "no echo within 1.5s"
		return inconclusive(res, fmt.Sprintf("port %d did not echo a byte: whether the segment's data and window were dropped needs an echo service (--echo-port), or the peer kernel's drop records (--drops)", s.cfg.Remote.Port()))
	}
	res.Figures["first_echo_ms"] = ms(d0)
	sndNxt, rcvNxt := s.SndNxt(), s.RcvNxt()
	ack, win := rcvNxt.Add(1000), uint16(0)
	res.Sent = fmt.Sprintf("data \"X\" seq %d with ack %d = the peer's SND.NXT + 1000 (bytes it never sent) and window 0", uint32(sndNxt), uint32(ack))
	res.Expected = fmt.Sprintf("an ACK (seq %d, ack %d: not past the data), and the segment dropped: \"X\" neither acknowledged nor echoed, its window 0 not taken (the next byte is echoed at once)", uint32(rcvNxt), uint32(sndNxt))
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.PSH | craft.ACK, Seq: &sndNxt, Ack: &ack, Window: &win, Data: []byte("X")}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	acked, tookData := false, false
	for i := range got {
		if got[i].Flags.Has(craft.ACK) && got[i].Ack == sndNxt {
			acked = true
		}
		if got[i].Flags.Has(craft.ACK) && got[i].Ack == sndNxt.Add(1) {
			tookData = true
		}
	}
	d1, echoed, err := r.echoWithin(ctx, []byte("c"), echoWait)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	echoedX := bytes.Contains(s.Received(), []byte("X"))
	if echoed {
		res.Figures["echo_after_ms"] = ms(d1)
		res.Observed += fmt.Sprintf("; the next byte \"c\" was echoed after %.1f ms (the first byte after %.1f ms)", ms(d1), ms(d0))
	} else {
		res.Observed += "; the next byte \"c\" was not echoed within 1.5s"
	}
	if echoedX {
		res.Observed += "; \"X\" was echoed"
	}
	switch {
	case tookData || echoedX:
		return deviates(res, "MUST", "the segment's data was taken: \"X\" was "+map[bool]string{true: "echoed", false: "acknowledged"}[echoedX]+"; it must be discarded")
	case !echoed:
		if s.ended != nil {
			return deviates(res, "MUST", "the connection did not survive the segment")
		}
		return deviates(res, "MUST", "the segment's window 0 was taken: the next byte was not echoed within 1.5s; it must be discarded")
	case stalled(d0, d1):
		return deviates(res, "MUST", fmt.Sprintf("the segment's window 0 was taken: the next byte's echo stalled for %.1f ms (the first took %.1f ms); it must be discarded", ms(d1), ms(d0)))
	case !acked:
		why := "no ACK came back: the segment was dropped silently, without the ACK the rule asks for"
		if r.linux() {
			why += " (Linux before commit 42726ec644cb drops it so: SKB_DROP_REASON_TCP_ACK_UNSENT_DATA)"
		}
		return deviates(res, "MUST", why)
	}
	return conforms(res, fmt.Sprintf("an ACK came back (ack %d = our SND.NXT, not past \"X\"), \"X\" was neither acknowledged nor echoed, and the next byte's echo took %.1f ms (the first %.1f ms): the segment was dropped, window and all", uint32(sndNxt), ms(d1), ms(d0)))
}

// ackOfUnsentByDrop is ack-of-unsent-data on a port that does not echo,
// with the peer kernel's drop records (--drops): a segment its TCP freed
// was discarded whole, data and window (Linux checks the ACK before it
// takes either), which the echo would otherwise show. The verdict waits
// for the records (judgeByDrop, once the scenario's steps are all out).
func (r *rstRun) ackOfUnsentByDrop(ctx context.Context, res event.Scenario) event.Scenario {
	s := r.s
	sndNxt, rcvNxt := s.SndNxt(), s.RcvNxt()
	ack, win := rcvNxt.Add(1000), uint16(0)
	res.Sent = fmt.Sprintf("data \"X\" seq %d with ack %d = the peer's SND.NXT + 1000 (bytes it never sent) and window 0 (port %d echoes nothing, so the peer kernel's drop record decides)", uint32(sndNxt), uint32(ack), s.cfg.Remote.Port())
	res.Expected = fmt.Sprintf("an ACK (seq %d, ack %d: not past the data), and the segment discarded by the peer's TCP (its kernel's drop record of it)", uint32(rcvNxt), uint32(sndNxt))
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.PSH | craft.ACK, Seq: &sndNxt, Ack: &ack, Window: &win, Data: []byte("X")}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	c := &dropCheck{flags: craft.PSH | craft.ACK, seq: sndNxt}
	for i := range got {
		if got[i].Flags.Has(craft.ACK) && got[i].Ack == sndNxt {
			c.acked = true
		}
		if got[i].Flags.Has(craft.ACK) && got[i].Ack == sndNxt.Add(1) {
			return deviates(res, "MUST", "the segment's data was taken: \"X\" was acknowledged; it must be discarded")
		}
	}
	r.byDrop = c
	return inconclusive(res, "waiting for the peer kernel's record of the segment")
}

// The challenge-ACK burst: 25 in-window RSTs, 48 ms apart (1.15 s), so that
// no limit (25 challenge ACKs) and RFC 5961 §7's example (10 in any 5 s)
// differ, and a limit of one per 500 ms falls clear of the send times.
const (
	burstRSTs = 25
	burstGap  = 48 * time.Millisecond
	exampleCA = 10 // RFC 5961 §7: "in any 5 second window, no more than 10 challenge ACKs"
)

func challengeBurst(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	res := event.Scenario{
		Sent:     fmt.Sprintf("%d RSTs %v apart, seq RCV.NXT+1 … RCV.NXT+%d (all in the window, none exact)", burstRSTs, burstGap, burstRSTs),
		Expected: fmt.Sprintf("a challenge ACK for some and not all: RFC 5961 §7's example allows at most %d in any 5 s", exampleCA),
	}
	r.before(ctx, &res)
	var got []craft.Segment
	t0 := s.env.Now()
	var last time.Time
	for i := uint32(1); i <= burstRSTs; i++ {
		seq := s.SndNxt().Add(i)
		if err := r.send(ctx, Crafted{Flags: craft.RST, Seq: &seq}); err != nil {
			return inconclusive(res, err.Error())
		}
		last = s.env.Now()
		d := burstGap
		if i == burstRSTs {
			d = r.cfg.Wait
		}
		seg, err := s.Collect(ctx, d, 0)
		if err != nil {
			return inconclusive(res, err.Error())
		}
		got = append(got, seg...)
	}
	span := last.Sub(t0)
	r.after(ctx, &res)
	n := challenge(got, s.SndNxt())
	res.Figures = map[string]float64{"rsts": burstRSTs, "challenge_acks": float64(n), "span_ms": ms(span)}
	res.Observed = fmt.Sprintf("%d challenge ACKs for %d in-window RSTs within %.2f s", n, burstRSTs, span.Seconds())
	alive := r.survived(ctx, &res)
	note := ""
	if r.linux() {
		note = " (Linux: at most one per net.ipv4.tcp_invalid_ratelimit, 500 ms by default, per socket)"
	}
	switch {
	case !alive:
		return deviates(res, "MUST", "the connection did not survive RSTs that were not exact (RFC 9293 §3.10.7.4: only a RST at RCV.NXT resets)")
	case n == 0:
		return deviates(res, "MUST", "no challenge ACK at all: RFC 9293 §3.10.7.4 (RFC 5961 §3.2) MUST send one for an in-window RST; throttling may thin them out, not suppress every one")
	case n >= burstRSTs:
		return deviates(res, "SHOULD", fmt.Sprintf("a challenge ACK for every one of %d RSTs within %.2f s: no throttling", burstRSTs, span.Seconds()))
	case n == exampleCA:
		return conforms(res, fmt.Sprintf("throttled to %d for %d RSTs within %.2f s: the example's limit of %d in 5 s%s", n, burstRSTs, span.Seconds(), exampleCA, note))
	}
	return permitted(res, fmt.Sprintf("throttled to %d for %d RSTs within %.2f s: a limit other than the example's %d in any 5 s, which RFC 5961 §7 lets be tuned (\"The values for both the time and number of ACKs SHOULD be tunable by the system administrator\")%s", n, burstRSTs, span.Seconds(), exampleCA, note))
}
