package observe_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"tcpshake/probe/observe"
	"tcpshake/probe/tcpstate"
)

// fakeSocket is a socket whose state the test sets; it counts reads.
type fakeSocket struct {
	state atomic.Int32
	reads atomic.Int64
}

func (f *fakeSocket) read() observe.Reading {
	f.reads.Add(1)
	return observe.Reading{At: time.Now(), Exists: true, State: tcpstate.State(f.state.Load())}
}

func TestWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s fakeSocket
		s.state.Store(int32(tcpstate.Established))
		w := observe.NewWatch(s.read, observe.DefaultWatchTiming())
		synctest.Wait()
		r := <-w.C()
		if r.State != tcpstate.Established {
			t.Fatalf("first reading %v, want ESTABLISHED at once", r)
		}
		// Idle: a reading every 25 ms, each sent (the heartbeat is 10 ms).
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n := s.reads.Load(); n < 4 || n > 6 {
			t.Errorf("%d reads in 100 ms idle, want about 5", n)
		}
		for len(w.C()) > 0 {
			<-w.C()
		}
		time.Sleep(time.Millisecond) // the last reading is not too recent for a kick
		synctest.Wait()
		// A kick reads at once and sends it although nothing changed.
		before := s.reads.Load()
		w.Kick()
		synctest.Wait()
		if s.reads.Load() != before+1 || len(w.C()) != 1 {
			t.Errorf("after a kick: %d reads, %d sent; want 1 read, 1 sent at once", s.reads.Load()-before, len(w.C()))
		}
		<-w.C()
		// Then fast: every 250 µs for 30 ms; unchanged readings only as heartbeats.
		s.state.Store(int32(tcpstate.CloseWait))
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if r := <-w.C(); r.State != tcpstate.CloseWait {
			t.Errorf("change not sent: %v", r)
		}
		time.Sleep(29 * time.Millisecond)
		synctest.Wait()
		if n := s.reads.Load() - before; n < 100 || n > 130 {
			t.Errorf("%d reads in the 30 ms after a kick, want about 120", n)
		}
		if n := len(w.C()); n < 2 || n > 4 {
			t.Errorf("%d readings sent in 29 ms without a change, want the heartbeats (about 3)", n)
		}
		w.Close()
		for range w.C() {
		}
		w.Close() // idempotent
		w.Kick()  // harmless after Close
	})
}

func TestWatchDropsOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s fakeSocket
		timing := observe.DefaultWatchTiming()
		timing.Buffer = 4
		w := observe.NewWatch(s.read, timing)
		for i := range 20 {
			s.state.Store(int32(i % 2))
			time.Sleep(30 * time.Millisecond)
			synctest.Wait()
		}
		if st := w.Stats(); st.Dropped == 0 || st.Sent != st.Polls {
			t.Errorf("stats %+v: want drops, and every change sent", st)
		}
		w.Close()
		var got []observe.Reading
		for r := range w.C() {
			got = append(got, r)
		}
		if len(got) != 4 || got[3].At.Before(got[0].At) {
			t.Errorf("kept %d readings, want the 4 newest", len(got))
		}
	})
}
