package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// errDeadline ends a wait whose time is up.
var errDeadline = errors.New("deadline")

// until says when a wait is over.
type until struct {
	done     func() bool // nil: only the deadline ends it
	deadline time.Time   // zero: none
	anyway   bool        // keep going after the connection ended (rst's Collect, Hold)
	confirm  <-chan error
	lines    <-chan string
	exec     func(line string) (stop bool)
}

// run is the session's loop: it reads the stream, fires the timer, sends
// the ACKs that are due, and returns when u says so, when the connection
// ended (unless u.anyway), when ctx is done, or when the capture died. It is
// the only place the session waits, and what it does for each packet never
// blocks.
func (s *Session) run(ctx context.Context, u until) error {
	if !s.begun {
		return fmt.Errorf("session: not begun")
	}
	defer s.timer.Stop()
	for {
		s.flushAck()
		if s.ended != nil && !u.anyway {
			return s.ended
		}
		if u.done != nil && u.done() {
			return nil
		}
		now := s.env.Now()
		wake := u.deadline
		for _, t := range []time.Time{s.snd.deadline, s.emit.due()} {
			if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
				wake = t
			}
		}
		var tc <-chan time.Time
		if !wake.IsZero() {
			s.timer.Reset(max(wake.Sub(now), 0))
			tc = s.timer.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rep := <-s.stream.C():
			s.handle(rep)
			s.drainQueued()
		case <-s.stream.Dead():
			return fmt.Errorf("session: %w", s.stream.Err())
		case <-tc:
			now := s.env.Now()
			s.emit.expire(now)
			if !s.snd.deadline.IsZero() && !now.Before(s.snd.deadline) {
				s.onTimer(now)
			}
			if !u.deadline.IsZero() && !now.Before(u.deadline) {
				return errDeadline
			}
		case err := <-u.confirm:
			return err
		case line, ok := <-u.lines:
			if !ok || u.exec(line) {
				return nil
			}
		}
	}
}

// drainQueued handles what else already waits in the stream, so the ACK
// that is due covers all of it (as a receiver coalesces ACKs for a burst).
func (s *Session) drainQueued() {
	for n := len(s.stream.C()); n > 0; n-- {
		s.handle(<-s.stream.C())
	}
	if d := s.stream.Dropped(); d > s.dropped {
		s.warn(fmt.Sprintf("the capture dropped %d packets of this connection (its buffer was full); what they carried is retransmitted by TCP, but these steps miss them", d-s.dropped))
		s.dropped = d
	}
}

// drain handles what has already arrived without waiting, so that what we
// send next is decided on everything known.
func (s *Session) drain() {
	if s.begun {
		s.drainQueued()
		s.flushAck()
	}
}

// handle processes one packet of the stream. It never blocks and never
// releases anything; it records how the connection ended in s.ended.
func (s *Session) handle(rep capture.Reply) {
	if rep.Outgoing {
		s.outgoing(rep)
		return
	}
	if rep.Packet.Kind == craft.KindICMP {
		s.icmp(rep)
		return
	}
	if rep.Packet.Kind != craft.KindTCP {
		return
	}
	s.receive(rep)
}

// outgoing sees a copy of a segment leaving our interface: ours (its step is
// released with the copy's kernel time, and it times our RTT samples), or
// our kernel's own RST despite the guard.
func (s *Session) outgoing(rep capture.Reply) {
	if rep.Packet.Kind != craft.KindTCP {
		return
	}
	seg := &rep.Packet.Seg
	for _, f := range s.snd.queue {
		if f.wire.IsZero() && f.seg.Seq == seg.Seq && isCopy(&f.seg, seg) {
			f.wire = rep.Time
			break
		}
	}
	if s.emit.copySeen(rep) {
		return
	}
	if seg.Flags.Has(craft.RST) {
		s.rstSeen++
		if s.rstSeen > s.rstSent {
			why := "the guard did not hold it back (was the guard's nftables table removed, or does another firewall rule accept it first?)"
			if s.env.Guard == nil {
				why = "there is no guard (--no-guard): our kernel knows no such connection and resets it"
			}
			s.warn(fmt.Sprintf("our kernel sent its own RST (seq %d) to the peer: %s; the peer will abort the connection", uint32(seg.Seq), why))
			s.rstSent = s.rstSeen
		}
	}
	if s.env.Record != nil {
		s.env.Record(rep, nil)
	}
}

// icmp handles an ICMP error quoting one of our segments. It is believed
// only if the quoted sequence number is one we sent and the peer has not
// acknowledged (RFC 5927 §4.1), whoever sent it.
func (s *Session) icmp(rep capture.Reply) {
	ic := rep.Packet.ICMP
	q := ic.Quoted.Seq
	ours := s.me.SndUna.LessThanEq(q) && q.LessThan(s.me.SndNxt) || (s.me.State == tcpstate.SynSent && q == s.me.ISS)
	st := event.Step{Direction: "received", Src: ic.From.String(), Dst: s.cfg.Local.Addr().String(), ICMP: ic.Reason()}
	s.emit.received++
	switch {
	case !ours:
		s.ignored["icmp-bad-seq"]++
		st.Explain = []string{fmt.Sprintf("ICMP %s from %v quoting seq %d, which is not a segment of ours awaiting its ACK (SND.UNA %d to SND.NXT %d): ignored (RFC 5927 §4.1: a forged or stale error)", ic.Reason(), ic.From, uint32(q), uint32(s.me.SndUna), uint32(s.me.SndNxt))}
	case s.me.State == tcpstate.SynSent:
		st.Explain = []string{fmt.Sprintf("ICMP %s from %v quoting our SYN (seq %d): the connection was rejected on the way, so the port is filtered", ic.Reason(), ic.From, uint32(q))}
		s.ended = &UnreachableError{Reason: ic.Reason(), From: ic.From}
		s.snd.queue, s.snd.deadline = nil, time.Time{}
	default:
		st.Explain = []string{fmt.Sprintf("ICMP %s from %v quoting our segment (seq %d): in a synchronized connection a soft error; TCP keeps retransmitting (RFC 1122 §4.2.3.9)", ic.Reason(), ic.From, uint32(q))}
	}
	s.states(&st)
	s.emit.now(&st, rep.Time, &rep)
}

// onTimer retransmits on a timeout or sends a tail loss probe.
func (s *Session) onTimer(now time.Time) {
	d := s.snd.expired(now, s.cfg.Retries)
	if d.seg == nil {
		return
	}
	f := d.seg
	if d.giveUp {
		what := describe(&f.seg)
		if f.seg.Flags.Has(craft.SYN) && s.passive {
			s.giveUpSynAck(f.retrans, now)
			return
		}
		if f.seg.Flags.Has(craft.SYN) {
			err := fmt.Errorf("%w: %d SYNs unanswered over %v: filtered, or the host is down", ErrNoAnswer, f.retrans+1, now.Sub(s.synAt).Round(time.Millisecond))
			chg := s.me.GiveUp("no answer to our SYN: we give up")
			s.snd.queue, s.snd.deadline = nil, time.Time{}
			s.note(fmt.Sprintf("%v; %s", err, chg))
			s.ended = err
			return
		}
		err := fmt.Errorf("%w: %s not acknowledged after %d retransmissions", ErrNoAnswer, what, f.retrans)
		// RFC 9293 §3.8.3: past R2 the connection is closed. An RST goes
		// out too, so a peer that only stopped hearing us does not keep it.
		s.sendResets([]string{fmt.Sprintf("we give up: %v (RFC 9293 §3.8.3); the RST ends it on the peer too, if it still hears us", err)})
		s.me.GiveUp("we gave up on the connection")
		s.ended = err
		return
	}
	seg := f.seg
	if seg.Flags.Has(craft.ACK) {
		seg.Ack = s.me.RcvNxt
		s.refreshOptions(&seg)
	}
	var why string
	if d.probe {
		why = fmt.Sprintf("tail loss probe: no ACK for %s within 2·SRTT; sending it again draws an ACK that shows what is missing (RFC 8985 §7)", describe(&f.seg))
	} else {
		why = fmt.Sprintf("retransmission %d: no ACK for %s within %v (RFC 6298: the timer doubles each time, now %v)", f.retrans+1, describe(&f.seg), d.rto.Round(time.Millisecond), s.snd.rto.Round(time.Millisecond))
	}
	if d.probe {
		f.retrans++
		f.sentAt = now
	} else {
		s.snd.retransmitted(now)
	}
	s.sendSeg(seg, []string{why}, sendRetrans)
}

// describe names what a queued segment carries.
func describe(seg *craft.Segment) string {
	switch {
	case seg.Flags.Has(craft.SYN) && seg.Flags.Has(craft.ACK):
		return "our SYN-ACK"
	case seg.Flags.Has(craft.SYN):
		return "our SYN"
	case seg.Flags.Has(craft.FIN) && len(seg.Payload) == 0:
		return "our FIN"
	default:
		return fmt.Sprintf("%s at seq %d", plural(len(seg.Payload), "byte"), uint32(seg.Seq))
	}
}

// warn reports something the user should know.
func (s *Session) warn(msg string) {
	s.emit.later(event.Warning{Message: msg}, s.env.Now())
}

// note reports a change without a segment (a timer, the guard, the end).
func (s *Session) note(text string) { s.noteAt(text, s.env.Now()) }

// noteAt is note at time t.
func (s *Session) noteAt(text string, t time.Time) {
	st := event.Step{Direction: "note", Explain: []string{text}}
	s.states(&st)
	s.emit.later(st, t)
}

// states fills in both ends' states after a step.
func (s *Session) states(st *event.Step) {
	st.Local, st.Remote = s.me.State.String(), s.peer.State.String()
}

// Interact runs the connection while commands arrive on lines: the peer's
// segments are handled (and shown) as they come, retransmissions happen on
// time, and each line is passed to exec, which may itself wait (a command
// that waits for its answer). It returns when lines is closed, exec says
// stop, or ctx is done. The connection ending does not end it: the shell
// goes on, and commands that need a connection say that it is gone.
func (s *Session) Interact(ctx context.Context, lines <-chan string, exec func(line string) (stop bool)) error {
	return s.run(ctx, until{anyway: true, lines: lines, exec: exec})
}

// Hold stays in the current state for d, acknowledging whatever arrives.
func (s *Session) Hold(ctx context.Context, d time.Duration) error {
	err := s.run(ctx, until{deadline: s.env.Now().Add(d), anyway: true})
	if errors.Is(err, errDeadline) {
		return nil
	}
	return err
}

// Collect handles what arrives during d, or until enough segments arrived
// (0: wait the whole time), and returns the peer's TCP segments. A reset or
// refusal from the peer is something to collect, not an error here.
func (s *Session) Collect(ctx context.Context, d time.Duration, enough int) ([]craft.Segment, error) {
	m := s.inbox.mark()
	err := s.run(ctx, until{
		done:     func() bool { return enough > 0 && len(s.inbox.since(m)) >= enough },
		deadline: s.env.Now().Add(d), anyway: true,
	})
	if errors.Is(err, errDeadline) {
		err = nil
	}
	return append([]craft.Segment(nil), s.inbox.since(m)...), err
}
