package probe

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// ISNSample is one connection's initial sequence number, as a SYN-ACK
// carried it, with when the peer chose it.
type ISNSample struct {
	SPort  uint16
	OurISN uint32        // the seq of our SYN
	ISN    uint32        // the peer's ISN (the SYN-ACK's seq)
	At     time.Duration // when the peer chose it: midway between our SYN leaving and its SYN-ACK arriving
	RTT    time.Duration // the round trip: At is known to ±RTT/2
}

// ISN classes (ISNReport.Class).
const (
	ISNConstant       = "constant"           // the same ISN every time
	ISNIncrement      = "constant-increment" // the same step from one connection to the next, whatever the 4-tuple
	ISNTimeLinear     = "time-linear"        // a clock, and nothing per 4-tuple
	ISNSmallSteps     = "small-increments"   // each ISN near the previous one, whatever the 4-tuple
	ISNWeak           = "partly-predictable" // some bits guessable across 4-tuples
	ISNHashClock      = "keyed-hash-clock"   // RFC 6528: unrelated across 4-tuples, a clock within one
	ISNRandom         = "random"             // unrelated every time, no clock even within one 4-tuple
	ISNFollowsOurs    = "follows-our-isn"    // within one 4-tuple the ISN moves with ours (SYN cookies)
	ISNUndecided      = "undecided"          // too few samples
	isnUnpredictBits  = 24                   // at least this many bits of guessing: unpredictable
	isnPredictBits    = 16                   // below this: predictable
	isnRateTolerance  = 0.02                 // the relative spread a clock's rate may show beyond timing uncertainty
	isnMinSamplesEach = 3                    // per group: two deltas at least
)

// ISNReport is the verdict on a peer's initial sequence numbers.
type ISNReport struct {
	Class string
	// Bits is log2 of the median error of the best predictor of the next
	// 4-tuple's ISN from the previous one (constant step, clock, or the
	// previous value itself): how many bits an off-path attacker must guess.
	Bits       float64
	Predictor  string  // which predictor did best
	Step       int64   // the constant step, when that predictor won
	Difficulty string  // in words, like nmap's "TCP Sequence Prediction: Difficulty"
	Clock      bool    // within one 4-tuple the ISN follows a clock
	RatePerUs  float64 // that clock's rate, increments per microsecond (0 without one)
	TickNs     float64 // 1000 / RatePerUs: nanoseconds per increment
	SameDeltas []int64 // ISN deltas within one 4-tuple, in order
	DiffDeltas []int64 // ISN deltas across 4-tuples, in order
	Verdict    string  // conforms, deviates, permitted, inconclusive
	Level      string  // MUST or SHOULD, for deviates
	Why        string
	Lines      []string // what the figures mean
}

// difficulty words the bits an attacker must guess in the words nmap uses
// for its "TCP Sequence Prediction: Difficulty" (our scale is bits, not
// nmap's index).
func difficulty(bits float64) string {
	switch {
	case bits < 1:
		return "Trivial joke"
	case bits < 8:
		return "Easy"
	case bits < isnPredictBits:
		return "Medium"
	case bits < 20:
		return "Formidable"
	case bits < isnUnpredictBits:
		return "Worthy challenge"
	}
	return "Good luck!"
}

// fwd is the forward distance from a to b in sequence space (mod 2^32).
func fwd(a, b uint32) int64 { return int64(b - a) }

// signed is the shortest signed distance from a to b (mod 2^32).
func signed(a, b uint32) int64 { return int64(int32(b - a)) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ClassifyISN judges ISNs against RFC 6528 §3 (RFC 9293 §3.4.1): ISN = M +
// F(localip, localport, remoteip, remoteport, secretkey), M a clock. same
// are connections from one source port (one 4-tuple), diff from a fresh
// port each; both in the order they were made.
func ClassifyISN(same, diff []ISNSample) ISNReport {
	var r ISNReport
	r.SameDeltas, r.DiffDeltas = deltas(same), deltas(diff)
	if len(same) < isnMinSamplesEach || len(diff) < isnMinSamplesEach {
		r.Class, r.Verdict = ISNUndecided, "inconclusive"
		r.Why = fmt.Sprintf("too few SYN-ACKs to judge: %d on one 4-tuple and %d on different ones, %d of each needed", len(same), len(diff), isnMinSamplesEach)
		return r
	}
	// Across 4-tuples: how well does the previous ISN predict the next?
	r.Bits, r.Predictor, r.Step = predictBits(diff)
	r.Difficulty = difficulty(r.Bits)
	// Within one 4-tuple: a clock?
	if clock, rate := clockRate(same); clock {
		r.Clock, r.RatePerUs, r.TickNs = true, rate, 1000/rate
	}
	follows := followsOurs(same)
	all := append(slices.Clone(same), diff...)
	constant := true
	for _, s := range all[1:] {
		if s.ISN != all[0].ISN {
			constant = false
		}
	}
	rule := "RFC 6528 §3 (RFC 9293 §3.4.1, SHLD-1): ISN = M + F(4-tuple, secret) — the ISN of one connection must tell nothing about another's"
	switch {
	case constant:
		r.Class, r.Verdict, r.Level = ISNConstant, "deviates", "MUST"
		r.Why = fmt.Sprintf("every SYN-ACK carried ISN %d: no clock (RFC 9293 MUST-8) and nothing per 4-tuple (SHLD-1); anyone can forge this peer's segments", all[0].ISN)
	case r.Bits < isnPredictBits:
		r.Verdict, r.Level = "deviates", "SHOULD"
		switch r.Predictor {
		case "step":
			r.Class = ISNIncrement
			r.Why = fmt.Sprintf("the ISN grows by %+d from one connection to the next, whatever the 4-tuple: one ISN seen gives the next (%s)", r.Step, rule)
		case "clock":
			r.Class = ISNTimeLinear
			r.Why = fmt.Sprintf("ISNs on different 4-tuples follow one clock (%.3f per µs) with no per-4-tuple part: the time alone predicts them (%s)", medianRate(diff), rule)
		default:
			r.Class = ISNSmallSteps
			r.Why = fmt.Sprintf("each ISN lies within about 2^%.0f of the previous one, whatever the 4-tuple (%s)", r.Bits, rule)
		}
	case r.Bits < isnUnpredictBits:
		r.Class, r.Verdict, r.Level = ISNWeak, "deviates", "SHOULD"
		r.Why = fmt.Sprintf("only about %.0f bits to guess across 4-tuples (a random 32-bit value gives about 30): partly predictable (%s)", r.Bits, rule)
	case follows:
		r.Class, r.Verdict = ISNFollowsOurs, "permitted"
		r.Why = "unrelated across 4-tuples; within one 4-tuple the ISN moves exactly with ours, as a SYN cookie does (its ISN encodes our SYN's, RFC 4987 §3.6): a trade of state for protection RFC 4987 describes"
	case r.Clock:
		r.Class, r.Verdict = ISNHashClock, "conforms"
		r.Why = fmt.Sprintf("unrelated across 4-tuples (about %.0f bits to guess), and within one 4-tuple a clock of %.3f per µs: a per-4-tuple keyed hash plus a clock, as RFC 6528 §3 specifies", r.Bits, r.RatePerUs)
	default:
		r.Class, r.Verdict, r.Level = ISNRandom, "deviates", "MUST"
		r.Why = fmt.Sprintf("unpredictable (about %.0f bits to guess) but random even within one 4-tuple: no clock, which RFC 9293 §3.4.1 (MUST-8) asks for so that old duplicates of a previous incarnation fall outside the new one's window", r.Bits)
	}
	r.Lines = isnLines(r)
	return r
}

// isnLines explains the ISN figures.
func isnLines(r ISNReport) []string {
	lines := []string{fmt.Sprintf("TCP Sequence Prediction: Difficulty=%.0f bits (%s): the median error of the best guess (%s) of the next 4-tuple's ISN from the last one", r.Bits, r.Difficulty, predictorWords(r))}
	if r.Clock {
		lines = append(lines, fmt.Sprintf("on one 4-tuple the ISN advances %.3f per µs (one every %.1f ns): RFC 9293 §3.4.1's clock M (RFC 793 suggested one every 4 µs, 0.25 per µs)", r.RatePerUs, r.TickNs))
	} else {
		lines = append(lines, "on one 4-tuple the ISNs follow no steady clock")
	}
	return lines
}

func predictorWords(r ISNReport) string {
	switch r.Predictor {
	case "step":
		return fmt.Sprintf("the last ISN %+d", r.Step)
	case "clock":
		return "the last ISN + rate × elapsed time"
	}
	return "the last ISN itself"
}

func deltas(s []ISNSample) []int64 {
	var d []int64
	for i := 1; i < len(s); i++ {
		d = append(d, signed(s[i-1].ISN, s[i].ISN))
	}
	return d
}

// predictBits tries three predictors of ISN[i] from ISN[i-1] — a constant
// step (the median delta), a clock (the median rate × elapsed), the
// previous value — and returns the bits of the smallest median error.
func predictBits(s []ISNSample) (bits float64, predictor string, step int64) {
	var steps []float64
	for i := 1; i < len(s); i++ {
		steps = append(steps, float64(signed(s[i-1].ISN, s[i].ISN)))
	}
	step = int64(median(steps))
	rate := medianRate(s) // per µs
	var eStep, eClock, ePrev []float64
	for i := 1; i < len(s); i++ {
		d := signed(s[i-1].ISN, s[i].ISN)
		eStep = append(eStep, math.Abs(float64(d-step)))
		el := float64(s[i].At-s[i-1].At) / float64(time.Microsecond)
		pred := uint32(int64(s[i-1].ISN) + int64(math.Round(rate*el)))
		eClock = append(eClock, math.Abs(float64(signed(pred, s[i].ISN))))
		ePrev = append(ePrev, math.Abs(float64(d)))
	}
	best, predictor := median(eStep), "step"
	if m := median(eClock); m < best {
		best, predictor = m, "clock"
	}
	if m := median(ePrev); m < best {
		best, predictor = m, "previous"
	}
	return math.Log2(1 + best), predictor, step
}

// medianRate is the median of forward delta / elapsed, per microsecond.
func medianRate(s []ISNSample) float64 {
	var rates []float64
	for i := 1; i < len(s); i++ {
		el := float64(s[i].At-s[i-1].At) / float64(time.Microsecond)
		if el <= 0 {
			continue
		}
		rates = append(rates, float64(fwd(s[i-1].ISN, s[i].ISN))/el)
	}
	return median(rates)
}

// clockRate reports whether the ISNs of one 4-tuple follow a clock: every
// forward delta over its elapsed time gives the same rate, within the
// uncertainty of when each ISN was chosen (±RTT/2) and a small tolerance.
func clockRate(s []ISNSample) (bool, float64) {
	rate := medianRate(s)
	if rate <= 0 {
		return false, 0
	}
	for i := 1; i < len(s); i++ {
		el := float64(s[i].At - s[i-1].At)
		if el <= 0 {
			return false, 0
		}
		r := float64(fwd(s[i-1].ISN, s[i].ISN)) / (el / float64(time.Microsecond))
		u := float64(s[i].RTT+s[i-1].RTT) / 2 / el
		if math.Abs(r-rate) > rate*(u+isnRateTolerance) {
			return false, rate
		}
	}
	return true, rate
}

// followsOurs: within one 4-tuple, the peer's ISN minus ours is the same
// every time while ours changed (a SYN cookie encodes our ISN).
func followsOurs(s []ISNSample) bool {
	moved := false
	for i := 1; i < len(s); i++ {
		if s[i].ISN-s[i].OurISN != s[0].ISN-s[0].OurISN {
			return false
		}
		if s[i].OurISN != s[0].OurISN {
			moved = true
		}
	}
	return moved
}
