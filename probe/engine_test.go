package probe_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/internal/tcppeer"
	"tcpshake/probe"
	"tcpshake/probe/tcpstate"
)

// Seam tests of the rebuilt engine against slow peers, and of every
// operation after the connection ended. They reuse session_test.go's
// harness (runSession, sessConfig, ladder, explained, checkRelative).

// shellScript drives a session as the shell's script `syn`, `ack`,
// `send hello\n`, `fin` does, without any `wait`: each command waits for
// what it expects (syn for the answer, send and fin for their ACK), then
// `quit` closes.
func shellScript(data string) sessScript {
	return func(ctx context.Context, s *probe.Session) error {
		if err := s.Begin("shell"); err != nil {
			return err
		}
		s.ManualACK()
		if err := s.SYN(ctx); err != nil {
			return fmt.Errorf("syn: %w", err)
		}
		if err := s.WaitOpen(ctx); err != nil {
			return fmt.Errorf("syn (wait): %w", err)
		}
		if err := s.ACK(ctx); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		if err := s.Send(ctx, []byte(data)); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if err := s.FIN(ctx); err != nil {
			return fmt.Errorf("fin: %w", err)
		}
		if err := s.WaitAcked(ctx, "our FIN"); err != nil {
			return fmt.Errorf("fin (wait): %w", err)
		}
		return s.Close(ctx, probe.CloseFIN)
	}
}

// checkTimeOrder checks that the steps are numbered as emitted and that
// their times never go back.
func checkTimeOrder(t *testing.T, steps []event.Step) {
	t.Helper()
	last, n := -1.0, 0
	for _, s := range steps {
		if s.TimeMs < last {
			t.Errorf("step %d (%s [%s]) at %.3f ms, after a step at %.3f ms", s.N, s.Direction, s.Flags, s.TimeMs, last)
		}
		last = s.TimeMs
		if s.Direction == "note" {
			continue
		}
		n++
		if s.N != n {
			t.Errorf("step numbered %d, want %d (numbered as emitted)", s.N, n)
		}
	}
}

// retransmittedSYN matches words that name our retransmitted SYN as the
// reason for a repeated SYN-ACK.
var retransmittedSYN = regexp.MustCompile(`(?i)(retransmitted|second|repeated|resent|other) SYN([^-]|$)|SYN (retransmission|again)`)

// repeatedSynAcks returns the explanations of the SYN-ACKs received after
// the first one, and whether each came before any ACK of ours was sent.
func repeatedSynAcks(steps []event.Step) (texts []string, beforeOurAck []bool) {
	synAcks, ourAcks := 0, 0
	for _, s := range steps {
		switch {
		case s.Direction == "sent" && s.Flags == ".":
			ourAcks++
		case s.Direction == "received" && s.Flags == "S.":
			synAcks++
			if synAcks > 1 {
				texts = append(texts, strings.Join(s.Explain, "\n"))
				beforeOurAck = append(beforeOurAck, ourAcks == 0)
			}
		}
	}
	return texts, beforeOurAck
}

// TestSessionSlowPeer plays the handshake's and the shell's whole script
// against peers that answer after 5 ms, 50 ms and 1 s. Everything works at
// every speed; the shell's commands never race the answers; a peer slower
// than our RTO makes us retransmit the SYN exactly once (RFC 6298 §5.7 then
// keeps the data's RTO at 3 s, so nothing else is retransmitted, and Karn's
// rule keeps the SYN out of the RTT estimate), and the duplicate SYN-ACK
// that answers the retransmitted SYN is explained by it.
func TestSessionSlowPeer(t *testing.T) {
	fast := []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">F.", "<F.", ">."}
	for _, delay := range []time.Duration{5 * time.Millisecond, 50 * time.Millisecond, time.Second} {
		for _, tc := range []struct {
			name   string
			script sessScript
		}{
			{"handshake", handshakeScript("hello\n", probe.CloseFIN)},
			{"shell", shellScript("hello\n")},
		} {
			t.Run(fmt.Sprintf("%v/%s", delay, tc.name), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					peer := tcppeer.New()
					peer.Delay = delay
					got := runSession(t, peer, sessConfig(), tc.script, nil)
					if got.err != nil {
						t.Fatalf("session: %v", got.err)
					}
					if string(got.received) != "hello\n" || string(got.peerData) != "hello\n" {
						t.Errorf("received %q, the peer got %q; want %q both ways", got.received, got.peerData, "hello\n")
					}
					states := []tcpstate.State{got.us, got.peer, got.peerTrue}
					if diff := cmp.Diff([]tcpstate.State{tcpstate.Closed, tcpstate.Closed, tcpstate.Closed}, states); diff != "" {
						t.Errorf("end states [us, peer inferred, peer real] (-want +got):\n%s", diff)
					}
					text := explained(got.steps)
					if strings.Contains(text, "nothing to acknowledge") {
						t.Errorf("a command raced the network:\n%s", text)
					}
					checkTimeOrder(t, got.steps)
					checkRelative(t, got.steps)
					rtt := tcppeer.DefaultRTT + delay
					if delay < time.Second {
						if diff := cmp.Diff(fast, ladder(got.steps)); diff != "" {
							t.Errorf("conversation (-want +got):\n%s", diff)
						}
						if got.sum.Retransmissions != 0 {
							t.Errorf("%d retransmissions against a peer answering in %v, want 0", got.sum.Retransmissions, rtt)
						}
						if want := float64(rtt) / 1e6; got.sum.SRTTMs < want*0.99 || got.sum.SRTTMs > want*1.01 {
							t.Errorf("srtt %.3f ms, want %.3f (every sample is the peer's %v)", got.sum.SRTTMs, want, rtt)
						}
						return
					}
					// The peer answers after 1.001 s, our RTO is 1 s: the SYN goes
					// twice, and each SYN draws a SYN-ACK.
					l := ladder(got.steps)
					if len(l) < 3 || l[0] != ">S" || l[1] != ">S*" || l[2] != "<S." {
						t.Errorf("conversation %v: want >S >S* <S. first", l)
					}
					if got.sum.Retransmissions != 1 {
						t.Errorf("%d retransmissions, want 1 (the SYN; after it the RTO is 3 s, RFC 6298 §5.7):\n%s", got.sum.Retransmissions, strings.Join(l, " "))
					}
					// Karn: the SYN's exchange is no sample; the data's is 1.001 s.
					if want := float64(rtt) / 1e6; got.sum.SRTTMs < want*0.99 || got.sum.SRTTMs > want*1.01 {
						t.Errorf("srtt %.3f ms, want %.3f: the retransmitted SYN must not be sampled (Karn), the data must", got.sum.SRTTMs, want)
					}
					texts, _ := repeatedSynAcks(got.steps)
					if len(texts) != 1 {
						t.Fatalf("%d repeated SYN-ACKs, want 1 (the answer to our retransmitted SYN):\n%s", len(texts), strings.Join(l, " "))
					}
					if !retransmittedSYN.MatchString(texts[0]) {
						t.Errorf("the second SYN-ACK answers our retransmitted SYN (the peer has no timer of its own here, and our ACK was not lost), but the explanation does not say so:\n%s", texts[0])
					}
					for _, r := range got.records {
						if r.Lost {
							t.Errorf("segment %v lost: nothing is dropped in this test", r.Seg)
						}
					}
				})
			})
		}
	}
}

// TestSessionRepeatedSynAckExplained checks the words for a repeated
// SYN-ACK against what really happened in each case: it answers our
// retransmitted SYN; the peer's own timer fired before we acknowledged; our
// ACK was lost. "Our ACK was lost" is said only when we had sent one.
func TestSessionRepeatedSynAckExplained(t *testing.T) {
	// synWaitAck is the shell's `syn`, `wait 1500ms`, `ack`, `quit`.
	synWaitAck := func(ctx context.Context, s *probe.Session) error {
		if err := s.Begin("shell"); err != nil {
			return err
		}
		s.ManualACK()
		if err := s.SYN(ctx); err != nil {
			return err
		}
		if err := s.WaitOpen(ctx); err != nil {
			return err
		}
		if err := s.Hold(ctx, 1500*time.Millisecond); err != nil {
			return err
		}
		if err := s.ACK(ctx); err != nil {
			return err
		}
		return s.Close(ctx, probe.CloseRST)
	}
	openHold := func(ctx context.Context, s *probe.Session) error {
		if err := s.Open(ctx); err != nil {
			return err
		}
		if err := s.Hold(ctx, 1500*time.Millisecond); err != nil {
			return err
		}
		return s.Close(ctx, probe.CloseRST)
	}
	tests := []struct {
		name   string
		peer   func(p *tcppeer.Peer)
		cfg    func(c *probe.SessionConfig)
		script sessScript
		// what the explanation must and must not say
		want, wantNot []*regexp.Regexp
		before        bool // the repeat arrives before any ACK of ours
	}{
		{
			// SYN-ACKs at 1.001 s and 2.001 s (the answer to our SYN retransmitted
			// at 1 s), our ACK at 2.501 s.
			name:    "it answers our retransmitted SYN, before our ACK",
			peer:    func(p *tcppeer.Peer) { p.Delay = time.Second },
			script:  synWaitAck,
			want:    []*regexp.Regexp{retransmittedSYN},
			wantNot: []*regexp.Regexp{regexp.MustCompile(`our ACK was lost`)},
			before:  true,
		},
		{
			name: "its own timer fired before our ACK",
			peer: func(p *tcppeer.Peer) { p.SYNACKTimeout = time.Second },
			cfg:  func(c *probe.SessionConfig) { c.RTO = 3 * time.Second },
			// SYN-ACK at 1 ms, its repeat at 1.001 s, our ACK at 1.501 s.
			script:  synWaitAck,
			want:    []*regexp.Regexp{regexp.MustCompile(`timer`), regexp.MustCompile(`no ACK from us`)},
			wantNot: []*regexp.Regexp{regexp.MustCompile(`our ACK was lost`), retransmittedSYN},
			before:  true,
		},
		{
			name: "our ACK was lost",
			peer: func(p *tcppeer.Peer) {
				p.SYNACKTimeout = time.Second
				p.Drop = []int{2} // our handshake ACK
			},
			script:  openHold,
			want:    []*regexp.Regexp{regexp.MustCompile(`our ACK was lost`)},
			wantNot: []*regexp.Regexp{retransmittedSYN},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				peer := tcppeer.New()
				tt.peer(peer)
				cfg := sessConfig()
				if tt.cfg != nil {
					tt.cfg(&cfg)
				}
				got := runSession(t, peer, cfg, tt.script, nil)
				if got.err != nil {
					t.Fatalf("session: %v", got.err)
				}
				texts, before := repeatedSynAcks(got.steps)
				if len(texts) == 0 {
					t.Fatalf("no repeated SYN-ACK: %v", ladder(got.steps))
				}
				if before[0] != tt.before {
					t.Fatalf("the repeat came before our ACK: %v, want %v: %v", before[0], tt.before, ladder(got.steps))
				}
				for _, re := range tt.want {
					if !re.MatchString(texts[0]) {
						t.Errorf("the repeated SYN-ACK's explanation does not match %q:\n%s", re, texts[0])
					}
				}
				for _, re := range tt.wantNot {
					if re.MatchString(texts[0]) {
						t.Errorf("the repeated SYN-ACK's explanation matches %q, which is not what happened:\n%s", re, texts[0])
					}
				}
				// The peer is established in the end: the handshake's ACK (or
				// its repetition) got there, and our RST closed it.
				if got.peerTrue != tcpstate.Closed || !got.peerReset {
					t.Errorf("the peer ends %v (reset by us: %v), want CLOSED by our RST", got.peerTrue, got.peerReset)
				}
				checkTimeOrder(t, got.steps)
			})
		})
	}
}

// ending is one way a connection ends before the operations are tried.
type ending struct {
	name  string
	peer  func(p *tcppeer.Peer)
	cfg   func(c *probe.SessionConfig)
	reach sessScript
	cause error // what reach returns (nil: it ended without an error)
	ended error // what Ended says afterwards
}

func endings() []ending {
	open := func(ctx context.Context, s *probe.Session) error { return s.Open(ctx) }
	return []ending{
		{
			name:  "refused",
			peer:  func(p *tcppeer.Peer) { p.Answer = tcppeer.Closed },
			reach: open, cause: probe.ErrRefused, ended: probe.ErrRefused,
		},
		{
			name:  "reset by the peer",
			peer:  func(p *tcppeer.Peer) { p.ResetAt = 3 },
			reach: handshakeScript("hello\n", probe.CloseFIN), cause: probe.ErrReset, ended: probe.ErrReset,
		},
		{
			name:  "closed normally",
			reach: handshakeScript("hello\n", probe.CloseFIN),
		},
		{
			name:  "closed normally, TIME-WAIT skipped",
			cfg:   func(c *probe.SessionConfig) { c.TimeWait = probe.NoTimeWait },
			reach: handshakeScript("hello\n", probe.CloseFIN),
		},
		{
			name:  "timed out in SYN-SENT",
			peer:  func(p *tcppeer.Peer) { p.Answer = tcppeer.Silent },
			cfg:   func(c *probe.SessionConfig) { c.RTO, c.Retries = 200*time.Millisecond, 2 },
			reach: open, cause: probe.ErrNoAnswer, ended: probe.ErrNoAnswer,
		},
		{
			name: "timed out with data unacknowledged",
			peer: func(p *tcppeer.Peer) { p.Drop = []int{3, 4, 5, 6, 7, 8, 9, 10} },
			cfg:  func(c *probe.SessionConfig) { c.Retries = 3 },
			reach: func(ctx context.Context, s *probe.Session) error {
				if err := s.Open(ctx); err != nil {
					return err
				}
				return s.Send(ctx, []byte("hello\n"))
			},
			cause: probe.ErrNoAnswer, ended: probe.ErrNoAnswer,
		},
		{
			name: "after our own RST",
			reach: func(ctx context.Context, s *probe.Session) error {
				if err := s.Open(ctx); err != nil {
					return err
				}
				return s.RST(ctx)
			},
			ended: probe.ErrAborted,
		},
	}
}

// afterOp is one operation tried after the end, and what it may return.
type afterOp struct {
	name string
	do   func(ctx context.Context, s *probe.Session) error
	// mustFail: the operation needs a live connection, so it must fail,
	// saying the connection is gone (ErrClosed).
	mustFail bool
	// sends: the operation may put a segment on the wire (a crafted one).
	sends bool
}

func afterOps() []afterOp {
	x := []byte("x")
	return []afterOp{
		{name: "SYN", do: func(ctx context.Context, s *probe.Session) error { return s.SYN(ctx) }, mustFail: true},
		{name: "ACK", do: func(ctx context.Context, s *probe.Session) error { return s.ACK(ctx) }, mustFail: true},
		{name: "Write", do: func(ctx context.Context, s *probe.Session) error { return s.Write(ctx, x) }, mustFail: true},
		{name: "Send", do: func(ctx context.Context, s *probe.Session) error { return s.Send(ctx, x) }, mustFail: true},
		{name: "FIN", do: func(ctx context.Context, s *probe.Session) error { return s.FIN(ctx) }, mustFail: true},
		{name: "RST", do: func(ctx context.Context, s *probe.Session) error { return s.RST(ctx) }, mustFail: true},
		{name: "WaitAcked", do: func(ctx context.Context, s *probe.Session) error { return s.WaitAcked(ctx, "everything") }},
		{name: "WaitOpen", do: func(ctx context.Context, s *probe.Session) error { return s.WaitOpen(ctx) }},
		{name: "Close fin", do: func(ctx context.Context, s *probe.Session) error { return s.Close(ctx, probe.CloseFIN) }},
		{name: "Close wait", do: func(ctx context.Context, s *probe.Session) error { return s.Close(ctx, probe.CloseWait) }},
		{name: "Close rst", do: func(ctx context.Context, s *probe.Session) error { return s.Close(ctx, probe.CloseRST) }},
		{name: "Expect", do: func(ctx context.Context, s *probe.Session) error {
			s.MarkCommand()
			return s.Expect(ctx, probe.Expectation{Flags: craft.ACK, Text: "."})
		}},
		{name: "Hold", do: func(ctx context.Context, s *probe.Session) error { return s.Hold(ctx, 300*time.Millisecond) }},
		{name: "Interact", do: func(ctx context.Context, s *probe.Session) error {
			lines := make(chan string, 1)
			lines <- "state"
			close(lines)
			return s.Interact(ctx, lines, func(string) bool { _ = s.Numbers(); return false })
		}},
		{name: "Craft data", sends: true, do: func(ctx context.Context, s *probe.Session) error {
			r, err := s.Craft(ctx, probe.Crafted{Flags: craft.PSH | craft.ACK, Data: x})
			if err == nil && r != probe.CraftTest {
				return fmt.Errorf("crafted data after the end taken as %d, want a test segment (%d): nothing is ours to deliver any more", r, probe.CraftTest)
			}
			return err
		}},
		{name: "Craft SYN", sends: true, do: func(ctx context.Context, s *probe.Session) error {
			r, err := s.Craft(ctx, probe.Crafted{Flags: craft.SYN})
			if err == nil && r != probe.CraftTest {
				return fmt.Errorf("crafted SYN after the end taken as %d, want a test segment (%d): a session plays one connection", r, probe.CraftTest)
			}
			return err
		}},
		{name: "Hold after the crafted segments", do: func(ctx context.Context, s *probe.Session) error { return s.Hold(ctx, time.Second) }},
	}
}

// try runs op, turning a panic into a test error.
func try(t *testing.T, what string, op func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v\n%s", what, r, debug.Stack())
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return op()
}

// TestSessionAfterEnd calls every operation after each way a connection
// ends: refused, reset by the peer, closed (with and without TIME-WAIT),
// timed out (in SYN-SENT and with data in flight), and reset by us. None
// panics; those that need a connection fail with ErrClosed and send
// nothing; only a crafted segment goes on the wire; the others return nil
// or how the connection ended. Then End, twice, and every operation again:
// nothing reaches the wire, the guard is released once.
func TestSessionAfterEnd(t *testing.T) {
	for _, e := range endings() {
		t.Run(e.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				peer := tcppeer.New()
				if e.peer != nil {
					e.peer(peer)
				}
				cfg := sessConfig()
				cfg.Timeout = 2 * time.Second
				if e.cfg != nil {
					e.cfg(&cfg)
				}
				var numbers []string
				script := func(ctx context.Context, s *probe.Session) error {
					err := e.reach(ctx, s)
					if !errors.Is(err, e.cause) || (e.cause == nil) != (err == nil) {
						t.Fatalf("reaching the end: %v, want %v", err, e.cause)
					}
					if !errors.Is(s.Ended(), e.ended) || (e.ended == nil) != (s.Ended() == nil) {
						t.Errorf("Ended() = %v, want %v", s.Ended(), e.ended)
					}
					cause := s.Ended()
					for round, ended := range []bool{false, true} {
						if ended {
							s.End()
							s.End()
						}
						for _, op := range afterOps() {
							what := fmt.Sprintf("%s (round %d)", op.name, round+1)
							before := len(peer.Records())
							err := try(t, what, func() error { return op.do(ctx, s) })
							sent := len(peer.Records()) - before
							switch {
							case op.mustFail && err == nil:
								t.Errorf("%s: no error after the connection ended (%v)", what, cause)
							case op.mustFail && !errors.Is(err, probe.ErrClosed) && !ended:
								t.Errorf("%s: %v: the error does not wrap ErrClosed (the connection is gone)", what, err)
							case err != nil && err.Error() == "":
								t.Errorf("%s: an empty error", what)
							case err != nil && !op.mustFail && !ended && !errors.Is(err, probe.ErrClosed) && !errors.Is(err, probe.ErrExpect) &&
								(cause == nil || !errors.Is(err, cause)):
								t.Errorf("%s: %v: neither nil, ErrClosed, a failed expectation, nor how the connection ended (%v)", what, err, cause)
							}
							if ended && err == nil && op.sends {
								t.Errorf("%s: no error after End", what)
							}
							if sent > 0 && (!op.sends || ended) {
								t.Errorf("%s sent %d segments after the connection ended%s: %v", what, sent, map[bool]string{true: " and End"}[ended], peer.Records()[before:])
							}
							if op.sends && !ended && err == nil && sent != 1 {
								t.Errorf("%s: no error, but %d segments on the wire, want 1", what, sent)
							}
						}
						n := try(t, "Numbers", func() error { numbers = append(numbers, s.Numbers()); return nil })
						_ = n
						try(t, "Summary", func() error {
							sum := s.Summary()
							if sum.Local != s.State().String() || sum.Remote != s.PeerState().String() {
								t.Errorf("summary says us %s, peer %s; the TCBs say %s, %s", sum.Local, sum.Remote, s.State(), s.PeerState())
							}
							return nil
						})
					}
					if !errors.Is(s.Ended(), e.ended) || (e.ended == nil) != (s.Ended() == nil) {
						t.Errorf("after every operation Ended() = %v, want still %v", s.Ended(), e.ended)
					}
					return nil
				}
				got := runSession(t, peer, cfg, script, nil)
				if got.guard.blocked != 1 || got.guard.released != 1 {
					t.Errorf("guard: %d blocked, %d released, want 1 and 1 (End is idempotent)", got.guard.blocked, got.guard.released)
				}
				for _, n := range numbers {
					if e.ended != nil && !strings.Contains(n, "the connection ended: ") {
						t.Errorf("state after %s does not say the connection ended:\n%s", e.name, n)
					}
				}
				checkTimeOrder(t, got.steps)
			})
		})
	}
}
