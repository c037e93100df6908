package observe_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"tcpshake/event"
	"tcpshake/probe/observe"
)

// recording is a real handshake in the lab: the steps (times from the -w
// capture's kernel timestamps) and the server kernel's readings.
type recording struct {
	Note  string
	Steps []struct {
		N                int
		TNs              int64 `json:"t_ns"`
		Direction, Flags string
		Seq, Ack         uint32
		Local, Remote    string
	}
	Readings []struct {
		AtNs    int64 `json:"at_ns"`
		Linux   uint8
		Exists  bool
		Request bool
	}
}

// replay feeds a recording to a merger in fake time, each step emitted 50 µs
// after its segment crossed (a session's delay), and returns what came out.
func replay(t *testing.T, file string) []event.Step {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rec recording
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	var out []event.Step
	synctest.Test(t, func(t *testing.T) {
		base := rec.Steps[0].TNs - int64(5*time.Millisecond)
		start := time.Now()
		at := func(ns int64) time.Time { return start.Add(time.Duration(ns - base)) }
		type ev struct {
			at   time.Time
			step int
			r    int
		}
		var evs []ev
		for i, s := range rec.Steps {
			evs = append(evs, ev{at(s.TNs).Add(50 * time.Microsecond), i, -1})
		}
		for i, r := range rec.Readings {
			evs = append(evs, ev{at(r.AtNs), -1, i})
		}
		slices.SortStableFunc(evs, func(a, b ev) int { return a.at.Compare(b.at) })
		fw, sink := newFake(), &recorder{}
		m := observe.NewMerger(sink, fw, start)
		for _, e := range evs {
			if d := time.Until(e.at); d > 0 {
				time.Sleep(d)
			}
			if e.step >= 0 {
				s := rec.Steps[e.step]
				m.Emit(event.Step{N: s.N, TimeMs: float64(s.TNs-base) / 1e6, Direction: s.Direction, Flags: s.Flags,
					Seq: s.Seq, Ack: s.Ack, Local: s.Local, Remote: s.Remote})
			} else {
				r := rec.Readings[e.r]
				rd := observe.FromLinux(r.Linux, e.at)
				if !r.Exists {
					rd = observe.Reading{At: e.at}
				}
				rd.Request = r.Request
				fw.c <- rd
			}
			synctest.Wait()
		}
		time.Sleep(100 * time.Millisecond)
		m.Close()
		out = sink.steps()
	})
	return out
}

func TestReplayLabSynCookies(t *testing.T) {
	sts := replay(t, "testdata/lab_syncookies2.json")
	for _, st := range sts {
		t.Logf("%d %s [%s] inferred %s kernel %s: %s %q", st.N, st.Direction, st.Flags, st.Remote, st.Observed, st.Agreement, st.Explain)
		x := strings.Join(st.Explain, " ")
		if strings.Contains(x, "lost") && !strings.Contains(x, "nothing was lost") {
			t.Errorf("step %d calls the cookie handshake a loss: %q", st.N, x)
		}
	}
	if sts[0].Agreement != event.Cookie || sts[1].Agreement != event.Cookie {
		t.Errorf("SYN %s, SYN-ACK %s; want both cookie", sts[0].Agreement, sts[1].Agreement)
	}
	if x := strings.Join(sts[2].Explain, " "); !strings.Contains(x, "built the connection from this ACK") {
		t.Errorf("final ACK explains %q", x)
	}
}

func TestReplayLabRequestSocket(t *testing.T) {
	sts := replay(t, "testdata/lab_syncookies1.json")
	for _, st := range sts {
		t.Logf("%d %s [%s] inferred %s kernel %s: %s %q", st.N, st.Direction, st.Flags, st.Remote, st.Observed, st.Agreement, st.Explain)
		if st.Agreement == event.Cookie || st.Agreement == event.Differs {
			t.Errorf("step %d: %s", st.N, st.Agreement)
		}
	}
	if sts[0].Agreement != event.Agrees || sts[0].Observed != "SYN-RECEIVED" {
		t.Errorf("SYN: %s %s, want the request socket, agreeing", sts[0].Observed, sts[0].Agreement)
	}
}

// TestReplayLabSynCookiesUnread: the kernel was not read between our SYN and
// our final ACK (the watcher was late), so nothing is claimed about them.
func TestReplayLabSynCookiesUnread(t *testing.T) {
	sts := replay(t, "testdata/lab_syncookies2_unread.json")
	for _, st := range sts[:2] {
		if st.Agreement != event.Unknown {
			t.Errorf("step %d: %s %q, want unknown", st.N, st.Agreement, st.Explain)
		}
	}
}
