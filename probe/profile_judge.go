package probe

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// The pure judges of the profile's measurements: each takes what was
// observed and returns the figures and the verdict, so that tests can give
// them any peer's numbers.

// Judgement is a measurement's verdict and what it rests on.
type Judgement struct {
	Verdict, Level, Why string
	Lines               []string
}

// ScheduleEnd says why the SYN-ACK schedule stopped being recorded.
type ScheduleEnd int

// Why the recording of SYN-ACKs stopped.
const (
	EndBound   ScheduleEnd = iota // the time bound passed
	EndCount                      // the asked number of retransmissions came
	EndReset                      // the peer sent RST: it gave up
	EndSilence                    // nothing for long after the last (it gave up silently)
)

// Schedule is the recorded SYN-ACK schedule: when each SYN-ACK arrived,
// counted from the first.
type Schedule struct {
	Arrivals []time.Duration // Arrivals[0] is 0: the first SYN-ACK
	Waited   time.Duration   // how long after the first we listened in all
	End      ScheduleEnd
	Guarded  bool // our kernel's RSTs were held back (without, it answers the SYN-ACK and the peer stops)
}

// Intervals are the times between successive SYN-ACKs: the peer's
// retransmission timeouts.
func (s Schedule) Intervals() []time.Duration {
	var out []time.Duration
	for i := 1; i < len(s.Arrivals); i++ {
		out = append(out, s.Arrivals[i]-s.Arrivals[i-1])
	}
	return out
}

// near: d is within 10% (and 50 ms) of want.
func near(d, want time.Duration) bool {
	tol := want/10 + 50*time.Millisecond
	return d >= want-tol && d <= want+tol
}

// JudgeSchedule holds the SYN-ACK retransmission schedule against RFC 6298:
// the first timeout SHOULD be 1 s (§2.1), and after each expiry the timer
// MUST back off, RTO = RTO · 2 (§5.5).
func JudgeSchedule(s Schedule) Judgement {
	iv := s.Intervals()
	var j Judgement
	switch {
	case !s.Guarded:
		j.Verdict, j.Why = "inconclusive", "not measured without the kernel-RST guard (--no-guard): our kernel would answer the SYN-ACK with RST and the peer would stop retransmitting"
		return j
	case len(s.Arrivals) == 0:
		j.Verdict, j.Why = "inconclusive", "no SYN-ACK came: the port must be listening"
		return j
	case len(iv) == 0:
		j.Verdict = "inconclusive"
		j.Why = fmt.Sprintf("no retransmitted SYN-ACK within %v: either the peer keeps no state for a half-open connection (SYN cookies, RFC 4987 §3.6) or its first timeout is longer than that (raise --profile-synack-wait)", s.Waited.Round(time.Millisecond))
		if s.End == EndReset {
			j.Why = "the peer sent RST instead of retransmitting its SYN-ACK"
		}
		return j
	}
	for i, d := range iv {
		line := fmt.Sprintf("retransmission %d after %s", i+1, secs(d))
		if i > 0 {
			line += fmt.Sprintf(" = %.2f × the one before", float64(d)/float64(iv[i-1]))
		}
		j.Lines = append(j.Lines, line)
	}
	first := iv[0]
	doubling, steady := true, true
	for i := 1; i < len(iv); i++ {
		if !near(iv[i], 2*iv[i-1]) {
			doubling = false
		}
		if !near(iv[i], iv[i-1]) {
			steady = false
		}
	}
	switch s.End {
	case EndReset:
		j.Lines = append(j.Lines, fmt.Sprintf("then the peer gave up with RST after %d retransmissions", len(iv)))
	case EndSilence:
		j.Lines = append(j.Lines, fmt.Sprintf("then nothing for %s: the peer gave up after %d retransmissions", secs(s.Waited-s.Arrivals[len(s.Arrivals)-1]), len(iv)))
	case EndBound:
		j.Lines = append(j.Lines, fmt.Sprintf("still retransmitting when we stopped listening, %s after the first SYN-ACK", secs(s.Waited)))
	case EndCount:
		j.Lines = append(j.Lines, "we stopped after the asked number of retransmissions")
	}
	switch {
	case len(iv) >= 2 && !doubling && steady:
		j.Verdict, j.Level = "deviates", "MUST"
		j.Why = fmt.Sprintf("the timeout stays at %s instead of doubling: RFC 6298 §5.5 says the host MUST back off the timer (RTO = RTO · 2)", secs(first))
	case len(iv) >= 2 && !doubling:
		j.Verdict, j.Level = "deviates", "MUST"
		j.Why = "the timeouts do not double from one retransmission to the next (RFC 6298 §5.5: RTO = RTO · 2)"
	case !near(first, time.Second):
		j.Verdict, j.Level = "deviates", "SHOULD"
		j.Why = fmt.Sprintf("the first timeout is %s: RFC 6298 §2.1 says 1 s until a round trip has been measured (3 s was RFC 1122's; RFC 6298 keeps 3 s only for the data after a handshake whose SYN or SYN-ACK had to be retransmitted, §5.7)", secs(first))
		if len(iv) >= 2 {
			j.Why += ", then doubling as §5.5 requires"
		}
	case len(iv) == 1:
		j.Verdict = "conforms"
		j.Why = "the first timeout is 1 s as RFC 6298 §2.1 says; the backoff (§5.5: doubling) needs a second retransmission to be seen"
	default:
		j.Verdict = "conforms"
		j.Why = fmt.Sprintf("1 s, then doubling (%s): RFC 6298 §2.1 and §5.5", joinSecs(iv))
	}
	return j
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func joinSecs(ds []time.Duration) string {
	var p []string
	for _, d := range ds {
		p = append(p, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(p, ", ") + " s"
}

// ChallengeCount is what a run of in-window RSTs (or SYNs) drew.
type ChallengeCount struct {
	Sent       int             // segments sent
	Span       time.Duration   // from the first to the last sent
	Challenges []time.Duration // when each challenge ACK came, from the first sent
	Every      time.Duration   // the pacing (0: back to back)
	Alive      bool            // the connection survived (checked afterwards)
	Checked    bool            // Alive was checked
}

// MinSpacing is the shortest time between two challenge ACKs (0 with fewer
// than two).
func (c ChallengeCount) MinSpacing() time.Duration {
	var m time.Duration
	for i := 1; i < len(c.Challenges); i++ {
		if d := c.Challenges[i] - c.Challenges[i-1]; m == 0 || d < m {
			m = d
		}
	}
	return m
}

// JudgeChallenge holds a burst (segments back to back) and a paced run
// (one segment every few hundred milliseconds, several seconds long) against
// RFC 5961: an in-window RST that is not exact MUST draw a challenge ACK
// (§3.2), and the challenge ACKs SHOULD be rate-limited (§7, whose example is
// 10 in any 5 s).
func JudgeChallenge(burst, paced ChallengeCount) Judgement {
	var j Judgement
	nb, np := len(burst.Challenges), len(paced.Challenges)
	j.Lines = append(j.Lines,
		fmt.Sprintf("burst: %d challenge ACK(s) for %d in-window RSTs sent within %s", nb, burst.Sent, ms3(burst.Span)),
		fmt.Sprintf("paced: %d challenge ACK(s) for %d in-window RSTs sent over %s", np, paced.Sent, secs(paced.Span)))
	switch sp := paced.MinSpacing(); {
	case sp == 0:
	case paced.Every > 0 && sp < paced.Every*3/2:
		j.Lines = append(j.Lines, fmt.Sprintf("challenge ACKs at least %s apart: as fast as the RSTs came (one per %v)", ms3(sp), paced.Every))
	default:
		j.Lines = append(j.Lines, fmt.Sprintf("challenge ACKs at least %s apart: at most one per %s on this connection", ms3(sp), ms3(roundSpacing(sp))))
	}
	switch {
	case burst.Sent == 0 || paced.Sent == 0:
		j.Verdict, j.Why = "inconclusive", "the RSTs could not be sent"
	case burst.Checked && !burst.Alive, paced.Checked && !paced.Alive:
		j.Verdict, j.Level = "deviates", "MUST"
		j.Why = "the connection did not survive in-window RSTs that were not exact (RFC 5961 §3.2: challenge ACK, no abort)"
	case nb == 0 && np == 0:
		j.Verdict, j.Level = "deviates", "MUST"
		j.Why = "no challenge ACK at all: RFC 5961 §3.2 says an in-window RST that is not exact MUST be answered with one"
	case nb >= burst.Sent*9/10 && np >= paced.Sent*9/10:
		// Nine in ten or more in both runs: one per RST, less what the
		// network may have lost; a limiter would cut the burst short.
		j.Verdict, j.Level = "deviates", "SHOULD"
		j.Why = fmt.Sprintf("a challenge ACK for every RST (%d for %d at once, %d for %d over %s): no rate limit seen (any limit is above %d at once), which RFC 5961 §7 says an implementation SHOULD have",
			nb, burst.Sent, np, paced.Sent, secs(paced.Span), nb)
	case nb == 10 && burst.Sent > 10:
		j.Verdict = "conforms"
		j.Why = fmt.Sprintf("limited: 10 for %d RSTs at once, RFC 5961 §7's own example (10 challenge ACKs in any 5 s)", burst.Sent)
	default:
		j.Verdict = "permitted"
		j.Why = fmt.Sprintf("rate-limited (%d for %d at once, %d for %d over %s); RFC 5961 §7 asks for a limit and leaves its value to the implementation (its example: 10 in any 5 s)", nb, burst.Sent, np, paced.Sent, secs(paced.Span))
	}
	return j
}

// roundSpacing rounds a measured spacing to the nearest 10 ms (a timer
// limit shows as slightly more than its period).
func roundSpacing(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

func ms3(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

// TWProbe is one probe of a TIME-WAIT 4-tuple: a SYN with an old sequence
// number, and how the peer answered.
type TWProbe struct {
	At     time.Duration // since TIME-WAIT began (the peer's ACK of our FIN)
	Answer string        // "ack" (TIME-WAIT answered), "rst" (TIME-WAIT refused it), "syn-ack" (a listener: TIME-WAIT is over), "" nothing
}

// TimeWait is what the TIME-WAIT measurement found.
type TimeWait struct {
	PeerClosedFirst bool          // the peer's FIN came before ours: the peer is the one in TIME-WAIT
	Probes          []TWProbe     // in order
	Bound           time.Duration // the most we waited
	Every           time.Duration // probing period
}

// Duration is the measured TIME-WAIT: the midpoint between the last probe
// TIME-WAIT answered and the first a listener answered, with half that gap
// as the resolution; ok false when no end was seen.
func (tw TimeWait) Duration() (d, resolution time.Duration, ok bool) {
	var last time.Duration = -1
	for _, p := range tw.Probes {
		switch p.Answer {
		case "ack", "rst":
			last = p.At
		case "syn-ack":
			if last < 0 {
				return 0, 0, false
			}
			return (last + p.At) / 2, (p.At - last) / 2, true
		}
	}
	return 0, 0, false
}

// msl2 is 2·MSL with RFC 9293's MSL of 2 minutes.
const msl2 = 4 * time.Minute

// JudgeTimeWait holds the measured TIME-WAIT against RFC 9293 §3.6.1: the
// side that closes first MUST linger in TIME-WAIT for 2·MSL (MUST-13), with
// MSL "arbitrarily defined to be 2 minutes", an engineering choice that
// "may be changed" (§3.4.2).
func JudgeTimeWait(tw TimeWait) Judgement {
	var j Judgement
	if !tw.PeerClosedFirst {
		j.Verdict, j.Why = "inconclusive", "the peer did not close first, so it never entered TIME-WAIT (give a port whose server closes after answering, --profile-time-wait-port)"
		return j
	}
	seen := 0
	for _, p := range tw.Probes {
		if p.Answer == "ack" || p.Answer == "rst" {
			seen++
		}
	}
	d, res, ok := tw.Duration()
	switch {
	case len(tw.Probes) > 0 && tw.Probes[0].Answer == "syn-ack":
		j.Verdict, j.Level = "deviates", "MUST"
		j.Why = fmt.Sprintf("a listener answered our first probe %s after the close: no TIME-WAIT (RFC 9293 §3.6.1, MUST-13: 2·MSL)", secs(tw.Probes[0].At))
	case !ok && seen == 0:
		j.Verdict, j.Why = "inconclusive", "no probe was answered, neither by TIME-WAIT nor by a listener"
	case !ok:
		j.Verdict = "inconclusive"
		j.Why = fmt.Sprintf("still in TIME-WAIT when we stopped, %s after the close: longer than the bound (--profile-time-wait-max)", secs(tw.Probes[len(tw.Probes)-1].At))
	case math.Abs(float64(d-msl2)) <= float64(res+time.Second):
		j.Verdict = "conforms"
		j.Why = fmt.Sprintf("TIME-WAIT lasted %s ± %s: 2·MSL with RFC 9293's MSL of 2 minutes", secs(d), secs(res))
	case d < msl2:
		j.Verdict = "permitted"
		j.Why = fmt.Sprintf("TIME-WAIT lasted %s ± %s, less than 2·MSL = 240 s with RFC 9293's 2-minute MSL; RFC 9293 §3.4.2 calls the MSL an engineering choice that may be changed, so this stack's MSL is %s", secs(d), secs(res), secs(d/2))
	default:
		j.Verdict = "permitted"
		j.Why = fmt.Sprintf("TIME-WAIT lasted %s ± %s, longer than 2·MSL = 240 s: the rule is a minimum", secs(d), secs(res))
	}
	if ok {
		j.Lines = append(j.Lines, fmt.Sprintf("probed every %s with a SYN carrying an old sequence number: TIME-WAIT answers it with an ACK of the old connection (RFC 9293 §3.10.7.4), a listener with a SYN-ACK", secs(tw.Every)))
	}
	return j
}
