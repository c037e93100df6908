package probe

import (
	"context"
	"fmt"
	"strings"

	"tcpshake/craft"
	"tcpshake/event"
)

// The scenarios of segments that find no connection: a closed port and a
// listener (RFC 9293 §3.10.7.1 and §3.10.7.2).

func closedPort(ctx context.Context, r *rstRun) event.Scenario {
	port := r.s.cfg.Remote.Port()
	field := craft.Seq(r.s.env.Rand() | 1) // non-zero, and never our ISN + 1 by construction below
	if field == r.s.ISS().Add(1) {
		field++
	}
	var res event.Scenario
	r.before(ctx, &res)
	a := r.closedSYN(ctx, field)
	r.after(ctx, &res)
	b := r.closedACK(ctx, port)
	res.Sent = fmt.Sprintf("two segments to closed port %d, each on its own 4-tuple: %s; %s", port, a.Sent, b.Sent)
	res.Expected, res.Observed = a.Expected+"; "+b.Expected, a.Observed+"; "+b.Observed
	res.Checks = []event.ScenarioCheck{a, b}
	ru := ruleClosedNoACK()
	res.RFC, res.Rule, res.Strength, res.StrengthNote = ru.rfc, ru.words, ru.strength, ru.note
	w := worst(a, b)
	var whys []string
	for i, c := range res.Checks {
		whys = append(whys, fmt.Sprintf("%s: %s — %s", []string{"SYN without ACK", "ACK"}[i], verdictText(c.Verdict, c.Level), c.Why))
	}
	res.Verdict, res.Level, res.Why = w.Verdict, w.Level, strings.Join(whys, "; ")
	return res
}

// worst is the check whose verdict weighs most: a broken MUST, a broken
// SHOULD, an undecided check, a permitted variant, then conformance.
func worst(cs ...event.ScenarioCheck) event.ScenarioCheck {
	rank := func(c event.ScenarioCheck) int {
		switch {
		case c.Verdict == Deviates && c.Level == "MUST":
			return 5
		case c.Verdict == Deviates:
			return 4
		case c.Verdict == Inconclusive:
			return 3
		case c.Verdict == Permitted:
			return 2
		}
		return 1
	}
	w := cs[0]
	for _, c := range cs[1:] {
		if rank(c) > rank(w) {
			w = c
		}
	}
	return w
}

func verdictText(v, level string) string {
	if v == Deviates && level != "" {
		return v + " (" + level + ")"
	}
	return v
}

func check(ru rule) event.ScenarioCheck {
	return event.ScenarioCheck{RFC: ru.rfc, Rule: ru.words, Strength: ru.strength, StrengthNote: ru.note}
}

// closedSYN sends a SYN whose ack field is non-zero but whose ACK bit is
// off: the RST must still take seq 0 and ack = SEG.SEQ + SEG.LEN, so a
// stack that copies the ack field into the RST's seq shows.
func (r *rstRun) closedSYN(ctx context.Context, field craft.Seq) event.ScenarioCheck {
	s := r.s
	c := check(ruleClosedNoACK())
	want := s.ISS().Add(1)
	c.Sent = fmt.Sprintf("SYN seq %d (our ISN) with ack field %d and no ACK bit", uint32(s.ISS()), uint32(field))
	c.Expected = fmt.Sprintf("RST,ACK seq 0 ack %d = ISN + 1 (the ack field ignored)", uint32(want))
	mark := r.cfg.Tap.mark()
	if _, err := s.Craft(ctx, Crafted{Flags: craft.SYN, Ack: &field}); err != nil {
		return checkVerdict(c, Inconclusive, "", err.Error())
	}
	got := r.collect(ctx, 1)
	c.Observed = describeSegs(got)
	sg := first(got)
	switch {
	case sg == nil:
		if ic := r.cfg.Tap.icmpSince(mark); len(ic) > 0 {
			c.Observed = strings.Join(ic, "; ")
			return checkVerdict(c, Inconclusive, "", c.Observed+" came back instead of a TCP answer: something on the way rejected the SYN, so the peer's TCP was not heard")
		}
		return r.silentCheck(checkVerdict(c, Inconclusive, "", "nothing came back within the wait: the port may be filtered"), craft.SYN, s.ISS())
	case sg.Flags.Has(craft.SYN):
		return checkVerdict(c, Inconclusive, "", "the port answered SYN-ACK: it is open; give --closed-port a closed one")
	case !sg.Flags.Has(craft.RST):
		return checkVerdict(c, Deviates, "MUST", fmt.Sprintf("the answer %s is not a RST", sg.Flags.Tcpdump()))
	case sg.Seq == field && field != 0:
		return checkVerdict(c, Deviates, "MUST", fmt.Sprintf("the RST's seq %d is our SYN's ack field although its ACK bit was off: the rule for the ACK bit on was applied, the RST's seq must be 0", uint32(sg.Seq)))
	case sg.Seq != 0:
		return checkVerdict(c, Deviates, "MUST", fmt.Sprintf("the RST's seq is %d, not 0", uint32(sg.Seq)))
	case !sg.Flags.Has(craft.ACK):
		return checkVerdict(c, Deviates, "MUST", "the RST has no ACK bit: a SYN-SENT endpoint drops a RST that does not acknowledge its SYN (RFC 9293 §3.10.7.3), so this one resets nothing")
	case sg.Ack != want:
		return checkVerdict(c, Deviates, "MUST", fmt.Sprintf("the RST's ack is %d, not SEG.SEQ + SEG.LEN = %d", uint32(sg.Ack), uint32(want)))
	}
	return checkVerdict(c, Conforms, "", fmt.Sprintf("RST,ACK seq 0 ack %d: the reset names our SYN, and the ack field %d was not used", uint32(want), uint32(field)))
}

// closedACK sends a bare ACK on a 4-tuple of its own: the RST must take its
// seq from the ACK's ack field.
func (r *rstRun) closedACK(ctx context.Context, port uint16) event.ScenarioCheck {
	c := check(ruleClosedACK())
	s2, release, err := r.fresh(port)
	if err != nil {
		c.Sent, c.Expected = "ACK on a second 4-tuple", "RST seq = SEG.ACK"
		return checkVerdict(c, Inconclusive, "", err.Error())
	}
	defer release()
	seq, ack := s2.ISS(), craft.Seq(r.s.env.Rand())
	c.Sent = fmt.Sprintf("ACK seq %d ack %d (both made up)", uint32(seq), uint32(ack))
	c.Expected = fmt.Sprintf("RST seq %d = our ack, no ACK bit: <SEQ=SEG.ACK><CTL=RST>", uint32(ack))
	mark := r.cfg.Tap.mark()
	if _, err := s2.Craft(ctx, Crafted{Flags: craft.ACK, Seq: &seq, Ack: &ack}); err != nil {
		return checkVerdict(c, Inconclusive, "", err.Error())
	}
	got, _ := s2.Collect(ctx, r.cfg.Wait, 1)
	c.Observed = describeSegs(got)
	icmp := r.cfg.Tap.icmpSince(mark)
	c = judgeAckReset(c, first(got), ack, icmp, "MUST")
	if first(got) == nil && len(icmp) == 0 {
		c = r.silentCheck(c, craft.ACK, seq)
	}
	return c
}

// judgeAckReset judges the answer to an ACK for no connection, which must
// be <SEQ=SEG.ACK><CTL=RST> (level: the rule's strength).
func judgeAckReset(c event.ScenarioCheck, sg *craft.Segment, ack craft.Seq, icmp []string, level string) event.ScenarioCheck {
	switch {
	case sg == nil && len(icmp) > 0:
		c.Observed = strings.Join(icmp, "; ")
		return checkVerdict(c, Inconclusive, "", c.Observed+" came back instead of a TCP answer: something on the way rejected the segment, so the peer's TCP was not heard")
	case sg == nil:
		return checkVerdict(c, Inconclusive, "", "nothing came back within the wait: the port may be filtered")
	case !sg.Flags.Has(craft.RST):
		return checkVerdict(c, Deviates, level, fmt.Sprintf("the answer %s is not a RST", sg.Flags.Tcpdump()))
	case sg.Seq != ack:
		return checkVerdict(c, Deviates, level, fmt.Sprintf("the RST's seq is %d, not our ack %d (SEG.ACK)", uint32(sg.Seq), uint32(ack)))
	case sg.Flags.Has(craft.ACK):
		return checkVerdict(c, Permitted, "", fmt.Sprintf("[R.]: the RST's seq %d is our ack as the rule says, and it carries the ACK bit as well (ack %d), which <SEQ=SEG.ACK><CTL=RST> does not have; a synchronized receiver validates a RST by its seq alone (RFC 9293 §3.10.7.4, first check; RFC 5961 §3.2) and ignores the ACK field of a RST, so the extra bit changes nothing", uint32(sg.Seq), uint32(sg.Ack)))
	}
	return checkVerdict(c, Conforms, "", fmt.Sprintf("RST seq %d = our ack, no ACK bit", uint32(ack)))
}

func checkVerdict(c event.ScenarioCheck, v, level, why string) event.ScenarioCheck {
	c.Verdict, c.Level, c.Why = v, level, why
	if v != Deviates {
		c.Level = ""
	}
	return c
}

// fromCheck copies a check's verdict into the scenario.
func fromCheck(res event.Scenario, c event.ScenarioCheck) event.Scenario {
	if strings.HasPrefix(c.Observed, "ICMP ") && strings.HasPrefix(res.Observed, "nothing") {
		res.Observed = c.Observed + strings.TrimPrefix(res.Observed, "nothing")
	}
	res.Verdict, res.Level, res.Why = c.Verdict, c.Level, c.Why
	return res
}

// knownListener finds out whether a listener owns the port: the peer's
// kernel says so, or a SYN on a fresh 4-tuple draws a SYN-ACK (which is then
// reset, so nothing is left).
func (r *rstRun) knownListener(ctx context.Context, port uint16) (known bool, how string) {
	if r.s.Observing() {
		if r.listening() {
			return true, fmt.Sprintf("the peer's kernel shows a listener on port %d", port)
		}
		return false, fmt.Sprintf("the peer's kernel shows no listener on port %d", port)
	}
	s2, release, err := r.fresh(port)
	if err != nil {
		return false, err.Error()
	}
	defer release()
	if err := s2.SYN(ctx); err != nil {
		return false, err.Error()
	}
	got, _ := s2.Collect(ctx, r.cfg.Wait, 1)
	sg := first(got)
	switch {
	case sg != nil && sg.Flags.Has(craft.SYN|craft.ACK):
		return true, fmt.Sprintf("a SYN on a fresh 4-tuple just before drew SYN-ACK (reset again): port %d listens", port)
	case sg != nil && sg.Flags.Has(craft.RST):
		return false, fmt.Sprintf("a SYN on a fresh 4-tuple just before drew RST: nothing listens on port %d", port)
	}
	return false, fmt.Sprintf("a SYN on a fresh 4-tuple just before drew no SYN-ACK: no listener is known on port %d", port)
}

func ackToListener(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	port := s.cfg.Remote.Port()
	known, how := r.knownListener(ctx, port)
	seq, ack := s.ISS(), craft.Seq(s.env.Rand())
	res := event.Scenario{
		Sent:     fmt.Sprintf("ACK seq %d ack %d (both made up) to port %d, with no connection behind it", uint32(seq), uint32(ack), port),
		Expected: fmt.Sprintf("RST seq %d = our ack, no ACK bit: <SEQ=SEG.ACK><CTL=RST>; no connection is created", uint32(ack)),
	}
	mark := r.cfg.Tap.mark()
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.ACK, Seq: &seq, Ack: &ack}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	res.Observed += "; " + how
	c := judgeAckReset(check(ruleListenACK()), first(got), ack, r.cfg.Tap.icmpSince(mark), "SHOULD")
	switch {
	case !known:
		return inconclusive(res, fmt.Sprintf("not judged: %s, so the LISTEN rule cannot be what answered (what came back: %s)", how, describeOrICMP(got, r.cfg.Tap.icmpSince(mark))))
	case first(got) == nil && c.Verdict == Inconclusive && len(r.cfg.Tap.icmpSince(mark)) == 0:
		return deviates(res, "SHOULD", "nothing came back although a listener owns the port: it must answer an ACK with RST")
	}
	return fromCheck(res, c)
}

func describeOrICMP(got []craft.Segment, icmp []string) string {
	if len(got) == 0 && len(icmp) > 0 {
		return strings.Join(icmp, "; ")
	}
	return describeSegs(got)
}
