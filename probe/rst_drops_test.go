package probe

import (
	"strings"
	"testing"

	"tcpshake/craft"
	"tcpshake/event"
)

// TestJudgeDrops: a test segment the peer's kernel dropped before its TCP
// makes any verdict inconclusive, saying what silence alone had said; one
// its TCP discarded (or a request socket freed, NOT_SPECIFIED) keeps the
// verdict and is named as evidence; drops of other segments are listed
// only; no record changes nothing.
func TestJudgeDrops(t *testing.T) {
	rst := craft.Seq(1000)
	cases := []struct {
		name    string
		drops   []tapDrop
		verdict string
		why     string
	}{
		{"firewall", []tapDrop{{flags: "R", seq: 1000, reason: "NETFILTER_DROP"}}, Inconclusive, "never reached the peer's TCP"},
		{"tcp", []tapDrop{{flags: "R", seq: 1000, reason: "TCP_OLD_SEQUENCE"}}, Conforms, "discarded it on purpose, so the silence is the rule's"},
		{"request socket", []tapDrop{{flags: "R", seq: 1000, reason: "NOT_SPECIFIED"}}, Conforms, "discarded it on purpose"},
		{"another segment", []tapDrop{{flags: "R", seq: 999, reason: "NETFILTER_DROP"}}, Conforms, "silently dropped"},
		{"none", nil, Conforms, "silently dropped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tap := NewRSTTap(event.SinkFunc(func(event.Event) {}))
			r := &rstRun{cfg: RSTConfig{Tap: tap}, dropMark: tap.dropMark()}
			r.noteSent(Crafted{Flags: craft.RST, Seq: &rst})
			for _, d := range c.drops {
				tap.Emit(event.Step{Direction: "sent", Flags: d.flags, Seq: d.seq, Dropped: d.reason})
			}
			res := event.Scenario{Verdict: Conforms, Why: "silently dropped", Observed: "nothing"}
			r.judgeDrops(&res)
			if res.Verdict != c.verdict || !strings.Contains(res.Why, c.why) {
				t.Errorf("verdict %s, why %q; want %s and %q", res.Verdict, res.Why, c.verdict, c.why)
			}
			if len(res.Drops) != len(c.drops) {
				t.Errorf("drops %q, want %d", res.Drops, len(c.drops))
			}
		})
	}
}

// TestJudgeByDrop: ack-of-unsent-data on a port that does not echo is
// decided by the peer kernel's record of the test segment: discarded by its
// TCP with the ACK back conforms, without the ACK deviates (MUST); a drop
// before its TCP, or no record at all, leaves it inconclusive.
func TestJudgeByDrop(t *testing.T) {
	seq := craft.Seq(5000)
	cases := []struct {
		name    string
		acked   bool
		drops   []tapDrop
		verdict string
		why     string
	}{
		{"acked and discarded", true, []tapDrop{{flags: "P.", seq: 5000, reason: "TCP_ACK_UNSENT_DATA"}}, Conforms, "discarded the segment whole (TCP_ACK_UNSENT_DATA"},
		{"discarded silently", false, []tapDrop{{flags: "P.", seq: 5000, reason: "TCP_ACK_UNSENT_DATA"}}, Deviates, "no ACK came back"},
		{"firewall", true, []tapDrop{{flags: "P.", seq: 5000, reason: "NETFILTER_DROP"}}, Inconclusive, "never reached the peer's TCP"},
		{"another segment", true, []tapDrop{{flags: "P.", seq: 4999, reason: "TCP_ACK_UNSENT_DATA"}}, Inconclusive, "no record of dropping the segment"},
		{"no record", true, nil, Inconclusive, "no record of dropping the segment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tap := NewRSTTap(event.SinkFunc(func(event.Event) {}))
			r := &rstRun{cfg: RSTConfig{Tap: tap, Drops: true}, dropMark: tap.dropMark(),
				byDrop: &dropCheck{flags: craft.PSH | craft.ACK, seq: seq, acked: c.acked}}
			for _, d := range c.drops {
				tap.Emit(event.Step{Direction: "sent", Flags: d.flags, Seq: d.seq, Dropped: d.reason})
			}
			res := event.Scenario{Verdict: Inconclusive, Why: "waiting for the peer kernel's record of the segment"}
			r.judgeDrops(&res)
			if res.Verdict != c.verdict || !strings.Contains(res.Why, c.why) {
				t.Errorf("verdict %s, why %q; want %s and %q", res.Verdict, res.Why, c.verdict, c.why)
			}
		})
	}
}
