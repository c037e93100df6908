package probe

import "time"

// pacer is a token bucket: tokens come in at rate per second up to burst,
// and each packet sent takes one. It reads no clock of its own, so tests
// drive it with a fake one.
type pacer struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newPacer(rate float64, burst int, now time.Time) *pacer {
	return &pacer{rate: rate, burst: float64(max(burst, 1)), tokens: 1, last: now}
}

// ready returns how many whole packets may leave at now.
func (p *pacer) ready(now time.Time) int {
	if d := now.Sub(p.last); d > 0 {
		p.tokens = min(p.tokens+d.Seconds()*p.rate, p.burst)
		p.last = now
	}
	return int(p.tokens)
}

// take spends n tokens (n ≤ ready).
func (p *pacer) take(n int) { p.tokens -= float64(n) }

// wait is how long until n packets may leave.
func (p *pacer) wait(n int) time.Duration {
	need := float64(n) - p.tokens
	if need <= 0 {
		return 0
	}
	return time.Duration(need / p.rate * float64(time.Second))
}
