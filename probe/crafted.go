package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"tcpshake/craft"
	"tcpshake/probe/tcpstate"
)

// Crafted is a segment given field by field (the shell's `segment`
// command); nil fields take what the connection expects.
type Crafted struct {
	Flags  craft.Flags
	Seq    *craft.Seq
	Ack    *craft.Seq
	Window *uint16
	Data   []byte
}

// CraftResult says what a crafted segment became, so the caller knows what
// to wait for.
type CraftResult uint8

// What a crafted segment was taken as.
const (
	CraftTest  CraftResult = iota // a test segment: sent once, our state unchanged
	CraftOpen                     // a SYN in CLOSED: our active open
	CraftOwn                      // data or FIN at SND.NXT: ours to deliver (retransmitted until acknowledged)
	CraftAbort                    // an RST the peer accepts: our connection ends
)

// Craft sends a hand-made segment exactly as written; unset fields take
// what the connection expects. A SYN in CLOSED opens the connection; data
// or a FIN that starts at SND.NXT and carries the expected ack is ours to
// deliver (queued for retransmission, our state follows it); an RST at the
// peer's RCV.NXT ends the connection; anything else is a test segment, sent
// once and never rewritten, whose explanation says how it differs from what
// the peer expects (if the peer takes its data anyway, its ACK tells us,
// and the bytes then count as sent).
func (s *Session) Craft(ctx context.Context, c Crafted) (CraftResult, error) {
	if !s.begun {
		return CraftTest, fmt.Errorf("segment: not begun")
	}
	if c.Flags.Has(craft.SYN) && !c.Flags.Has(craft.ACK) && !c.Flags.Has(craft.RST) && s.me.State == tcpstate.Closed && s.ended == nil && s.me.SndNxt == s.me.ISS {
		return CraftOpen, s.craftOpen(ctx, c)
	}
	seg := s.segment(c.Flags, c.Data)
	if !c.Flags.Has(craft.ACK) {
		seg.Ack = 0
	}
	if c.Flags.Has(craft.SYN) {
		seg.Options = craft.SYNOptions(s.cfg.SYN)
	}
	if c.Seq != nil {
		seg.Seq = *c.Seq
	}
	if c.Ack != nil {
		seg.Ack = *c.Ack
	}
	if c.Window != nil {
		seg.Window = *c.Window
	}
	why := s.explainCrafted(&seg)
	if err := s.ask(ctx, seg, why); err != nil {
		return CraftTest, err
	}
	switch {
	case seg.Flags.Has(craft.RST) && seg.Seq == s.peerRcvNxt() && s.me.State != tcpstate.Closed:
		s.snd.queue, s.snd.deadline = nil, time.Time{}
		if !s.sendSeg(seg, append(why, "crafted RST at the peer's RCV.NXT: it accepts it, so this ends the connection on both sides"), sendAbort) {
			return CraftAbort, s.ended
		}
		if s.ended == nil {
			s.ended = ErrAborted
		}
		return CraftAbort, nil
	case seg.Seq == s.me.SndNxt && seg.Len() > 0 && !seg.Flags.Has(craft.RST) && !seg.Flags.Has(craft.SYN) && s.ended == nil &&
		s.me.State.Synchronized() && seg.Flags.Has(craft.ACK) && seg.Ack == s.me.RcvNxt:
		if seg.Flags.Has(craft.FIN) && !s.canFIN() {
			break
		}
		if !s.sendSeg(seg, append(why, fmt.Sprintf("crafted: %d of sequence space from SND.NXT, ours to deliver: retransmitted until acknowledged", seg.Len())), sendOwn) {
			return CraftOwn, s.ended
		}
		s.snd.sent(seg.Clone(), s.env.Now())
		return CraftOwn, nil
	}
	if len(why) == 0 {
		why = []string{"crafted segment: what the peer expects, sent once as a test"}
	}
	if !s.sendSeg(seg, why, sendCrafted) {
		return CraftTest, s.ended
	}
	return CraftTest, nil
}

// craftOpen is a crafted SYN in CLOSED: our active open, with its seq as
// our ISN when given.
func (s *Session) craftOpen(ctx context.Context, c Crafted) error {
	if c.Seq != nil {
		s.me.ISS, s.me.SndUna, s.me.SndNxt, s.sndMax = *c.Seq, *c.Seq, *c.Seq, *c.Seq
	}
	syn := s.synSegment(s.me.ISS, c.Flags)
	syn.Payload = c.Data
	if c.Window != nil {
		syn.Window = *c.Window
	}
	if c.Ack != nil {
		syn.Ack = *c.Ack
	}
	why := []string{fmt.Sprintf("crafted SYN in CLOSED: our active open with ISN %d", uint32(s.me.ISS))}
	if n := len(c.Data); n > 0 {
		why = append(why, fmt.Sprintf("%d bytes of data on the SYN: the peer may queue them until the handshake completes; its ack will be seq + %d + 1", n, n))
	}
	return s.openWith(ctx, syn, why)
}

// explainCrafted says how a crafted segment differs from what the peer
// expects.
func (s *Session) explainCrafted(seg *craft.Segment) []string {
	var why []string
	switch d := int32(seg.Seq - s.me.SndNxt); {
	case d > 0:
		why = append(why, fmt.Sprintf("crafted: seq %d is %d beyond SND.NXT %d, out of order for the peer", uint32(seg.Seq), d, uint32(s.me.SndNxt)))
	case d < 0:
		why = append(why, fmt.Sprintf("crafted: seq %d is %d before SND.NXT %d, old data for the peer", uint32(seg.Seq), -int64(d), uint32(s.me.SndNxt)))
	}
	if seg.Flags.Has(craft.ACK) && seg.Ack != s.me.RcvNxt {
		why = append(why, fmt.Sprintf("crafted: ack %d differs from RCV.NXT %d by %d: it goes out as written", uint32(seg.Ack), uint32(s.me.RcvNxt), int32(seg.Ack-s.me.RcvNxt)))
	}
	return why
}

// Expectation is the shell's `expect FLAGS [seq=…] [ack=…] [len=…]`: what
// the peer's next segment must be. Relative numbers count from the peer's
// ISN (seq) and ours (ack), as the steps show them.
type Expectation struct {
	Flags          craft.Flags
	Seq, Ack       *uint32
	SeqRel, AckRel bool
	Len            *int
	Text           string // as written, for messages
}

// ErrExpect is wrapped by a failed expectation.
var ErrExpect = errors.New("expectation failed")

// MarkCommand starts a new command: `expect` looks at what arrives from
// here on (and what arrived during the previous command).
func (s *Session) MarkCommand() { s.inbox.next = s.inbox.mark() }

// Expect waits (bounded by the timeout) for the peer's next segment not yet
// examined by an expect, and checks it.
func (s *Session) Expect(ctx context.Context, e Expectation) error {
	have := func() bool { return len(s.inbox.since(s.inbox.next)) > 0 }
	if !have() {
		err := s.run(ctx, until{done: have, deadline: s.env.Now().Add(s.cfg.Timeout), anyway: true})
		if errors.Is(err, errDeadline) {
			return fmt.Errorf("%w: expect %s: nothing arrived from the peer within %v", ErrExpect, e.Text, s.cfg.Timeout)
		}
		if err != nil {
			return err
		}
	}
	seg := s.inbox.since(s.inbox.next)[0]
	s.inbox.next++
	var bad []string
	if seg.Flags != e.Flags {
		bad = append(bad, fmt.Sprintf("flags [%s], not [%s]", seg.Flags, e.Flags))
	}
	bad = append(bad, checkNumber("seq", seg.Seq, e.Seq, e.SeqRel, s.me.IRS)...)
	bad = append(bad, checkNumber("ack", seg.Ack, e.Ack, e.AckRel, s.me.ISS)...)
	if e.Len != nil && len(seg.Payload) != *e.Len {
		bad = append(bad, fmt.Sprintf("len %d, not %d", len(seg.Payload), *e.Len))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: expect %s: the peer's next segment was %s: %s", ErrExpect, e.Text, seg.String(), strings.Join(bad, ", "))
	}
	s.note(fmt.Sprintf("expect %s: as expected", e.Text))
	return nil
}

// checkNumber compares one field of the peer's segment with an expected
// value, absolute or relative to base; nil want accepts anything.
func checkNumber(name string, got craft.Seq, want *uint32, rel bool, base craft.Seq) []string {
	if want == nil {
		return nil
	}
	v := uint32(got)
	if rel {
		v = uint32(got - base)
	}
	if v != *want {
		return []string{fmt.Sprintf("%s %d, not %d", name, v, *want)}
	}
	return nil
}

// Numbers reports the TCB's sequence variables, for the shell's `state`.
func (s *Session) Numbers() string {
	obs := ""
	if s.Observing() {
		obs = ", kernel says " + s.Observed()
	}
	end := ""
	if s.ended != nil {
		end = "\nthe connection ended: " + s.ended.Error()
	}
	return fmt.Sprintf("us %s, peer %s (inferred%s)\nISS %d  SND.UNA %d (rel %d)  SND.NXT %d (rel %d)  SND.WND %d\nIRS %d  RCV.NXT %d (rel %d)  RCV.WND %d  unacknowledged segments %d  srtt %v  rto %v%s",
		s.me.State, s.peer.State, obs, uint32(s.me.ISS), uint32(s.me.SndUna), uint32(s.me.SndUna-s.me.ISS), uint32(s.me.SndNxt), uint32(s.me.SndNxt-s.me.ISS), s.me.SndWnd,
		uint32(s.me.IRS), uint32(s.me.RcvNxt), uint32(s.me.RcvNxt-s.me.IRS), s.me.RcvWnd, len(s.snd.queue), s.snd.est.srtt, s.snd.rto, end)
}
