package probe

import (
	"strings"
	"testing"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
)

type stepSink struct{ steps []event.Step }

func (k *stepSink) Emit(ev event.Event) {
	if st, ok := ev.(event.Step); ok {
		k.steps = append(k.steps, st)
	}
}

// TestEmitterCrossedInHost: our ACK of the peer's data is decided, then the
// peer's FIN is read, which reached our interface before the ACK's copy left.
// The wire's order is kept (FIN, then ACK), and the ACK shows the states after
// both, not the ones before the FIN (CI: "us TIME-WAIT · peer LAST-ACK", then
// "us FIN-WAIT-2 · peer CLOSE-WAIT": states running backwards).
func TestEmitterCrossedInHost(t *testing.T) {
	k := &stepSink{}
	start := time.Unix(1000, 0)
	s := &Session{start: start, sink: k}
	s.emit = emitter{s: s}
	e := &s.emit

	ack := craft.Segment{Seq: 5, Ack: 345, Flags: craft.ACK}
	e.sentStep(event.Step{Direction: "sent", Flags: ".", Ack: 345, Local: "FIN-WAIT-2", Remote: "CLOSE-WAIT"}, ack, start.Add(1690*time.Microsecond))
	fin := event.Step{Direction: "received", Flags: "F.", Local: "TIME-WAIT", Remote: "LAST-ACK"}
	e.now(&fin, start.Add(1686*time.Microsecond), nil)
	if len(k.steps) != 1 {
		t.Fatalf("the ACK went out before its copy was seen: %+v", k.steps)
	}
	e.copySeen(capturedCopy(ack, start.Add(1708*time.Microsecond)))
	if len(k.steps) != 2 {
		t.Fatalf("steps = %+v", k.steps)
	}
	got := k.steps[1]
	if got.Flags != "." || got.N != 2 {
		t.Fatalf("second step = %+v", got)
	}
	if got.Local != "TIME-WAIT" || got.Remote != "LAST-ACK" {
		t.Errorf("the ACK told after the FIN shows us %s · peer %s, want the states after both (TIME-WAIT, LAST-ACK)", got.Local, got.Remote)
	}
	if x := strings.Join(got.Explain, " "); !strings.Contains(x, "decided before step 1 was read") {
		t.Errorf("the ACK does not say it crossed step 1: %q", x)
	}

	// A sent step whose copy came before the next arrival keeps its own states.
	e.sentStep(event.Step{Direction: "sent", Flags: ".", Local: "TIME-WAIT", Remote: "CLOSED"}, craft.Segment{Seq: 5, Ack: 346, Flags: craft.ACK}, start.Add(1730*time.Microsecond))
	e.copySeen(capturedCopy(craft.Segment{Seq: 5, Ack: 346, Flags: craft.ACK}, start.Add(1737*time.Microsecond)))
	if last := k.steps[len(k.steps)-1]; last.Remote != "CLOSED" || len(last.Explain) != 0 {
		t.Errorf("an ACK not overtaken was changed: %+v", last)
	}
}

func capturedCopy(seg craft.Segment, at time.Time) capture.Reply {
	return capture.Reply{Packet: craft.Packet{Kind: craft.KindTCP, Seg: seg}, Time: at, Outgoing: true}
}
