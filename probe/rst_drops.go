package probe

import (
	"fmt"
	"strings"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/observe"
)

// The peer kernel's drops as a scenario's evidence (--drops, a Linux peer
// observed through eBPF): a test segment met with silence was either judged
// by the peer's TCP and discarded on purpose (a TCP drop reason), or never
// reached its TCP (a firewall, NETFILTER_DROP), or left no record.

// tapDrop is a segment of ours the peer's kernel dropped, as the tap saw
// its step.
type tapDrop struct {
	flags    string
	seq, ack uint32
	reason   string
}

func (d tapDrop) String() string {
	return fmt.Sprintf("[%s] seq %d: %s", d.flags, d.seq, d.reason)
}

// testSeg is a test segment a scenario sent, by its flags and seq.
type testSeg struct {
	flags craft.Flags
	seq   craft.Seq
}

// noteSent remembers a test segment whose seq the scenario chose.
func (r *rstRun) noteSent(c Crafted) {
	if c.Seq != nil {
		r.tests = append(r.tests, testSeg{c.Flags, *c.Seq})
	}
}

// testDrops are the drops of the scenario's test segments.
func (r *rstRun) testDrops() []tapDrop {
	var out []tapDrop
	for _, d := range r.cfg.Tap.dropsSince(r.dropMark) {
		for _, t := range r.tests {
			if d.flags == t.flags.String() && d.seq == uint32(t.seq) {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// judgeDrops adds the drops to the scenario and lets them decide what
// silence could not: a verdict resting on a test segment that never reached
// the peer's TCP is inconclusive, and one that the peer's TCP discarded on
// purpose says so as evidence.
func (r *rstRun) judgeDrops(res *event.Scenario) {
	all := r.cfg.Tap.dropsSince(r.dropMark)
	for _, d := range all {
		res.Drops = append(res.Drops, d.String())
	}
	if len(all) > 0 {
		res.Observed += "; the peer's kernel dropped " + strings.Join(res.Drops, ", ")
	}
	if r.byDrop != nil {
		r.judgeByDrop(res, r.byDrop)
		return
	}
	tests := r.testDrops()
	if len(tests) == 0 || res.Verdict == Inconclusive {
		return
	}
	for _, d := range tests {
		if observe.BeforeTCP(d.reason) {
			res.Verdict, res.Level = Inconclusive, ""
			res.Why = fmt.Sprintf("our test segment %s never reached the peer's TCP: its kernel dropped it before (%s: %s), so what followed says nothing about the rule (was: %s)",
				d, d.reason, observe.DropMeaning(d.reason), res.Why)
			return
		}
	}
	d := tests[0]
	res.Why += fmt.Sprintf("; the peer's kernel dropped our %s (%s): its TCP judged the segment and discarded it on purpose", d, observe.DropMeaning(d.reason))
	if strings.HasPrefix(res.Observed, "nothing") {
		res.Why += ", so the silence is the rule's, not a loss"
	}
}

// silentCheck decides a check whose segment drew nothing, which alone is
// inconclusive (filtered on the way?), from the peer kernel's record of it:
// its firewall dropped it (still untested, but not on the way), or its TCP
// freed it after answering (Linux answers NO_SOCKET and a listener's ACK,
// TCP_FLAGS, with RST first: that answer was lost on the way back).
func (r *rstRun) silentCheck(c event.ScenarioCheck, flags craft.Flags, seq craft.Seq) event.ScenarioCheck {
	for _, d := range r.cfg.Tap.dropsSince(r.dropMark) {
		if d.flags != flags.String() || d.seq != uint32(seq) {
			continue
		}
		switch {
		case observe.BeforeTCP(d.reason):
			return checkVerdict(c, Inconclusive, "", fmt.Sprintf("not filtered on the way: the peer's own kernel dropped it before its TCP (%s: %s), so the rule was not tested", d.reason, observe.DropMeaning(d.reason)))
		case d.reason == "NO_SOCKET" || d.reason == "TCP_FLAGS":
			return checkVerdict(c, Inconclusive, "", fmt.Sprintf("the peer's TCP got it and freed it as %s (%s): on Linux after sending its RST, which did not reach us", d.reason, observe.DropMeaning(d.reason)))
		case !strings.HasPrefix(d.reason, "TCP_"):
			return checkVerdict(c, Inconclusive, "", fmt.Sprintf("the peer's kernel freed it as %s (%s), which does not say whether its TCP answered", d.reason, observe.DropMeaning(d.reason)))
		}
		return checkVerdict(c, Deviates, c.Strength, fmt.Sprintf("the peer's TCP got it and discarded it without an answer (%s: %s)", d.reason, observe.DropMeaning(d.reason)))
	}
	return c
}

// dropCheck is a test segment whose verdict rests on the peer kernel's drop
// record of it, and whether the ACK the rule asks for came back.
type dropCheck struct {
	flags craft.Flags
	seq   craft.Seq
	acked bool
}

// judgeByDrop decides ack-of-unsent-data without an echo: discarded by the
// peer's TCP (a drop record) with the ACK back conforms, without it
// deviates; no record, or one from before its TCP, leaves it undecided.
func (r *rstRun) judgeByDrop(res *event.Scenario, c *dropCheck) {
	for _, d := range r.cfg.Tap.dropsSince(r.dropMark) {
		if d.flags != c.flags.String() || d.seq != uint32(c.seq) {
			continue
		}
		switch {
		case observe.BeforeTCP(d.reason):
			*res = inconclusive(*res, fmt.Sprintf("our test segment %s never reached the peer's TCP: its kernel dropped it before (%s: %s)", d, d.reason, observe.DropMeaning(d.reason)))
		case c.acked:
			*res = conforms(*res, fmt.Sprintf("an ACK came back (ack %d = our SND.NXT, not past \"X\") and the peer's TCP discarded the segment whole (%s: %s): data and window dropped, as the rule asks", uint32(c.seq), d.reason, observe.DropMeaning(d.reason)))
		default:
			*res = deviates(*res, "MUST", fmt.Sprintf("the peer's TCP discarded the segment (%s: %s) but no ACK came back: dropped silently, without the ACK the rule asks for", d.reason, observe.DropMeaning(d.reason)))
		}
		return
	}
	*res = inconclusive(*res, "the peer's kernel has no record of dropping the segment, so it may have taken its window (nothing was acknowledged past it); an echo service (--echo-port) would show it")
}
