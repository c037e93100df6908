package observe_test

import (
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/observe"
	"tcpshake/probe/tcpstate"
)

// fakeKernel is a fakeWatcher fed by the kernel's records too: readings
// with Kernel set, and drops.
type fakeKernel struct {
	*fakeWatcher
	drops chan observe.Drop
	since time.Time // FeedSince
}

func (f *fakeKernel) Drops() <-chan observe.Drop { return f.drops }
func (f *fakeKernel) FeedSince() time.Time       { return f.since }

// newFeedWorld is newWorld over a kernel-fed watcher, its records flowing
// from before the start.
func newFeedWorld(t *testing.T) (*world, *fakeKernel) {
	return newFeedWorldSince(t, time.Second)
}

// newFeedWorldSince is newFeedWorld with the records flowing from before
// the start by ago (negative: from after it; zero: never).
func newFeedWorldSince(t *testing.T, ago time.Duration) (*world, *fakeKernel) {
	k := &fakeKernel{fakeWatcher: newFake(), drops: make(chan observe.Drop, 64)}
	w := &world{t: t, start: time.Now(), w: k.fakeWatcher, rec: &recorder{}}
	if ago != 0 {
		k.since = w.start.Add(-ago)
	}
	w.m = observe.NewMerger(w.rec, k, w.start)
	t.Cleanup(func() { w.m.Close() })
	return w, k
}

// kernel delivers, at v ms, the kernel's record of a change it made at at ms.
func (w *world) kernel(v, at float64, r observe.Reading) {
	w.until(v)
	r.At, r.Kernel = w.start.Add(ms(at)), true
	w.w.c <- r
	synctest.Wait()
}

// TestMergerFeedNotYet: a step is held for the kernel's records about it
// only if they flowed at its time. While the programs are still loading
// (no feed yet), or for a step before they were attached, it goes out as
// soon as a look decides it; with the feed running it waits ChangeWait.
func TestMergerFeedNotYet(t *testing.T) {
	for _, tc := range []struct {
		name string
		ago  time.Duration
		held bool
	}{
		{"loading", 0, false},
		{"attached after the step", -5 * time.Millisecond, false},
		{"running", time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w, _ := newFeedWorldSince(t, tc.ago)
				w.read(0.1, noSocket)
				w.step(1, ack(1))
				w.read(1.1, estab)
				w.until(2.5)
				if n := len(w.rec.steps()); (n == 0) != tc.held {
					t.Errorf("%d steps out 1.5 ms after the step; held for the kernel's record: want %v", n, tc.held)
				}
				w.until(100)
				if n := len(w.rec.steps()); n != 1 {
					t.Errorf("%d steps in the end, want 1", n)
				}
			})
		})
	}
}

// TestMergerFeedKeepsCookies: with a kernel-fed watcher the cookie
// judgement is the one TestMergerCookieChildAfterAck holds (the tracepoint
// reports no request socket, and its late records of the child do not
// change it), and the final ACK's ESTABLISHED takes the kernel's time of the
// change, not the look's.
func TestMergerFeedKeepsCookies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _ := newFeedWorld(t)
		n := int64(5)
		if err := w.m.SetCookieCounter(func() (int64, error) { return n, nil }); err != nil {
			t.Fatal(err)
		}
		w.read(0.1, noSocket)
		w.step(1, syn(1))
		n++
		w.step(1.02, synAck(2))
		w.step(1.26, ack(3))
		w.read(1.30, child)
		w.read(1.35, estab)
		w.kernel(3.5, 1.262, child)
		w.kernel(3.6, 1.265, estab)
		w.until(200)
		sts := w.rec.steps()
		want := []got{
			{1, "sent", "CLOSED", event.Cookie},
			{2, "received", "CLOSED", event.Cookie},
			{3, "sent", "ESTABLISHED", event.Agrees},
		}
		if diff := cmp.Diff(want, summary(sts)); diff != "" {
			t.Fatalf("steps (-want +got):\n%s", diff)
		}
		if at := sts[2].ObservedMs; at == nil || *at != 1.265 {
			t.Errorf("the ACK's observed time %v, want the kernel's 1.265 ms", msOf(at))
		}
	})
}

// TestMergerFeedRetimesObserved: a step a look agreed with at once takes the
// kernel's time of the change when its record comes (within FeedWait), and
// a change no step shows becomes an observed step at the kernel's time of
// it, though a look found it first.
func TestMergerFeedRetimesObserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _ := newFeedWorld(t)
		w.step(1, ack(1))
		w.read(1.1, estab)
		w.kernel(3, 1.02, estab)
		w.read(40, estab)
		w.read(50.5, fin1)
		w.kernel(52, 48.3, fin1)
		w.until(300)
		sts := w.rec.steps()
		if len(sts) != 2 || sts[1].Direction != event.DirectionObserved {
			t.Fatalf("steps %+v, want the ACK and an observed step", summary(sts))
		}
		if at := sts[0].ObservedMs; at == nil || *at != 1.02 {
			t.Errorf("the ACK's observed time %v, want the kernel's 1.02 ms", msOf(at))
		}
		if sts[1].TimeMs != 48.3 {
			t.Errorf("observed step at %v ms, want the kernel's 48.3", sts[1].TimeMs)
		}
	})
}

// TestMergerDrops: a drop record names the sent step with the same 4-tuple,
// flags, seq, ack and length, once (its retransmission, with the same
// numbers, has no record and gets none); a record of another seq names no
// step; without a record nothing is said.
func TestMergerDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, k := newFeedWorld(t)
		src, dst := netip.MustParseAddrPort("198.51.100.1:40000"), netip.MustParseAddrPort("198.51.100.2:7")
		data := func(n int, seq uint32) event.Step {
			return event.Step{N: n, Direction: "sent", Src: src.String(), Dst: dst.String(), Flags: "P.", Seq: seq, Ack: 555, Len: 1,
				Local: "ESTABLISHED", Remote: "ESTABLISHED"}
		}
		w.read(0.5, estab)
		w.step(1, data(1, 100000))
		w.until(1.2)
		k.drops <- observe.Drop{At: w.start.Add(ms(1.01)), Src: src, Dst: dst, Flags: craft.PSH | craft.ACK, Seq: 100000, Ack: 555, Len: 1, Reason: "TCP_INVALID_SEQUENCE"}
		k.drops <- observe.Drop{At: w.start.Add(ms(1.02)), Src: src, Dst: dst, Flags: craft.PSH | craft.ACK, Seq: 7, Ack: 555, Len: 1, Reason: "TCP_OLD_DATA"}
		w.step(5, data(2, 100000))
		w.read(5.5, estab)
		w.step(9, data(3, 200))
		w.read(9.5, estab)
		w.until(300)
		var got []string
		for _, st := range w.rec.steps() {
			got = append(got, st.Dropped)
			if st.Dropped != "" && !strings.Contains(strings.Join(st.Explain, "\n"), "the peer's kernel dropped it: "+st.Dropped) {
				t.Errorf("step %d: dropped %s, not explained: %q", st.N, st.Dropped, st.Explain)
			}
		}
		if diff := cmp.Diff([]string{"TCP_INVALID_SEQUENCE", "", ""}, got); diff != "" {
			t.Errorf("dropped (-want +got):\n%s", diff)
		}
	})
}

// msOf shows an optional time.
func msOf(p *float64) any {
	if p == nil {
		return "none"
	}
	return *p
}

// TestMergerBeforePeerSYN: a listen session's first note models the client
// CLOSED, but its kernel can be read only after its SYN told us of it: read
// in SYN-SENT (by a look after the SYN, or by the kernel's record from just
// before it) the note is ahead, said so, never "differs"; a reading in
// another state leaves the usual rules.
func TestMergerBeforePeerSYN(t *testing.T) {
	synSent := observe.Reading{Exists: true, State: tcpstate.SynSent, Linux: 2}
	note := event.Step{Direction: "note", Local: "LISTEN", Remote: "CLOSED"}
	peerSYN := event.Step{N: 1, Direction: "received", Flags: "S", Seq: 100, Local: "SYN-RECEIVED", Remote: "SYN-SENT"}
	for _, kernel := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			w, _ := newFeedWorld(t)
			w.step(1, note)
			w.step(1, peerSYN)
			if kernel {
				w.kernel(3, 0.96, synSent)
			} else {
				w.read(1.3, synSent)
			}
			w.until(200)
			sts := w.rec.steps()
			if len(sts) < 2 || sts[0].Agreement != event.Ahead || sts[0].Observed != "SYN-SENT" {
				t.Fatalf("kernel=%v: steps %+v, want the note ahead in SYN-SENT", kernel, summary(sts))
			}
			if ex := strings.Join(sts[0].Explain, "\n"); !strings.Contains(ex, "its application opened the connection") {
				t.Errorf("kernel=%v: the note says %q", kernel, ex)
			}
		})
	}
}
