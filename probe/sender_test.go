package probe

import (
	"math/rand/v2"
	"testing"
	"time"

	"tcpshake/craft"
)

// Unit tests of the sender's decisions (sender.go): no session, no I/O,
// only segments queued, ACKs and timer expiries at chosen times.

var senderT0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return senderT0.Add(d) }

// dataSeg is n bytes at seq.
func dataSeg(seq craft.Seq, n int) craft.Segment {
	return craft.Segment{Seq: seq, Flags: craft.PSH | craft.ACK, Payload: make([]byte, n)}
}

// queueData sends count segments of mss bytes from seq 1 at t.
func queueData(s *sender, count, mss int, t time.Time) {
	for i := range count {
		s.sent(dataSeg(craft.Seq(1+i*mss), mss), t)
	}
}

// newAck is an ACK that moves SND.UNA from una to ack.
func newAck(s *sender, una, ack craft.Seq, now time.Time) ackDecision {
	return s.onAck(una, ack, nil, time.Time{}, now, false, false)
}

// dupAck is a duplicate ACK of una (no data, same window).
func dupAck(s *sender, una craft.Seq, blocks [][2]craft.Seq, now time.Time, more bool) ackDecision {
	return s.onAck(una, una, blocks, time.Time{}, now, true, more)
}

func TestSenderSample(t *testing.T) {
	s := newSender(time.Second)
	s.setMSS(1000)
	queueData(&s, 1, 1000, at(0))
	d := newAck(&s, 1, 1001, at(30*time.Millisecond))
	if d.sample != 30*time.Millisecond || d.karn || s.est.samples != 1 || s.est.srtt != 30*time.Millisecond {
		t.Errorf("ACK of a segment sent once: sample %v karn %v, %d samples, srtt %v; want 30ms, false, 1, 30ms", d.sample, d.karn, s.est.samples, s.est.srtt)
	}
	// With kernel timestamps on both copies, they time the round trip.
	s.sent(dataSeg(1001, 1000), at(100*time.Millisecond))
	s.queue[0].wire = at(101 * time.Millisecond)
	d = s.onAck(1001, 2001, nil, at(121*time.Millisecond), at(150*time.Millisecond), false, false)
	if d.sample != 20*time.Millisecond {
		t.Errorf("sample %v, want 20ms: the kernel's times of our copy and of the ACK", d.sample)
	}
}

// TestSenderKarn: an ACK that covers a retransmitted segment gives no RTT
// sample (RFC 6298 §3), even when it also covers segments sent once before
// that retransmission; only a segment sent once after it is sampled.
func TestSenderKarn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		count int
		ack   craft.Seq
	}{
		{"the retransmitted segment alone", 1, 1001},
		{"with a segment sent once after it", 2, 2001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSender(time.Second)
			s.setMSS(1000)
			queueData(&s, tc.count, 1000, at(0))
			td := s.expired(at(time.Second), 6)
			if td.seg == nil || td.probe || td.giveUp || td.seg.seg.Seq != 1 {
				t.Fatalf("timer: %+v, want an RTO retransmission of seq 1", td)
			}
			s.retransmitted(at(time.Second))
			d := newAck(&s, 1, tc.ack, at(time.Second+5*time.Millisecond))
			if !d.karn || d.sample != 0 || s.est.samples != 0 {
				t.Errorf("karn %v, sample %v, %d samples; want true, 0, 0", d.karn, d.sample, s.est.samples)
			}
			if d.newly != uint32(tc.ack-1) {
				t.Errorf("newly acknowledged %d, want %d", d.newly, tc.ack-1)
			}
		})
	}
	t.Run("with a segment sent once after the retransmission", func(t *testing.T) {
		s := newSender(time.Second)
		s.setMSS(1000)
		queueData(&s, 1, 1000, at(0))
		s.expired(at(time.Second), 6)
		s.retransmitted(at(time.Second))
		s.sent(dataSeg(1001, 1000), at(time.Second+time.Millisecond))
		d := newAck(&s, 1, 2001, at(time.Second+4*time.Millisecond))
		if !d.karn || d.sample != 3*time.Millisecond || s.est.samples != 1 {
			t.Errorf("karn %v, sample %v, %d samples; want true, 3ms (from the segment sent once after the retransmission), 1", d.karn, d.sample, s.est.samples)
		}
	})
}

// TestSenderBackoffReset: the RTO doubles on each expiry (RFC 6298 §5.5)
// and a new ACK computes it afresh, even without a sample (Karn), instead
// of keeping the doubled value while the path evidently works again.
func TestSenderBackoffReset(t *testing.T) {
	s := newSender(time.Second)
	s.setMSS(1000)
	queueData(&s, 3, 1000, at(0))
	now := at(0)
	for i, want := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		now = s.deadline
		td := s.expired(now, 6)
		if td.seg == nil || td.probe {
			t.Fatalf("expiry %d: %+v, want an RTO", i+1, td)
		}
		s.retransmitted(now)
		if s.rto != want || s.backoff != i+1 || !s.deadline.Equal(now.Add(want)) {
			t.Fatalf("after expiry %d: rto %v backoff %d deadline +%v, want %v, %d, +%v", i+1, s.rto, s.backoff, s.deadline.Sub(now), want, i+1, want)
		}
	}
	// The first segment (retransmitted) is acknowledged: no sample, but
	// the backoff is over.
	now = now.Add(10 * time.Millisecond)
	d := newAck(&s, 1, 1001, now)
	if d.sample != 0 {
		t.Errorf("a sample from a retransmitted segment: %v", d.sample)
	}
	if s.backoff != 0 || s.rto != time.Second || !s.deadline.Equal(now.Add(time.Second)) {
		t.Errorf("after a new ACK: backoff %d rto %v deadline +%v, want 0, 1s, +1s (the initial RTO: no sample yet)", s.backoff, s.rto, s.deadline.Sub(now))
	}
	// The next segment was sent once: a sample, and the RTO from it.
	now = now.Add(10 * time.Millisecond)
	d = newAck(&s, 1001, 2001, now)
	if d.sample <= 0 || s.est.samples != 1 {
		t.Fatalf("ACK of a segment sent once: sample %v, %d samples", d.sample, s.est.samples)
	}
	if want := max(s.est.srtt+4*s.est.rttvar, minRTO); s.rto != want {
		t.Errorf("rto %v, want SRTT + 4·RTTVAR = %v", s.rto, want)
	}
}

// TestSenderSYNRetransmitted: after our SYN was retransmitted the RTO is
// 3 s when data begins, until a sample is taken (RFC 6298 §5.7); a larger
// configured RTO is kept.
func TestSenderSYNRetransmitted(t *testing.T) {
	for _, tc := range []struct {
		init, want time.Duration
		rexmit     bool
	}{
		{time.Second, 3 * time.Second, true},
		{time.Second, time.Second, false},
		{5 * time.Second, 5 * time.Second, true},
		{200 * time.Millisecond, 3 * time.Second, true},
	} {
		s := newSender(tc.init)
		s.sent(craft.Segment{Seq: 100, Flags: craft.SYN}, at(0))
		now := at(0)
		if tc.rexmit {
			now = s.deadline
			if td := s.expired(now, 6); td.seg == nil {
				t.Fatalf("no retransmission of the SYN")
			}
			s.retransmitted(now)
		}
		now = now.Add(time.Second + time.Millisecond)
		d := newAck(&s, 100, 101, now) // the SYN-ACK
		s.setMSS(1460)
		if tc.rexmit && (d.sample != 0 || !d.karn) {
			t.Errorf("SYN-ACK after a retransmitted SYN: sample %v karn %v, want none (Karn)", d.sample, d.karn)
		}
		if tc.rexmit && s.rto != tc.want {
			t.Errorf("init %v: rto after the handshake %v, want %v", tc.init, s.rto, tc.want)
		}
		if !tc.rexmit && s.est.samples != 1 {
			t.Errorf("a SYN sent once gives a sample: %d samples", s.est.samples)
		}
		s.sent(dataSeg(101, 100), now)
		if tc.rexmit && (!s.deadline.Equal(now.Add(tc.want)) || s.probe) {
			t.Errorf("init %v: the data's timer +%v (probe %v), want an RTO at +%v", tc.init, s.deadline.Sub(now), s.probe, tc.want)
		}
	}
}

// TestSenderFastRetransmit: the third duplicate ACK retransmits the first
// unacknowledged segment and enters recovery (RFC 5681 §3.2); ACKs that
// carry data or move the window are not duplicates; further duplicates
// inflate the window without retransmitting again at once.
func TestSenderFastRetransmit(t *testing.T) {
	const mss = 100
	s := newSender(time.Second)
	s.setMSS(mss)
	queueData(&s, 6, mss, at(0))
	now := at(10 * time.Millisecond)
	if d := s.onAck(1, 1, nil, time.Time{}, now, false, false); d.dup != 0 || d.fastRexmt != nil {
		t.Fatalf("a data segment with the same ack counted as duplicate: %+v", d)
	}
	for i := 1; i <= 3; i++ {
		d := dupAck(&s, 1, nil, now, false)
		if d.dup != i {
			t.Fatalf("duplicate %d counted as %d", i, d.dup)
		}
		if (d.fastRexmt != nil) != (i == 3) {
			t.Fatalf("duplicate %d: fast retransmit %v, want it on the third only", i, d.fastRexmt != nil)
		}
		if i == 3 {
			if d.fastRexmt.Seq != 1 || d.early || d.partial {
				t.Errorf("fast retransmit of seq %d (early %v partial %v), want seq 1, neither", d.fastRexmt.Seq, d.early, d.partial)
			}
		}
	}
	if !s.inRecovery || s.recover != 601 || s.ssthresh != 300 || s.cwnd != 600 {
		t.Errorf("recovery %v recover %d ssthresh %d cwnd %d, want true 601 300 600 (ssthresh = flight/2, cwnd = ssthresh + 3·MSS)", s.inRecovery, s.recover, s.ssthresh, s.cwnd)
	}
	cwnd := s.cwnd
	if d := dupAck(&s, 1, nil, now, false); d.fastRexmt != nil || s.cwnd != cwnd+mss {
		t.Errorf("a fourth duplicate in recovery: retransmit %v, cwnd %d; want none and %d (inflated by one MSS)", d.fastRexmt != nil, s.cwnd, cwnd+mss)
	}
	// An ACK below SND.UNA is not a duplicate.
	if d := s.onAck(1, 0, nil, time.Time{}, now, true, false); d.dup != 0 || d.fastRexmt != nil {
		t.Errorf("an old ACK counted: %+v", d)
	}
}

// TestSenderNewReno: in recovery, a partial ACK retransmits the next hole
// at once (RFC 6582 §3.2 step 3) and stays in recovery; the ACK of
// everything outstanding at its start ends it, with cwnd deflated.
func TestSenderNewReno(t *testing.T) {
	const mss = 100
	s := newSender(time.Second)
	s.setMSS(mss)
	queueData(&s, 6, mss, at(0))
	now := at(10 * time.Millisecond)
	for range 3 {
		dupAck(&s, 1, nil, now, false)
	}
	if !s.inRecovery {
		t.Fatal("not in recovery after three duplicates")
	}
	s.retransmitted(now)
	d := newAck(&s, 1, 201, now.Add(5*time.Millisecond)) // segments 1 and 2: 3 was lost too
	if !d.partial || d.fastRexmt == nil || d.fastRexmt.Seq != 201 || d.exited || !s.inRecovery {
		t.Fatalf("partial ACK: %+v, recovery %v; want the hole at 201 retransmitted, still in recovery", d, s.inRecovery)
	}
	s.retransmitted(now.Add(5 * time.Millisecond))
	d = newAck(&s, 201, 601, now.Add(10*time.Millisecond))
	if !d.exited || d.partial || d.fastRexmt != nil || s.inRecovery {
		t.Fatalf("full ACK: %+v, recovery %v; want recovery exited", d, s.inRecovery)
	}
	if s.cwnd != 2*mss {
		t.Errorf("cwnd after recovery %d, want %d: min(ssthresh, flight + MSS), at least 2·MSS", s.cwnd, 2*mss)
	}
}

// TestSenderEarlyRetransmit: with fewer than four segments out and nothing
// more to send, three duplicates can never come; outstanding − 1 of them
// trigger the retransmission (RFC 5827). With more to send, three are
// needed.
func TestSenderEarlyRetransmit(t *testing.T) {
	for _, tc := range []struct {
		segs int
		more bool
		want int // the duplicate that retransmits
	}{
		{3, false, 2},
		{2, false, 1},
		{3, true, 3},
		{4, false, 3},
	} {
		s := newSender(time.Second)
		s.setMSS(100)
		queueData(&s, tc.segs, 100, at(0))
		got := 0
		for i := 1; i <= 3 && got == 0; i++ {
			d := dupAck(&s, 1, nil, at(10*time.Millisecond), tc.more)
			if d.fastRexmt != nil {
				got = i
				if d.early != (i < 3) {
					t.Errorf("%d segments: early %v on duplicate %d", tc.segs, d.early, i)
				}
			}
		}
		if got != tc.want {
			t.Errorf("%d segments out, more to send %v: retransmitted on duplicate %d, want %d", tc.segs, tc.more, got, tc.want)
		}
	}
}

// TestSenderTailLossProbe: with an RTT known, the timer first fires after
// 2·SRTT (at least 10 ms) as a probe that resends the last segment (RFC
// 8985 §7); then the RTO is armed, and no second probe goes out before a
// new ACK. A duplicate ACK after the probe says the first segment was lost
// (§7.4).
func TestSenderTailLossProbe(t *testing.T) {
	s := newSender(time.Second)
	s.setMSS(100)
	s.est.sample(20 * time.Millisecond)
	s.rto = s.computeRTO()
	queueData(&s, 3, 100, at(0))
	if !s.probe || !s.deadline.Equal(at(40*time.Millisecond)) {
		t.Fatalf("timer +%v probe %v, want a probe at +40ms (2·SRTT)", s.deadline.Sub(at(0)), s.probe)
	}
	td := s.expired(s.deadline, 6)
	if !td.probe || td.seg == nil || td.seg.seg.Seq != 201 || td.giveUp {
		t.Fatalf("probe: %+v, want the last segment (seq 201)", td)
	}
	if s.probe || !s.deadline.Equal(at(40*time.Millisecond).Add(s.rto)) {
		t.Errorf("after the probe: timer +%v probe %v, want the RTO (%v) armed", s.deadline.Sub(at(40*time.Millisecond)), s.probe, s.rto)
	}
	s.arm(at(50 * time.Millisecond))
	if s.probe {
		t.Error("a second probe armed before any new ACK")
	}
	d := dupAck(&s, 1, nil, at(60*time.Millisecond), false)
	if d.fastRexmt == nil || d.fastRexmt.Seq != 1 || !d.probeLost {
		t.Errorf("duplicate after the probe: %+v, want seq 1 retransmitted as lost (probeLost)", d)
	}
	// The probe's floor: 10 ms, however short the RTT.
	s = newSender(time.Second)
	s.setMSS(100)
	s.est.sample(time.Millisecond)
	s.rto = s.computeRTO()
	queueData(&s, 1, 100, at(0))
	if !s.probe || !s.deadline.Equal(at(minPTO)) {
		t.Errorf("probe at +%v, want +%v (RFC 8985 §7.2's floor)", s.deadline.Sub(at(0)), minPTO)
	}
	// No probe while backing off, nor without an RTT.
	s = newSender(time.Second)
	s.setMSS(100)
	queueData(&s, 1, 100, at(0))
	if s.probe {
		t.Error("a probe armed without any RTT sample")
	}
}

// TestSenderSACKLoss: three later segments reported held by SACK blocks
// mark the first one lost at once, without waiting for three duplicates
// (RFC 6675 §5); fewer do not. After a timeout the SACK marks are dropped
// (§5.1).
func TestSenderSACKLoss(t *testing.T) {
	const mss = 100
	for _, tc := range []struct {
		sacked int
		want   bool
	}{{2, false}, {3, true}} {
		s := newSender(time.Second)
		s.setMSS(mss)
		queueData(&s, 5, mss, at(0))
		blocks := [][2]craft.Seq{{101, craft.Seq(101 + tc.sacked*mss)}}
		d := dupAck(&s, 1, blocks, at(10*time.Millisecond), false)
		if d.sackedNew != tc.sacked {
			t.Errorf("%d segments SACKed, the sender counted %d", tc.sacked, d.sackedNew)
		}
		if (d.fastRexmt != nil) != tc.want || d.fastRexmt != nil && d.fastRexmt.Seq != 1 {
			t.Errorf("%d later segments SACKed on the first duplicate: retransmit %v, want %v (of seq 1)", tc.sacked, d.fastRexmt != nil, tc.want)
		}
		if got, want := s.flight(), uint32((5-tc.sacked)*mss); got != want {
			t.Errorf("flight %d, want %d (SACKed segments have left the network)", got, want)
		}
		s.expired(s.deadline, 6)
		for _, f := range s.queue {
			if f.sacked {
				t.Errorf("seq %d still SACKed after a timeout", f.seg.Seq)
			}
		}
	}
	// A block that covers only part of a segment does not SACK it.
	s := newSender(time.Second)
	s.setMSS(mss)
	queueData(&s, 3, mss, at(0))
	if d := dupAck(&s, 1, [][2]craft.Seq{{101, 150}}, at(time.Millisecond), true); d.sackedNew != 0 {
		t.Errorf("a block over half a segment SACKed %d", d.sackedNew)
	}
}

// TestSenderGivesUp: the first segment is retransmitted Retries times,
// then the sender gives up.
func TestSenderGivesUp(t *testing.T) {
	s := newSender(time.Second)
	s.sent(craft.Segment{Seq: 100, Flags: craft.SYN}, at(0))
	for i := range 3 {
		td := s.expired(s.deadline, 3)
		if td.giveUp || td.seg == nil {
			t.Fatalf("expiry %d: %+v, want a retransmission", i+1, td)
		}
		s.retransmitted(s.deadline)
	}
	if td := s.expired(s.deadline, 3); !td.giveUp {
		t.Errorf("after 3 retransmissions: %+v, want giveUp", td)
	}
}

// TestSenderNeverNegative drives the sender with random ACKs, duplicates,
// SACK blocks, kernel times out of order (a copy's time after the ACK's, a
// clock step) and expiries, and checks after every step: no negative
// sample, SRTT or RTTVAR; the RTO within its bounds; the queue in sequence
// order and above the last ACK; a timer armed whenever something waits.
func TestSenderNeverNegative(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for run := range 300 {
		s := newSender(time.Duration(1+r.IntN(3)) * time.Second)
		mss := 1 + r.IntN(1460)
		s.setMSS(uint32(mss))
		now := at(0)
		una, nxt := craft.Seq(r.Uint32()), craft.Seq(0)
		nxt = una
		for step := range 200 {
			now = now.Add(time.Duration(r.IntN(50_000)) * time.Microsecond)
			switch r.IntN(6) {
			case 0, 1:
				n := 1 + r.IntN(mss)
				s.sent(dataSeg(nxt, n), now)
				if r.IntN(2) == 0 {
					// its copy on the wire, at a kernel time that may be off
					s.queue[len(s.queue)-1].wire = now.Add(time.Duration(r.IntN(20_000)-10_000) * time.Microsecond)
				}
				nxt = nxt.Add(uint32(n))
			case 2:
				if una == nxt {
					continue
				}
				ack := una.Add(uint32(r.IntN(int(nxt-una)) + 1))
				kt := now.Add(time.Duration(r.IntN(40_000)-20_000) * time.Microsecond)
				d := s.onAck(una, ack, nil, kt, now, false, r.IntN(2) == 0)
				if d.sample < 0 {
					t.Fatalf("run %d step %d: negative sample %v", run, step, d.sample)
				}
				una = ack
			case 3:
				var blocks [][2]craft.Seq
				if una != nxt && r.IntN(2) == 0 {
					l := una.Add(uint32(r.IntN(int(nxt - una))))
					blocks = append(blocks, [2]craft.Seq{l, l.Add(uint32(r.IntN(int(nxt-l)) + 1))})
				}
				if d := s.onAck(una, una, blocks, now, now, true, r.IntN(2) == 0); d.sample < 0 {
					t.Fatalf("run %d step %d: negative sample %v", run, step, d.sample)
				}
			case 4, 5:
				if s.deadline.IsZero() {
					continue
				}
				now = s.deadline
				td := s.expired(now, 100)
				if td.seg != nil && !td.probe {
					s.retransmitted(now)
				}
			}
			if s.est.srtt < 0 || s.est.rttvar < 0 {
				t.Fatalf("run %d step %d: srtt %v rttvar %v", run, step, s.est.srtt, s.est.rttvar)
			}
			if s.est.samples > 0 && (s.rto < minRTO || s.rto > maxRTO) {
				t.Fatalf("run %d step %d: rto %v outside [%v, %v]", run, step, s.rto, minRTO, maxRTO)
			}
			if len(s.queue) > 0 && s.deadline.IsZero() {
				t.Fatalf("run %d step %d: %d segments wait and no timer is armed", run, step, len(s.queue))
			}
			for i, f := range s.queue {
				if !una.LessThan(f.seg.End()) {
					t.Fatalf("run %d step %d: queued seq %d..%d is acknowledged (una %d)", run, step, f.seg.Seq, f.seg.End(), una)
				}
				if i > 0 && !s.queue[i-1].seg.Seq.LessThan(f.seg.Seq) {
					t.Fatalf("run %d step %d: queue out of order", run, step)
				}
			}
		}
	}
}

// TestSenderLargeSegments: an ACK inside a large (GSO) segment trims it, so
// a retransmission carries only what the peer lacks; slow start grows by
// the bytes acknowledged (one ACK of a large segment covers many MSS), and
// congestion avoidance by one MSS per window acknowledged.
func TestSenderLargeSegments(t *testing.T) {
	s := newSender(time.Second)
	s.setMSS(1000)
	s.sent(dataSeg(1, 10000), at(0))
	s.sent(dataSeg(10001, 10000), at(0))
	d := newAck(&s, 1, 4001, at(time.Millisecond))
	if d.newly != 4000 || len(s.queue) != 2 || s.queue[0].seg.Seq != 4001 || len(s.queue[0].seg.Payload) != 6000 {
		t.Fatalf("after ack 4001: newly %d, %d queued, first at %d with %d bytes; want 4000, 2, 4001, 6000",
			d.newly, len(s.queue), s.queue[0].seg.Seq, len(s.queue[0].seg.Payload))
	}
	if s.cwnd != 14000 {
		t.Errorf("cwnd %d after 4000 bytes acknowledged in slow start, want 10000+4000", s.cwnd)
	}
	if f := s.flight(); f != 16000 {
		t.Errorf("flight %d, want the 16000 bytes not acknowledged", f)
	}
	td := s.expired(at(2*time.Second), 6)
	if td.seg == nil || td.seg.seg.Seq != 4001 || len(td.seg.seg.Payload) != 6000 {
		t.Fatalf("the RTO retransmits %+v, want the 6000 bytes from 4001", td.seg)
	}
	s.ssthresh = 2000 // congestion avoidance from here
	s.cwnd = 10000
	newAck(&s, 4001, 20001, at(3*time.Second))
	if s.cwnd != 10000+16000*1000/10000 {
		t.Errorf("cwnd %d after 16000 bytes acknowledged at cwnd 10000 in congestion avoidance, want %d", s.cwnd, 10000+1600)
	}
}
