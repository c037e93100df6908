package probe

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"tcpshake/craft"
)

// isnPeer makes synthetic ISNs: isn(port, ours, t) is what a peer's
// generator gives for a SYN from port with our ISN ours at time t.
type isnPeer func(port uint16, ours uint32, t time.Duration) uint32

// gather plays n connections from one port and n from different ones
// against gen, with jittered gaps (as a real run has) and a 50 µs RTT.
func gather(gen isnPeer, n int, seed uint64) (same, diff []ISNSample) {
	r := rand.New(rand.NewPCG(seed, 1))
	t := 5 * time.Millisecond
	const rtt = 50 * time.Microsecond
	take := func(port uint16) ISNSample {
		t += 10*time.Millisecond + time.Duration(r.IntN(8000))*time.Microsecond
		ours := r.Uint32()
		return ISNSample{SPort: port, OurISN: ours, ISN: gen(port, ours, t), At: t, RTT: rtt}
	}
	for range n {
		same = append(same, take(40000))
	}
	for i := range n {
		diff = append(diff, take(uint16(41000+i)))
	}
	return same, diff
}

// keyed is a per-port secret hash for synthetic peers.
func keyed(port uint16) uint32 {
	r := rand.New(rand.NewPCG(uint64(port), 99))
	return r.Uint32()
}

func TestClassifyISN(t *testing.T) {
	counter := uint32(6510)
	tests := []struct {
		name    string
		gen     isnPeer
		class   string
		verdict string
		level   string
		easy    bool // difficulty below 16 bits
	}{
		{"constant", func(uint16, uint32, time.Duration) uint32 { return 12345 }, ISNConstant, "deviates", "MUST", true},
		{"plus 160 each time", func(uint16, uint32, time.Duration) uint32 { counter += 160; return counter }, ISNIncrement, "deviates", "SHOULD", true},
		{"4 µs clock, nothing per 4-tuple", func(_ uint16, _ uint32, t time.Duration) uint32 { return 777 + uint32(t/(4*time.Microsecond)) }, ISNTimeLinear, "deviates", "SHOULD", true},
		{"64 ns clock, nothing per 4-tuple", func(_ uint16, _ uint32, t time.Duration) uint32 { return uint32(t / 64) }, ISNTimeLinear, "deviates", "SHOULD", true},
		{"keyed hash plus 64 ns clock (Linux)", func(p uint16, _ uint32, t time.Duration) uint32 { return keyed(p) + uint32(t/64) }, ISNHashClock, "conforms", "", false},
		{"keyed hash plus 4 µs clock (RFC 6528)", func(p uint16, _ uint32, t time.Duration) uint32 { return keyed(p) + uint32(t/(4*time.Microsecond)) }, ISNHashClock, "conforms", "", false},
		{"random every time", func(p uint16, o uint32, t time.Duration) uint32 { return keyed(uint16(o)) ^ o*2654435761 }, ISNRandom, "deviates", "MUST", false},
		{"SYN cookie: follows our ISN", func(p uint16, o uint32, _ time.Duration) uint32 { return keyed(p) + o }, ISNFollowsOurs, "permitted", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			same, diff := gather(tt.gen, 8, 1)
			r := ClassifyISN(same, diff)
			if r.Class != tt.class || r.Verdict != tt.verdict || r.Level != tt.level {
				t.Errorf("class %q verdict %q level %q, want %q %q %q\nwhy: %s\nbits %.1f by %s; same deltas %v; diff deltas %v",
					r.Class, r.Verdict, r.Level, tt.class, tt.verdict, tt.level, r.Why, r.Bits, r.Predictor, r.SameDeltas, r.DiffDeltas)
			}
			if easy := r.Bits < isnPredictBits; easy != tt.easy {
				t.Errorf("difficulty %.1f bits (%s): predictable %v, want %v", r.Bits, r.Difficulty, easy, tt.easy)
			}
			if r.Why == "" || len(r.Lines) == 0 || !strings.Contains(r.Lines[0], "TCP Sequence Prediction: Difficulty=") {
				t.Errorf("no explanation: %q %q", r.Why, r.Lines)
			}
		})
	}
}

func TestClassifyISNClockRate(t *testing.T) {
	same, diff := gather(func(p uint16, _ uint32, t time.Duration) uint32 { return keyed(p) + uint32(t/64) }, 8, 2)
	r := ClassifyISN(same, diff)
	if !r.Clock || r.RatePerUs < 15.5 || r.RatePerUs > 15.75 || r.TickNs < 63 || r.TickNs > 65 {
		t.Errorf("clock %v, rate %.3f per µs, tick %.2f ns: want a clock of 15.625 per µs (64 ns)", r.Clock, r.RatePerUs, r.TickNs)
	}
	if r.Difficulty != "Good luck!" {
		t.Errorf("difficulty %s (%.1f bits), want Good luck!", r.Difficulty, r.Bits)
	}
}

func TestClassifyISNIncrement(t *testing.T) {
	isn := uint32(1 << 31)
	same, diff := gather(func(uint16, uint32, time.Duration) uint32 { isn += 160; return isn }, 4, 3)
	r := ClassifyISN(same, diff)
	if r.Step != 160 || r.Difficulty != "Trivial joke" || !strings.Contains(r.Why, "+160") {
		t.Errorf("step %d, difficulty %s, why %q: want +160, Trivial joke", r.Step, r.Difficulty, r.Why)
	}
}

func TestClassifyISNTooFew(t *testing.T) {
	same, diff := gather(func(p uint16, _ uint32, t time.Duration) uint32 { return keyed(p) + uint32(t/64) }, 2, 4)
	r := ClassifyISN(same, diff)
	if r.Class != ISNUndecided || r.Verdict != "inconclusive" || !strings.Contains(r.Why, "too few") {
		t.Errorf("class %q verdict %q why %q: want undecided, too few", r.Class, r.Verdict, r.Why)
	}
}

func TestClassifyISNWraps(t *testing.T) {
	// A 64 ns clock near 2^32: the deltas wrap, the rate must not.
	same, diff := gather(func(p uint16, _ uint32, t time.Duration) uint32 { return keyed(p) + 0xffffff00 + uint32(t/64) }, 8, 5)
	r := ClassifyISN(same, diff)
	if r.Class != ISNHashClock || r.RatePerUs < 15.5 || r.RatePerUs > 15.75 {
		t.Errorf("class %q rate %.3f: want keyed-hash-clock at 15.625 per µs", r.Class, r.RatePerUs)
	}
}

func secsList(v ...float64) []time.Duration {
	var out []time.Duration
	for _, s := range v {
		out = append(out, time.Duration(s*float64(time.Second)))
	}
	return out
}

func TestJudgeSchedule(t *testing.T) {
	tests := []struct {
		name    string
		s       Schedule
		verdict string
		level   string
		why     string
	}{
		{"Linux 1,2,4,8 within 20 s", Schedule{Arrivals: secsList(0, 1.01, 3.02, 7.03, 15.05), Waited: 20 * time.Second, End: EndBound, Guarded: true}, "conforms", "", "1 s, then doubling"},
		{"stopped after two", Schedule{Arrivals: secsList(0, 1.03, 3.05), Waited: 3050 * time.Millisecond, End: EndCount, Guarded: true}, "conforms", "", "1 s, then doubling"},
		{"one retransmission only", Schedule{Arrivals: secsList(0, 1), Waited: 2 * time.Second, End: EndBound, Guarded: true}, "conforms", "", "needs a second"},
		{"initial 3 s (RFC 1122)", Schedule{Arrivals: secsList(0, 3, 9), Waited: 20 * time.Second, End: EndBound, Guarded: true}, "deviates", "SHOULD", "first timeout is 3.000 s"},
		{"initial 2.7 s", Schedule{Arrivals: secsList(0, 2.7), Waited: 10 * time.Second, End: EndSilence, Guarded: true}, "deviates", "SHOULD", "2.700 s"},
		{"no backoff", Schedule{Arrivals: secsList(0, 1, 2, 3, 4), Waited: 20 * time.Second, End: EndBound, Guarded: true}, "deviates", "MUST", "instead of doubling"},
		{"erratic", Schedule{Arrivals: secsList(0, 1, 1.5, 5), Waited: 20 * time.Second, End: EndBound, Guarded: true}, "deviates", "MUST", "do not double"},
		{"no retransmission (cookies)", Schedule{Arrivals: secsList(0), Waited: 20 * time.Second, End: EndBound, Guarded: true}, "inconclusive", "", "SYN cookies"},
		{"no SYN-ACK", Schedule{Guarded: true}, "inconclusive", "", "listening"},
		{"no guard", Schedule{Arrivals: secsList(0), Guarded: false}, "inconclusive", "", "--no-guard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := JudgeSchedule(tt.s)
			if j.Verdict != tt.verdict || j.Level != tt.level || !strings.Contains(j.Why, tt.why) {
				t.Errorf("%s (%s): %s; want %s (%s) with %q", j.Verdict, j.Level, j.Why, tt.verdict, tt.level, tt.why)
			}
		})
	}
	j := JudgeSchedule(Schedule{Arrivals: secsList(0, 1, 3, 7), Waited: 30 * time.Second, End: EndSilence, Guarded: true})
	if !strings.Contains(strings.Join(j.Lines, "\n"), "gave up after 3 retransmissions") {
		t.Errorf("lines %q: want the give-up", j.Lines)
	}
}

func TestJudgeChallenge(t *testing.T) {
	at := func(v ...float64) []time.Duration { return secsList(v...) }
	tests := []struct {
		name         string
		burst, paced ChallengeCount
		verdict      string
		level        string
	}{
		{"one per 500 ms (Linux)", ChallengeCount{Sent: 25, Challenges: at(0.001), Alive: true, Checked: true},
			ChallengeCount{Sent: 20, Span: 1900 * time.Millisecond, Challenges: at(0, 0.5, 1.0, 1.5), Alive: true, Checked: true}, "permitted", ""},
		{"RFC 5961's example", ChallengeCount{Sent: 25, Challenges: at(0, 0, 0, 0, 0, 0, 0, 0, 0, 0), Alive: true, Checked: true},
			ChallengeCount{Sent: 20, Span: 2 * time.Second, Challenges: nil, Alive: true, Checked: true}, "conforms", ""},
		{"no limit", ChallengeCount{Sent: 25, Challenges: make([]time.Duration, 25), Alive: true, Checked: true},
			ChallengeCount{Sent: 20, Challenges: make([]time.Duration, 20), Alive: true, Checked: true}, "deviates", "SHOULD"},
		{"no limit, one lost", ChallengeCount{Sent: 25, Challenges: make([]time.Duration, 24), Alive: true, Checked: true},
			ChallengeCount{Sent: 20, Challenges: make([]time.Duration, 20), Alive: true, Checked: true}, "deviates", "SHOULD"},
		{"a limit of 20 at once", ChallengeCount{Sent: 25, Challenges: make([]time.Duration, 20), Alive: true, Checked: true},
			ChallengeCount{Sent: 20, Challenges: make([]time.Duration, 20), Alive: true, Checked: true}, "permitted", ""},
		{"no challenge ACK", ChallengeCount{Sent: 25, Alive: true, Checked: true}, ChallengeCount{Sent: 20, Alive: true, Checked: true}, "deviates", "MUST"},
		{"aborted", ChallengeCount{Sent: 25, Challenges: at(0), Alive: false, Checked: true}, ChallengeCount{Sent: 20, Alive: false, Checked: true}, "deviates", "MUST"},
		{"nothing sent", ChallengeCount{}, ChallengeCount{}, "inconclusive", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := JudgeChallenge(tt.burst, tt.paced)
			if j.Verdict != tt.verdict || j.Level != tt.level {
				t.Errorf("%s (%s): %s; want %s (%s)", j.Verdict, j.Level, j.Why, tt.verdict, tt.level)
			}
		})
	}
	c := ChallengeCount{Challenges: at(0, 0.502, 1.004, 1.51)}
	if got := c.MinSpacing(); got != 502*time.Millisecond {
		t.Errorf("MinSpacing %v, want 502ms", got)
	}
}

// twProbes: TIME-WAIT answers (ack) every second up to end, then a listener.
func twProbes(end int, answer string) []TWProbe {
	var p []TWProbe
	for i := 0; i < end; i++ {
		p = append(p, TWProbe{At: time.Duration(i) * time.Second, Answer: answer})
	}
	return append(p, TWProbe{At: time.Duration(end) * time.Second, Answer: "syn-ack"})
}

func TestJudgeTimeWait(t *testing.T) {
	tests := []struct {
		name    string
		tw      TimeWait
		verdict string
		level   string
		dur     time.Duration
		why     string
	}{
		{"60 s (Linux)", TimeWait{PeerClosedFirst: true, Probes: twProbes(61, "ack"), Every: time.Second}, "permitted", "", 60500 * time.Millisecond, "MSL is 30.250 s"},
		{"240 s", TimeWait{PeerClosedFirst: true, Probes: twProbes(240, "ack"), Every: time.Second}, "conforms", "", 239500 * time.Millisecond, "2·MSL"},
		{"RST answers", TimeWait{PeerClosedFirst: true, Probes: twProbes(120, "rst"), Every: time.Second}, "permitted", "", 119500 * time.Millisecond, "less than 2·MSL"},
		{"no TIME-WAIT", TimeWait{PeerClosedFirst: true, Probes: twProbes(0, "ack"), Every: time.Second}, "deviates", "MUST", 0, "no TIME-WAIT"},
		{"longer than the bound", TimeWait{PeerClosedFirst: true, Probes: twProbes(10, "ack")[:10], Every: time.Second}, "inconclusive", "", 0, "still in TIME-WAIT"},
		{"we closed first", TimeWait{PeerClosedFirst: false}, "inconclusive", "", 0, "did not close first"},
		{"silence", TimeWait{PeerClosedFirst: true, Probes: []TWProbe{{At: 0}, {At: time.Second}}}, "inconclusive", "", 0, "no probe was answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := JudgeTimeWait(tt.tw)
			if j.Verdict != tt.verdict || j.Level != tt.level || !strings.Contains(j.Why, tt.why) {
				t.Errorf("%s (%s): %s; want %s (%s) with %q", j.Verdict, j.Level, j.Why, tt.verdict, tt.level, tt.why)
			}
			d, res, ok := tt.tw.Duration()
			if ok && (d != tt.dur || res != 500*time.Millisecond) || !ok && tt.dur != 0 {
				t.Errorf("duration %v ± %v (%v), want %v ± 500ms", d, res, ok, tt.dur)
			}
		})
	}
}

func TestJudgeOptions(t *testing.T) {
	ans := func(o craft.Options) *synAnswer {
		return &synAnswer{seg: craft.Segment{Flags: craft.SYN | craft.ACK, Options: o}}
	}
	all := craft.SYNOptions(craft.SYNOptionSet{MSS: 1460, SACKOK: true, Timestamp: true, WScale: 7})
	tests := []struct {
		name      string
		all, none *synAnswer
		verdict   string
		why       string
	}{
		{"takes what is offered, nothing unasked", ans(all), ans(craft.SYNOptions(craft.SYNOptionSet{MSS: 1460, WScale: -1})), "conforms", "only when our SYN did"},
		{"window scale unasked", ans(all), ans(craft.SYNOptions(craft.SYNOptionSet{MSS: 1460, WScale: 2})), "deviates", "window scale"},
		{"timestamps unasked", ans(all), ans(craft.SYNOptions(craft.SYNOptionSet{MSS: 1460, Timestamp: true, WScale: -1})), "deviates", "timestamps"},
		{"no answer", ans(all), nil, "inconclusive", "no answer"},
		{"reset", ans(all), &synAnswer{seg: craft.Segment{Flags: craft.RST | craft.ACK}}, "inconclusive", "RST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := judgeOptions(tt.all, tt.none, false)
			if j.Verdict != tt.verdict || !strings.Contains(j.Why, tt.why) {
				t.Errorf("%s: %s; want %s with %q", j.Verdict, j.Why, tt.verdict, tt.why)
			}
		})
	}
	j := judgeOptions(ans(nil), ans(nil), true)
	if !strings.Contains(strings.Join(j.Lines, "\n"), "assume 1220") {
		t.Errorf("lines %q: want the IPv6 default MSS", j.Lines)
	}
}
