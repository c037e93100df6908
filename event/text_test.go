package event

import (
	"bytes"
	"strings"
	"testing"
)

// TestScenarioFits: an rst scenario's block and the final table fit the
// width, every word whole; without a width each field stays one line.
func TestScenarioFits(t *testing.T) {
	sc := Scenario{
		Name: "challenge-ack-burst", Title: "many in-window RSTs: challenge ACKs are rate-limited",
		RFC: "RFC 5961 §5", Strength: "SHOULD",
		Rule:     "An implementation SHOULD include an ACK throttling mechanism to be conservative",
		Sent:     "25 RSTs inside the window but not at RCV.NXT, 1 ms apart, each one of them a candidate for a challenge ACK",
		Expected: "a challenge ACK for some and not all: RFC 5961 §5 limits them (Linux: tcp_challenge_ack_limit per second)",
		Observed: "3 challenge ACKs for 25 in-window RSTs; the connection stays ESTABLISHED on the peer's kernel",
		Verdict:  "permitted", Why: "the RFC lets a stack choose its limit; this one answered 3 of 25 within a second",
		RemoteBefore: "ESTABLISHED", RemoteAfter: "ESTABLISHED", ObservedBefore: "ESTABLISHED", ObservedAfter: "ESTABLISHED",
		Figures: map[string]float64{"challenge_acks": 3, "rsts": 25},
	}
	sum := Summary{Command: "rst", Outcome: "1 of 1 scenarios permitted", Scenarios: []Scenario{sc}}
	for _, width := range []int{80, 100} {
		var b bytes.Buffer
		txt := &Text{W: &b, Width: width, Color: true}
		txt.Emit(sc)
		txt.Emit(sum)
		out := ansi.ReplaceAllString(b.String(), "")
		checkFits(t, out, width)
		have := map[string]bool{}
		for _, w := range strings.Fields(out) {
			have[strings.Trim(w, "“”")] = true
		}
		for _, x := range []string{sc.Rule, sc.Sent, sc.Why} {
			for _, w := range strings.Fields(x) {
				if !have[w] {
					t.Errorf("%d columns: the word %q is not whole", width, w)
				}
			}
		}
		if !strings.Contains(b.String(), cSent+"permitted"+cReset+" — the RFC") {
			t.Errorf("%d columns: the verdict is not painted:\n%q", width, b.String())
		}
	}
	var b bytes.Buffer
	(&Text{W: &b, Width: -1}).Emit(sc)
	if !strings.Contains(b.String(), "\n  sent:      "+sc.Sent+"\n") {
		t.Errorf("without a width the sent line is not whole:\n%s", b.String())
	}
}
