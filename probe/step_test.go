package probe_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tcpshake/capture"
	"tcpshake/event"
	"tcpshake/internal/tcppeer"
	"tcpshake/probe"
)

// slowStepper is a --step user who takes a while over each Enter: it
// records what it was asked and answers after think.
type slowStepper struct {
	mu    sync.Mutex
	asked []event.Step
	think time.Duration
	c     chan error
}

func (st *slowStepper) Ask(next event.Step) {
	st.mu.Lock()
	st.asked = append(st.asked, next)
	st.mu.Unlock()
	go func() {
		time.Sleep(st.think)
		st.c <- nil
	}()
}

func (st *slowStepper) C() <-chan error { return st.c }

// TestStepKeepsTheLoopRunning: while --step waits 5 s for Enter before our
// handshake ACK, the peer repeats its SYN-ACK (its own timer, 1 s); the
// loop goes on: the repeat is acknowledged at once without asking (which
// stops the peer's timer), the ACK the user then confirms is not sent a
// second time, and nothing is retransmitted while waiting (our SYN was
// acknowledged; the FIN's ACK comes while the next question waits). Every
// question names the segment that will be sent.
func TestStepKeepsTheLoopRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := tcppeer.New()
		peer.SYNACKTimeout = time.Second
		m := capture.NewMatcher()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, peer) }()
		defer func() { cancel(); <-done }()
		rec := &sessEvents{}
		st := &slowStepper{think: 5 * time.Second, c: make(chan error, 1)}
		isn := sessISN
		cfg := sessConfig()
		cfg.ISN = &isn
		s := probe.NewSession(cfg, probe.SessionEnv{
			Env:     probe.Env{Sender: peer, Matcher: m, Sink: rec, Now: time.Now, Rand: func() uint32 { return 0x1234 }},
			Stepper: st,
		})
		err := handshakeScript("hi\n", probe.CloseFIN)(ctx, s)
		if err != nil {
			s.Abort(err)
		}
		s.End()
		if err != nil {
			t.Fatalf("session: %v", err)
		}
		steps := rec.steps()
		var synAcks, acksBeforeData, retrans int
		for _, x := range steps {
			switch {
			case x.Direction == "received" && x.Flags == "S.":
				synAcks++
			case x.Direction == "sent" && x.Flags == "." && x.RelSeq == 1 && x.RelAck == 1:
				acksBeforeData++
			}
			if x.Retrans {
				retrans++
				t.Errorf("step %d [%s] is a retransmission: the loop stopped while waiting for Enter", x.N, x.Flags)
			}
		}
		if synAcks < 2 {
			t.Errorf("%d SYN-ACKs shown, want the peer's repeat (1 s into the 5 s wait) handled as it came", synAcks)
		}
		if acksBeforeData != 1 {
			t.Errorf("%d ACKs of the peer's SYN: the repeat is acknowledged at once without asking, and the ACK the user confirms later is not sent again", acksBeforeData)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, a := range st.asked {
			if a.Direction != "sent" || a.Flags == "" {
				t.Errorf("asked about %+v, want the segment that will be sent", a)
			}
		}
		if len(st.asked) == 0 || st.asked[0].Flags != "S" {
			t.Fatalf("asked %d times, first %+v: want the SYN first", len(st.asked), st.asked)
		}
		var notes []string
		for _, x := range steps {
			if x.Direction == "note" {
				notes = append(notes, strings.Join(x.Explain, " "))
			}
		}
		if !strings.Contains(strings.Join(notes, "\n"), "already went out") {
			t.Errorf("no note says the handshake's ACK already went out while the user decided; notes:\n%s", strings.Join(notes, "\n"))
		}
	})
}
