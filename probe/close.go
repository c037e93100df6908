package probe

import (
	"context"
	"errors"
	"fmt"

	"tcpshake/probe/tcpstate"
)

// Close ends the connection as mode says. It does not release anything:
// End does (the caller defers it).
func (s *Session) Close(ctx context.Context, mode CloseMode) error {
	if s.ended != nil {
		if errors.Is(s.ended, ErrAborted) {
			return nil
		}
		return s.ended
	}
	switch s.me.State {
	case tcpstate.Closed:
		return nil
	case tcpstate.SynSent:
		return s.RST(ctx)
	}
	switch mode {
	case CloseRST:
		return s.RST(ctx)
	case CloseNone:
		s.releaseGuard()
		s.note("we leave the connection " + s.me.State.String() + " and remove the guard: the peer keeps a connection nobody owns here; " +
			"our kernel will answer its next segment (data or keepalive) with RST, so it ends then")
		return nil
	case CloseWait:
		if err := s.waitPeerFIN(ctx, "passive close: we wait for the peer to close first"); err != nil {
			return err
		}
		return s.finAndWait(ctx)
	case CloseHalf:
		if !s.me.FinSent {
			if err := s.sendFIN(ctx, "half-close: FIN says we will send nothing more, but we keep receiving until the peer closes too"); err != nil {
				return err
			}
		}
		if err := s.waitPeerFIN(ctx, ""); err != nil {
			return err
		}
		return s.finish(ctx)
	default:
		return s.finAndWait(ctx)
	}
}

// finAndWait sends our FIN (active close, or the second half of a passive
// one) and waits for the connection to finish.
func (s *Session) finAndWait(ctx context.Context) error {
	if s.me.FinSent {
		return s.finish(ctx) // our FIN is out already (the shell's `fin`): only wait for the end
	}
	why := "active close: FIN says we have nothing more to send"
	if s.me.State == tcpstate.CloseWait {
		why = "the peer closed first, so this is the passive side: our FIN after its FIN"
	}
	if err := s.sendFIN(ctx, why); err != nil {
		return err
	}
	return s.finish(ctx)
}

// waitPeerFIN waits (bounded by Timeout) until the peer's FIN arrived.
func (s *Session) waitPeerFIN(ctx context.Context, why string) error {
	if why != "" {
		s.note(why)
	}
	err := s.run(ctx, until{done: func() bool { return s.me.FinRcvd }, deadline: s.env.Now().Add(s.cfg.Timeout)})
	if errors.Is(err, errDeadline) {
		s.note(fmt.Sprintf("the peer did not close within %v (its application keeps the connection open); we reset it so nothing stays half-open", s.cfg.Timeout))
		s.sendResets([]string{"RST: abort instead of waiting forever"})
		return ErrPeerStays
	}
	return err
}

// finish waits for our FIN's ACK and the peer's FIN, then runs TIME-WAIT.
func (s *Session) finish(ctx context.Context) error {
	closed := func() bool { return s.me.State == tcpstate.Closed || s.me.State == tcpstate.TimeWait }
	err := s.run(ctx, until{done: closed, deadline: s.env.Now().Add(s.cfg.Timeout)})
	if errors.Is(err, errDeadline) {
		s.note(fmt.Sprintf("the peer did not finish closing within %v; we reset it so nothing stays half-open", s.cfg.Timeout))
		s.sendResets([]string{"RST: abort instead of waiting forever"})
		return ErrPeerStays
	}
	if err != nil || s.me.State != tcpstate.TimeWait {
		return err
	}
	if s.cfg.TimeWait == NoTimeWait {
		chg := s.me.Expire()
		s.note(fmt.Sprintf("--time-wait 0: TIME-WAIT skipped (RFC 9293 waits 2·MSL so a lost last ACK can be repeated); %s", chg))
		return nil
	}
	s.note(fmt.Sprintf("TIME-WAIT: RFC 9293 waits 2·MSL (MSL is 2 minutes in RFC 9293; stacks choose their own, Linux holds 60 s) so a lost last ACK can be repeated and old duplicates die out; here %v (--time-wait)", s.cfg.TimeWait))
	if err := s.Hold(ctx, s.cfg.TimeWait); err != nil {
		return err
	}
	if s.me.State == tcpstate.TimeWait {
		chg := s.me.Expire()
		s.note(fmt.Sprintf("%s: the connection is gone on our side", chg))
	}
	return nil
}
