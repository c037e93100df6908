package probe

import (
	"time"

	"tcpshake/craft"
)

// The sender decides, without I/O, what to (re)transmit and when: the
// retransmission timer of RFC 6298 with Karn's rule (no RTT sample from a
// retransmitted segment) and a fresh timeout on every new ACK; slow start,
// congestion avoidance, fast retransmit and NewReno recovery (RFC 5681,
// RFC 6582); SACK-based loss detection when both ends negotiated it (RFC
// 2018, RFC 6675); and a tail loss probe (RFC 8985 §7) so that the last
// segments of a transfer do not wait a whole RTO when they are lost.

// Sender timing bounds.
const (
	minRTO = 200 * time.Millisecond // Linux's TCP_RTO_MIN; RFC 6298 suggests 1 s
	maxRTO = 60 * time.Second       // RFC 6298 §2.5: a maximum, if any, at least 60 s
	minPTO = 10 * time.Millisecond  // RFC 8985 §7.2: the probe timeout's floor
)

// inflight is a segment that occupies sequence space and waits for its ACK.
type inflight struct {
	seg     craft.Segment
	sentAt  time.Time // our clock when last handed to the kernel
	wire    time.Time // kernel timestamp of its first copy on the wire
	retrans int       // times retransmitted
	sacked  bool      // covered by a SACK block from the peer
}

// sender is the sending half of our TCB's decisions.
type sender struct {
	queue    []*inflight // in sequence order
	rto      time.Duration
	initRTO  time.Duration
	maxRTO   time.Duration // the cap of the backoff (SessionConfig.MaxRTO)
	backoff  int
	deadline time.Time // when the RTO (or probe) timer fires; zero: not armed
	probe    bool      // the armed timer is a tail loss probe, not an RTO
	probed   bool      // a probe was sent since the last new ACK
	est      rttEstimator
	mss      uint32

	synRexmit bool // our SYN was retransmitted (RFC 6298 §5.7)

	cwnd, ssthresh uint32
	dupAcks        int
	inRecovery     bool
	recover        craft.Seq // NewReno: SND.NXT when recovery began (RFC 6582)
	rexmitAt       time.Time // when the hole at SND.UNA was last retransmitted in recovery
	dupSinceRexmit int
}

func newSender(initRTO time.Duration) sender {
	return sender{rto: initRTO, initRTO: initRTO, maxRTO: maxRTO, mss: 536, ssthresh: 1 << 30}
}

// setMSS sets the segment size once negotiated; the initial window is ten
// segments (RFC 6928).
func (s *sender) setMSS(mss uint32) {
	s.mss = max(mss, 1)
	s.cwnd = 10 * s.mss
}

// flight is the sequence space sent and not yet acknowledged, less what the
// peer reported holding (SACK): RFC 6675's pipe, simply counted.
func (s *sender) flight() uint32 {
	var n uint32
	for _, f := range s.queue {
		if !f.sacked {
			n += f.seg.Len()
		}
	}
	return n
}

// room is how much new data may be sent now: the smaller of the congestion
// window and the peer's receive window, less what is in flight.
func (s *sender) room(sndWnd, inFlightSeq uint32) int {
	w := min(s.cwnd, sndWnd)
	if s.cwnd == 0 {
		w = sndWnd
	}
	return int(w) - int(inFlightSeq)
}

// sent queues a new segment and arms the timer if it was idle.
func (s *sender) sent(seg craft.Segment, now time.Time) {
	s.queue = append(s.queue, &inflight{seg: seg, sentAt: now})
	if s.deadline.IsZero() || s.probe {
		s.arm(now)
	}
}

// arm starts the timer: a tail loss probe when an RTT is known, data is in
// flight and no probe went out since the last ACK; otherwise the RTO. No
// probe without an RTT sample: after a lost SYN the path may be a slow one,
// which is why RFC 6298 §5.7 makes the RTO 3 s.
func (s *sender) arm(now time.Time) {
	if len(s.queue) == 0 {
		s.deadline, s.probe = time.Time{}, false
		return
	}
	if s.est.samples > 0 && !s.probed && !s.inRecovery && s.backoff == 0 {
		pto := max(2*s.est.srtt, minPTO)
		if pto < s.rto {
			s.deadline, s.probe = now.Add(pto), true
			return
		}
	}
	s.deadline, s.probe = now.Add(s.rto), false
}

// ackDecision is what one ACK did to the sender.
type ackDecision struct {
	newly     uint32         // sequence space newly acknowledged
	sample    time.Duration  // an RTT sample (Karn: only from segments sent once); 0: none
	karn      bool           // the newly acknowledged segments included a retransmitted one: no sample
	dup       int            // the duplicate ACK count, when this was one
	fastRexmt *craft.Segment // fast retransmit now (RFC 5681 §3.2 step 2, or a SACK-detected loss)
	partial   bool           // NewReno: a partial ACK in recovery; the next hole is retransmitted
	exited    bool           // recovery ended: all data outstanding at its start is acknowledged
	sackedNew int            // segments newly covered by SACK blocks
	early     bool           // early retransmit: fewer duplicates suffice with little in flight (RFC 5827)
	probeLost bool           // the duplicate answers our tail loss probe: the first segment was lost (RFC 8985 §7.4)
}

// onAck processes the cumulative ACK (and SACK blocks) of one acceptable
// segment from the peer. dupCandidate says whether it can count as a
// duplicate ACK (RFC 5681 §2: no data, no SYN/FIN, same window).
func (s *sender) onAck(una, ack craft.Seq, blocks [][2]craft.Seq, at, now time.Time, dupCandidate, moreToSend bool) ackDecision {
	var d ackDecision
	for _, b := range blocks {
		for _, f := range s.queue {
			if !f.sacked && b[0].LessThanEq(f.seg.Seq) && f.seg.End().LessThanEq(b[1]) {
				f.sacked = true
				d.sackedNew++
			}
		}
	}
	if una.LessThan(ack) {
		s.newAck(una, ack, at, now, &d)
		return d
	}
	if !dupCandidate || len(s.queue) == 0 || ack != una {
		return d
	}
	s.dupAcks++
	d.dup = s.dupAcks
	if s.inRecovery {
		s.cwnd += s.mss // RFC 5681 §3.2 step 4: inflate for each segment that left the network
		s.dupSinceRexmit++
		// The hole's retransmission was lost too when the peer keeps
		// reporting later segments well after it should have arrived (the
		// idea of RACK, RFC 8985): send it again.
		if s.dupSinceRexmit >= 3 && s.est.samples > 0 && now.Sub(s.rexmitAt) > 2*s.est.srtt+time.Millisecond {
			seg := s.queue[0].seg
			d.fastRexmt = &seg
			s.dupSinceRexmit = 0
		}
		return d
	}
	lostBySack := d.sackedNew > 0 && s.sackedAbove() >= 3
	// Early retransmit (RFC 5827): with fewer than four segments out, three
	// duplicates can never come; outstanding−1 of them is the signal.
	threshold := 3
	if n := len(s.queue); n < 4 && !moreToSend {
		threshold = max(n-1, 1)
	}
	// After a tail loss probe, a duplicate ACK means the probe arrived and
	// the first segment still did not: it was lost (RFC 8985 §7.4).
	afterProbe := s.probed
	if s.dupAcks >= threshold || lostBySack || afterProbe {
		// Fast retransmit and enter recovery (RFC 5681 §3.2, RFC 6582).
		s.ssthresh = max(s.flight()/2, 2*s.mss)
		s.cwnd = s.ssthresh + 3*s.mss
		s.inRecovery, s.recover = true, s.highest()
		seg := s.queue[0].seg
		d.fastRexmt = &seg
		d.early = s.dupAcks < 3 && !lostBySack && !afterProbe
		d.probeLost = afterProbe && s.dupAcks < 3 && !lostBySack
	}
	return d
}

// newAck handles an ACK that advances SND.UNA from una: it drops what is
// acknowledged, samples the RTT (Karn), ends the backoff, and grows the
// window or moves NewReno recovery on.
func (s *sender) newAck(una, ack craft.Seq, at, now time.Time, d *ackDecision) {
	d.newly = uint32(ack - una)
	// Karn (RFC 6298 §3): a retransmitted segment is never sampled. The
	// newest segment sent once is, unless a retransmission this ACK covers
	// left after it: then the ACK may have waited for that retransmission
	// to fill a hole. One sent once after every such retransmission reached
	// the peer behind it (the path keeps order), so its ACK is its own — as
	// RFC 8985 §6.2 takes the most recently sent delivered segment.
	var newest *inflight
	var lastRexmit time.Time
	for len(s.queue) > 0 && s.queue[0].seg.End().LessThanEq(ack) {
		f := s.queue[0]
		if f.retrans == 0 {
			newest = f
		} else {
			d.karn = true
			if f.sentAt.After(lastRexmit) {
				lastRexmit = f.sentAt
			}
		}
		s.queue = s.queue[1:]
	}
	// A large segment (GSO) the ACK covers in part: the peer holds its
	// first pieces (the link cut it); a retransmission carries only the rest.
	if len(s.queue) > 0 && s.queue[0].seg.Seq.LessThan(ack) && !s.queue[0].seg.Flags.Has(craft.SYN) {
		f := s.queue[0]
		if cut := int(ack - f.seg.Seq); cut < len(f.seg.Payload) {
			f.seg.Payload = f.seg.Payload[cut:]
			f.seg.Seq = ack
		}
	}
	if newest != nil && (!d.karn || newest.sentAt.After(lastRexmit)) {
		switch f := newest; {
		case !f.wire.IsZero() && !at.IsZero() && f.wire.Before(at):
			d.sample = at.Sub(f.wire)
		case !f.sentAt.IsZero():
			d.sample = now.Sub(f.sentAt)
		}
	}
	if d.sample > 0 {
		s.est.sample(d.sample)
	}
	// A new ACK ends the backoff: the timeout is computed afresh (RFC
	// 6298 §5.3 restarts the timer; the doubled value is dropped as
	// Linux does, since the path evidently works).
	s.backoff, s.probed = 0, false
	s.rto = s.computeRTO()
	s.dupAcks, s.dupSinceRexmit = 0, 0
	if s.inRecovery {
		if s.recover.LessThanEq(ack) {
			s.inRecovery, d.exited = false, true
			s.cwnd = max(min(s.ssthresh, s.flight()+s.mss), 2*s.mss) // RFC 6582 §3.2 step 3
		} else if len(s.queue) > 0 {
			d.partial = true // RFC 6582 §3.2 step 3: retransmit the next hole
			seg := s.queue[0].seg
			d.fastRexmt = &seg
			s.cwnd = max(s.cwnd-min(d.newly, s.cwnd)+s.mss, s.mss)
		}
	} else if s.cwnd < s.ssthresh {
		// Slow start (RFC 5681 §3.1) counting the bytes acknowledged, as
		// Linux counts segments (tcp_slow_start): one ACK of a large
		// segment (GSO) or a delayed ACK covers several MSS, and RFC 5681's
		// "at most SMSS" per ACK would make those grow the window slower
		// than the kernel's.
		s.cwnd += min(d.newly, max(s.ssthresh-s.cwnd, s.mss))
	} else {
		// Congestion avoidance: one MSS per window acknowledged (RFC 3465's
		// byte counting), whatever the ACKs' sizes.
		s.cwnd += max(uint32(uint64(d.newly)*uint64(s.mss)/uint64(max(s.cwnd, 1))), 1)
	}
	s.arm(now)
}

// sackedAbove counts the SACKed segments above the first unacknowledged one.
func (s *sender) sackedAbove() int {
	n := 0
	for _, f := range s.queue[1:] {
		if f.sacked {
			n++
		}
	}
	return n
}

func (s *sender) highest() craft.Seq {
	if len(s.queue) == 0 {
		return 0
	}
	return s.queue[len(s.queue)-1].seg.End()
}

// retransmitted notes that the first queued segment was sent again.
func (s *sender) retransmitted(now time.Time) {
	if len(s.queue) == 0 {
		return
	}
	s.queue[0].retrans++
	s.queue[0].sentAt = now
	s.rexmitAt = now
	if s.queue[0].seg.Flags.Has(craft.SYN) {
		s.synRexmit = true
	}
}

func (s *sender) computeRTO() time.Duration {
	if s.est.samples == 0 {
		if s.synRexmit {
			// RFC 6298 §5.7: after the SYN's timer expired, the RTO MUST be
			// 3 s when data transmission begins (until a sample is taken).
			return max(s.initRTO, 3*time.Second)
		}
		return s.initRTO
	}
	return min(max(s.est.srtt+max(4*s.est.rttvar, time.Millisecond), minRTO), s.maxRTO)
}

// timerDecision is what the timer's expiry asks for.
type timerDecision struct {
	seg    *inflight // the segment to send again (the probe: the last one; the RTO: the first)
	probe  bool      // a tail loss probe, not a timeout
	giveUp bool      // the first segment was retransmitted as often as allowed
	rto    time.Duration
}

// expired handles the timer (RFC 6298 §5.4–5.6 for the RTO: retransmit the
// earliest segment, double the timeout, collapse the window; RFC 8985 §7.3
// for the probe: send the last segment again to draw an ACK).
func (s *sender) expired(now time.Time, retries int) timerDecision {
	if len(s.queue) == 0 {
		s.deadline = time.Time{}
		return timerDecision{}
	}
	if s.probe {
		s.probed = true
		last := s.queue[len(s.queue)-1]
		s.deadline, s.probe = now.Add(s.rto), false
		return timerDecision{seg: last, probe: true}
	}
	f := s.queue[0]
	if f.retrans >= retries {
		return timerDecision{seg: f, giveUp: true}
	}
	d := timerDecision{seg: f, rto: s.rto}
	s.ssthresh = max(s.flight()/2, 2*s.mss)
	s.cwnd = s.mss
	s.inRecovery, s.dupAcks = false, 0
	for _, q := range s.queue {
		q.sacked = false // RFC 6675 §5.1: after a timeout the SACK information is not trusted
	}
	s.backoff++
	s.rto = min(2*s.rto, s.maxRTO)
	s.deadline = now.Add(s.rto)
	return d
}
