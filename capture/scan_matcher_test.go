package capture_test

import (
	"testing"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
)

// TestSeveralProbesOneKey: probes of successive rounds to one port (the
// same 4-tuple, different ISNs) wait together; each answer and each ICMP
// error goes to the probe it names, and a same-seq probe is refused.
func TestSeveralProbesOneKey(t *testing.T) {
	m := capture.NewMatcher()
	c1, c2 := make(chan capture.Reply, 1), make(chan capture.Reply, 1)
	s1 := craft.Segment{Src: us, Dst: peer, Seq: 1000, Flags: craft.SYN}
	s2 := craft.Segment{Src: us, Dst: peer, Seq: 5000, Flags: craft.SYN}
	p1, err := m.Expect(s1, c1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := m.Expect(s2, c2)
	if err != nil {
		t.Fatalf("a second probe with another seq: %v", err)
	}
	if _, err := m.Expect(s1, make(chan capture.Reply, 1)); err == nil {
		t.Error("a probe with the same seq was accepted")
	}
	at := time.Unix(1, 0)
	// The second round's answer first, then an ICMP error quoting the first.
	rst := craft.Segment{Src: peer, Dst: us, Ack: 5001, Flags: craft.RST | craft.ACK}
	m.Dispatch(&capture.Frame{Data: marshal(t, rst), Time: at})
	m.Dispatch(&capture.Frame{Data: icmpQuoting(t, marshal(t, s1)), Time: at})
	select {
	case r := <-c2:
		if r.Probe != p2 || r.Packet.Kind != craft.KindTCP {
			t.Errorf("probe 2 got %+v", r)
		}
	default:
		t.Error("probe 2 got no answer")
	}
	select {
	case r := <-c1:
		if r.Probe != p1 || r.Packet.Kind != craft.KindICMP {
			t.Errorf("probe 1 got %+v", r)
		}
	default:
		t.Error("probe 1 got no ICMP error")
	}
	// Both are answered and gone: a third answer is nobody's.
	m.Dispatch(&capture.Frame{Data: marshal(t, rst), Time: at})
	if len(c2) != 0 || len(m.Ignored()) != 0 {
		t.Errorf("an answer after both were decided: queued %d, ignored %v", len(c2), m.Ignored())
	}
	m.Forget(p1)
	m.Forget(p2)
}
