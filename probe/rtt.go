package probe

import (
	"math"
	"time"

	"tcpshake/event"
)

// Timeout bounds for waiting on a probe, as nmap uses them: one second before
// any round trip was measured, then the RFC 6298 estimate SRTT + 4·RTTVAR
// kept between 100 ms and 10 s.
const (
	InitialTimeout = time.Second
	MinTimeout     = 100 * time.Millisecond
	MaxTimeout     = 10 * time.Second
)

// rttEstimator is RFC 6298's smoothed round-trip time.
type rttEstimator struct {
	srtt, rttvar time.Duration
	samples      int
}

// sample feeds one measured round trip (§2.2 and §2.3 of RFC 6298).
func (e *rttEstimator) sample(r time.Duration) {
	if e.samples == 0 {
		e.srtt, e.rttvar = r, r/2
	} else {
		d := e.srtt - r
		if d < 0 {
			d = -d
		}
		e.rttvar = (3*e.rttvar + d) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	e.samples++
}

// timeout is how long to wait for an answer now.
func (e *rttEstimator) timeout() time.Duration {
	if e.samples == 0 {
		return InitialTimeout
	}
	return min(max(e.srtt+4*e.rttvar, MinTimeout), MaxTimeout)
}

// rttStats accumulates ping's min/avg/max/mdev.
type rttStats struct {
	n          int
	min, max   float64
	sum, sumSq float64
}

func (s *rttStats) add(ms float64) {
	if s.n == 0 || ms < s.min {
		s.min = ms
	}
	if ms > s.max {
		s.max = ms
	}
	s.n++
	s.sum += ms
	s.sumSq += ms * ms
}

// result returns the statistics, or nil with no samples. mdev is ping's:
// sqrt(mean(x²) − mean(x)²).
func (s *rttStats) result() *event.RTTStats {
	if s.n == 0 {
		return nil
	}
	avg := s.sum / float64(s.n)
	return &event.RTTStats{Min: s.min, Avg: avg, Max: s.max, Mdev: math.Sqrt(max(s.sumSq/float64(s.n)-avg*avg, 0))}
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
