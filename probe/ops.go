package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// The plan: what the user (handshake's flags, the shell's commands, rst's
// scenarios) asks the connection to do. Each operation sends, and the ones
// that wait run the loop until their answer came; all of them check first
// that the connection can do it, and say why not.

// ErrAborted is how the connection ended when we reset it ourselves.
var ErrAborted = errors.New("we reset the connection")

// gone says why an operation needs a connection that no longer exists.
func (s *Session) gone(op string) error {
	if s.ended != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrClosed, s.ended) // both: the exit status follows how it ended
	}
	return fmt.Errorf("%s: %w (we are in %s)", op, ErrClosed, s.me.State)
}

// ask shows the next segment of the plan under --step and waits for Enter
// while the loop goes on; nil without --step.
func (s *Session) ask(ctx context.Context, preview craft.Segment, why []string) error {
	if s.env.Stepper == nil {
		return nil
	}
	s.drain()
	st := event.StepOf(0, 0, "sent", &preview)
	s.relNumbers(&st, &preview)
	st.Explain = why
	s.env.Stepper.Ask(st)
	return s.run(ctx, until{confirm: s.env.Stepper.C()})
}

// Open begins the session and performs the three-way handshake.
func (s *Session) Open(ctx context.Context) error {
	if err := s.Begin("handshake"); err != nil {
		return err
	}
	return s.Connect(ctx)
}

// Connect sends our SYN, waits for the answer and, unless the shell gives
// it by hand, completes the handshake with our ACK.
func (s *Session) Connect(ctx context.Context) error {
	if err := s.SYN(ctx); err != nil {
		return err
	}
	if err := s.WaitOpen(ctx); err != nil {
		return err
	}
	if s.manualAck {
		return nil
	}
	return s.ACK(ctx)
}

// SYN sends our SYN (the first step of the handshake) without waiting.
func (s *Session) SYN(ctx context.Context) error {
	if s.me.State != tcpstate.Closed || s.ended != nil || s.me.SndNxt != s.me.ISS {
		switch s.me.State {
		case tcpstate.SynSent:
			return fmt.Errorf("our SYN is out already: we are in SYN-SENT, waiting for the answer")
		case tcpstate.Closed, tcpstate.TimeWait:
			return fmt.Errorf("a SYN opens a connection, and this one is over (a new connection needs a new shell): %w", s.gone("syn"))
		}
		return fmt.Errorf("a SYN opens a connection: we are in %s%s", s.me.State, endedWhy(s.ended))
	}
	syn := s.synSegment(s.me.ISS, craft.SYN)
	why := []string{fmt.Sprintf("SYN: we open the connection with ISN %d (relative 0); a SYN takes one sequence number, so our next seq is %d", uint32(s.me.ISS), uint32(s.me.ISS)+1)}
	if s.cfg.SYN.MSS != 0 {
		hdr := 40
		if s.cfg.Remote.Addr().Is6() {
			hdr = 60
		}
		line := fmt.Sprintf("we offer MSS %d: the most data we accept in one segment", s.cfg.SYN.MSS)
		if int(s.cfg.SYN.MSS) == s.cfg.MTU-hdr && s.cfg.MTU != 1500 || s.cfg.Remote.Addr().Is6() && int(s.cfg.SYN.MSS) == s.cfg.MTU-hdr {
			line += fmt.Sprintf(" (the route's MTU %d − %d bytes of IP and TCP headers)", s.cfg.MTU, hdr)
		}
		why = append(why, line)
	}
	if s.cfg.ECN {
		why = append(why, "ECE and CWR on the SYN: an ECN-setup SYN, asking the peer to mark congestion instead of dropping (RFC 3168 §6.1.1)")
	}
	return s.openWith(ctx, syn, why)
}

// openWith asks (--step), then sends our SYN and queues it: the active open.
func (s *Session) openWith(ctx context.Context, syn craft.Segment, why []string) error {
	if err := s.ask(ctx, syn, why); err != nil {
		return err
	}
	s.synAt = s.env.Now()
	if !s.transmit(syn, why) {
		return s.ended
	}
	return nil
}

func endedWhy(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// synSegment is our SYN with its options.
func (s *Session) synSegment(seq craft.Seq, flags craft.Flags) craft.Segment {
	if s.cfg.ECN {
		flags |= craft.ECE | craft.CWR
	}
	syn := s.segment(flags, nil)
	syn.Seq = seq
	syn.Window = s.cfg.Window
	opts := s.cfg.SYN
	if opts.Timestamp {
		opts.TSVal = s.tsVal()
	}
	syn.Options = craft.SYNOptions(opts)
	return syn
}

// WaitOpen waits for the answer to our SYN: a SYN-ACK, an RST, an ICMP
// error, or the last retransmission's timeout.
func (s *Session) WaitOpen(ctx context.Context) error {
	if s.me.State != tcpstate.SynSent {
		return nil
	}
	return s.run(ctx, until{done: func() bool { return s.me.State != tcpstate.SynSent }})
}

// WaitOpenWithin is WaitOpen bounded by d: it says so when the answer has
// not come by then (the SYN may still be retransmitted later).
func (s *Session) WaitOpenWithin(ctx context.Context, d time.Duration) error {
	if s.me.State != tcpstate.SynSent {
		return nil
	}
	err := s.run(ctx, until{done: func() bool { return s.me.State != tcpstate.SynSent }, deadline: s.env.Now().Add(d)})
	if errors.Is(err, errDeadline) {
		return fmt.Errorf("no connection to port %d within %v (we are in SYN-SENT): the scenario needs a listening port", s.cfg.Remote.Port(), d)
	}
	return err
}

// ACK sends a bare ACK of everything received (the handshake's third step,
// when the ACK is given by hand).
func (s *Session) ACK(ctx context.Context) error {
	switch {
	case s.ended != nil:
		return s.gone("ack")
	case s.teach.synAck != nil:
		return fmt.Errorf("the client waits in SYN-SENT for our SYN-ACK: type synack first")
	case s.me.State == tcpstate.SynSent:
		return fmt.Errorf("nothing to acknowledge yet: the SYN-ACK has not arrived (we are in SYN-SENT)")
	case s.me.State == tcpstate.Closed && s.me.SndNxt != s.me.ISS:
		return s.gone("ack")
	case s.me.State == tcpstate.Closed:
		return fmt.Errorf("nothing to acknowledge: no connection yet (send `syn` first)")
	}
	handshake := !s.ackSent
	why := []string{fmt.Sprintf("ACK: ack %d = RCV.NXT, the next byte we expect; seq %d = SND.NXT", uint32(s.me.RcvNxt), uint32(s.me.SndNxt))}
	if handshake {
		why = []string{
			fmt.Sprintf("ACK: ack %d = peer seq %d + 1 (its SYN takes one sequence number); seq %d = our ISN + 1", uint32(s.me.IRS.Add(1)), uint32(s.me.IRS), uint32(s.me.ISS.Add(1))),
			"the three-way handshake is complete",
		}
		if s.opt.wscale {
			why = append(why, fmt.Sprintf("our window from here on is scaled: win %d × 2^%d = %d bytes", s.window(craft.ACK), s.me.RcvShift, uint32(s.window(craft.ACK))<<s.me.RcvShift))
		}
	}
	if err := s.ask(ctx, s.segment(craft.ACK, nil), why); err != nil {
		return err
	}
	if handshake && s.ackSent {
		s.note("the handshake's ACK already went out while you were deciding (the peer repeated its SYN-ACK and we acknowledged it)")
		return nil
	}
	s.sendSeg(s.segment(craft.ACK, nil), why, sendOwn)
	return s.ended
}

// canSend reports whether our end may still send data.
func (s *Session) canSend() bool {
	return (s.me.State == tcpstate.Established || s.me.State == tcpstate.CloseWait) && s.ended == nil
}

// Write sends data in segments of at most the MSS, within the peer's window
// and our congestion window, without waiting for the ACK of the last ones:
// it waits only while the windows are full, processing the peer's segments.
func (s *Session) Write(ctx context.Context, data []byte) error {
	if !s.canSend() {
		if s.ended != nil || s.me.State == tcpstate.Closed {
			return s.gone("send")
		}
		return fmt.Errorf("cannot send data in %s", s.me.State)
	}
	if err := s.ask(ctx, s.segment(craft.PSH|craft.ACK, data[:min(len(data), s.maxSegment())]), []string{plural(len(data), "byte") + " to send"}); err != nil {
		return err
	}
	mss := s.maxSegment()
	s.writing = true
	defer func() { s.writing = false }()
	for off := 0; off < len(data); {
		s.drain()
		if !s.canSend() {
			return s.gone("send")
		}
		inFlight := uint32(s.me.SndNxt - s.me.SndUna)
		room := s.snd.room(s.me.SndWnd, inFlight)
		if room <= 0 && s.me.SndWnd == 0 && len(s.snd.queue) == 0 {
			room = 1 // a zero-window probe: one byte, retransmitted with backoff (RFC 9293 §3.8.6.1)
		}
		if room < mss && room < len(data)-off && len(s.snd.queue) > 0 {
			room = 0 // no silly small segments while data is in flight (RFC 9293 §3.8.6.2.1)
		}
		if room <= 0 {
			if err := s.waitRoom(ctx); err != nil {
				return err
			}
			continue
		}
		n := min(len(data)-off, s.segmentLimit(mss, len(data)-off), room)
		if n > mss && n < len(data)-off {
			n -= n % mss // whole segments while more is to come, as the kernel cuts them
		}
		chunk := data[off : off+n]
		seg := s.segment(craft.PSH|craft.ACK, chunk)
		why := []string{fmt.Sprintf("%s at seq %d (relative %d); the next byte we send will be %d = %d + %d", plural(n, "byte"), uint32(s.me.SndNxt), uint32(s.me.SndNxt-s.me.ISS), uint32(s.me.SndNxt)+uint32(n), uint32(s.me.SndNxt), n)}
		if n > mss {
			why = append(why, fmt.Sprintf("one large segment (GSO) of %d × %d bytes: the kernel cuts it into MSS-sized segments only where the link needs it", (n+mss-1)/mss, mss))
		}
		if s.me.SndWnd == 0 {
			why = append(why, "the peer's window is 0: this one byte is a window probe (RFC 9293 §3.8.6.1)")
		}
		if !s.transmit(seg, why) {
			return s.ended
		}
		off += n
	}
	return nil
}

// waitRoom waits until the windows leave room for more data: an ACK frees
// what was in flight, or the peer opens its window. With nothing in flight
// and the peer's window shut, it gives up after the timeout.
func (s *Session) waitRoom(ctx context.Context) error {
	una, wnd := s.me.SndUna, s.me.SndWnd
	u := until{done: func() bool { return s.me.SndUna != una || s.me.SndWnd != wnd || len(s.snd.queue) == 0 }}
	if len(s.snd.queue) == 0 {
		u.deadline = s.env.Now().Add(s.cfg.Timeout)
	}
	err := s.run(ctx, u)
	if errors.Is(err, errDeadline) {
		return fmt.Errorf("the peer's receive window stayed at %d bytes for %v with nothing of ours in flight (its application does not read)", s.me.SndWnd, s.cfg.Timeout)
	}
	return err
}

// Send sends data and waits until the peer has acknowledged all of it
// (bounded by the timeout once the sender has stopped retransmitting).
func (s *Session) Send(ctx context.Context, data []byte) error {
	if err := s.Write(ctx, data); err != nil {
		return err
	}
	return s.WaitAcked(ctx, "our "+plural(len(data), "byte"))
}

// WaitAcked waits until everything we sent is acknowledged; what names it
// for the message when the timeout passes first.
func (s *Session) WaitAcked(ctx context.Context, what string) error {
	target := s.me.SndNxt
	err := s.run(ctx, until{
		done:     func() bool { return target.LessThanEq(s.me.SndUna) },
		deadline: s.env.Now().Add(s.cfg.Timeout + s.snd.rto),
	})
	if errors.Is(err, errDeadline) {
		return fmt.Errorf("no ACK for %s within %v (SND.UNA %d, SND.NXT %d)", what, s.cfg.Timeout, uint32(s.me.SndUna), uint32(s.me.SndNxt))
	}
	return err
}

// FIN sends our FIN without waiting.
func (s *Session) FIN(ctx context.Context) error {
	switch {
	case s.ended != nil, s.me.State == tcpstate.Closed && s.me.SndNxt != s.me.ISS:
		return s.gone("fin")
	case s.me.FinSent:
		return fmt.Errorf("our FIN is out already (we are in %s)", s.me.State)
	}
	switch s.me.State {
	case tcpstate.Established, tcpstate.CloseWait, tcpstate.SynReceived:
	default:
		return fmt.Errorf("cannot send a FIN in %s", s.me.State)
	}
	why := "FIN: we have nothing more to send"
	if s.me.State == tcpstate.CloseWait {
		why = "FIN after the peer's FIN: the passive side's close"
	}
	return s.sendFIN(ctx, why)
}

func (s *Session) sendFIN(ctx context.Context, why string) error {
	fin := s.segment(craft.FIN|craft.ACK, nil)
	lines := []string{why, fmt.Sprintf("a FIN takes one sequence number: seq %d, our next would be %d", uint32(fin.Seq), uint32(fin.Seq)+1)}
	if err := s.ask(ctx, fin, lines); err != nil {
		return err
	}
	if !s.canFIN() {
		return s.gone("fin")
	}
	if !s.transmit(s.segment(craft.FIN|craft.ACK, nil), lines) {
		return s.ended
	}
	return nil
}

func (s *Session) canFIN() bool {
	return s.ended == nil && !s.me.FinSent &&
		(s.me.State == tcpstate.Established || s.me.State == tcpstate.CloseWait || s.me.State == tcpstate.SynReceived)
}

// RST aborts the connection with a reset the peer accepts.
func (s *Session) RST(ctx context.Context) error {
	if !s.begun || s.me.State == tcpstate.Closed || s.me.State == tcpstate.TimeWait {
		return s.gone("rst")
	}
	rst := s.resetSegment()
	why := []string{s.explainRST(rst)}
	if err := s.ask(ctx, rst, why); err != nil {
		return err
	}
	s.sendResets(nil)
	if s.ended == nil {
		s.ended = ErrAborted
	}
	return nil
}
