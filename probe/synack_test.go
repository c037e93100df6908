package probe_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"tcpshake/capture"
	"tcpshake/internal/tcppeer"
	"tcpshake/probe"
)

// TestRepeatedSynAckTimed: our handshake ACK is lost and the peer's
// SYN-ACK timer (3 s, RFC 1122's older first timeout, as lwIP runs it)
// repeats the SYN-ACK. The explanation times the repeat and names the
// timer, instead of calling every repeat a lost ACK of the same kind.
func TestRepeatedSynAckTimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := tcppeer.New()
		peer.SYNACKTimeout = 3 * time.Second
		peer.Drop = []int{2} // our ACK of the SYN-ACK
		m := capture.NewMatcher()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, peer) }()
		defer func() { cancel(); <-done }()
		rec := &sessEvents{}
		isn := sessISN
		cfg := sessConfig()
		cfg.ISN = &isn
		s := probe.NewSession(cfg, probe.SessionEnv{
			Env: probe.Env{Sender: peer, Matcher: m, Sink: rec, Now: time.Now, Rand: func() uint32 { return 0x1234 }},
		})
		err := s.Open(ctx)
		if err == nil {
			err = s.Hold(ctx, 5*time.Second) // nothing of ours would carry the ACK meanwhile
		}
		if err == nil {
			err = s.Close(ctx, probe.CloseFIN)
		}
		if err != nil {
			s.Abort(err)
		}
		s.End()
		var repeats []string
		synAcks := 0
		for _, x := range rec.steps() {
			if x.Direction == "received" && x.Flags == "S." {
				if synAcks++; synAcks > 1 {
					repeats = append(repeats, strings.Join(x.Explain, " "))
				}
			}
		}
		if len(repeats) == 0 {
			t.Fatalf("no repeated SYN-ACK (err %v)", err)
		}
		if !strings.Contains(repeats[0], "3.000 s after the first") || !strings.Contains(repeats[0], "RFC 1122") {
			t.Errorf("the repeat is explained as %q; want its timing (3.000 s after the first) and the timer it shows", repeats[0])
		}
	})
}
