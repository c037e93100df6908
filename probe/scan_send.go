package probe

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"tcpshake/capture"
)

// outBatch is the packets of one family waiting for their send.
type outBatch struct {
	sender capture.BatchSender
	tmpl   map[netip.Addr]*synTemplate
	bufs   [][]byte
	pkts   [][]byte
	dsts   []netip.Addr
	idxs   []uint64
}

func (s *scan) newBatch(sender capture.BatchSender) *outBatch {
	b := &outBatch{sender: sender, tmpl: map[netip.Addr]*synTemplate{}}
	for range scanBatch {
		b.bufs = append(b.bufs, make([]byte, 0, 128))
	}
	return b
}

// add builds the probe of entry idx into the batch.
func (s *scan) add(b *outBatch, r *ScanRange, dst netip.Addr, port uint16, idx uint64) error {
	if b.sender == nil {
		return fmt.Errorf("probe: no sender for %v", dst)
	}
	t := b.tmpl[r.Src]
	if t == nil {
		nt, err := newSynTemplate(r.Src, s.cfg.SPort, s.cfg.Window, s.cfg.TTL, s.cfg.SYN)
		if err != nil {
			return err
		}
		t = &nt
		b.tmpl[r.Src] = t
	}
	try := int(s.tries[idx])
	isn := s.cookie.ISN(netip.AddrPortFrom(r.Src, s.cfg.SPort), netip.AddrPortFrom(dst, port), try)
	k := len(b.pkts)
	buf := b.bufs[k][:len(t.pkt)]
	t.fill(buf, dst, port, isn, uint16(isn>>16))
	b.pkts = append(b.pkts, buf)
	b.dsts = append(b.dsts, dst)
	b.idxs = append(b.idxs, idx)
	return nil
}

// sendJob is one batch of SYNs that a sender thread sends.
type sendJob struct {
	sender capture.BatchSender
	bufs   [][]byte
	pkts   [][]byte
	dsts   []netip.Addr
	idxs   []uint64
	tries  []uint8 // each SYN's attempt
	// What the thread did: when it started, how many left, which were
	// refused by our output firewall (their positions), and the error
	// that stopped it.
	at      time.Time
	sent    int
	refused []int
	err     error
}

// senderPool is the threads that send the scan's SYNs, one pinned to each
// CPU the scan may use: on a veth pair (and with any local peer) the
// kernel handles the peer's answer on the CPU that sent the SYN, inside
// sendmmsg, so one thread is bound by one CPU's round trips.
type senderPool struct {
	jobs chan *sendJob // to the threads
	done chan *sendJob // back to the scan loop
	free []*sendJob    // owned by the scan loop
	out  int           // jobs handed out and not collected
	n    int           // threads (0: the scan loop sends)
	wg   sync.WaitGroup
}

// wait waits until every thread has stopped (its context ended).
func (p *senderPool) wait() { p.wg.Wait() }

// newSenderPool starts the sender threads on cpus, one pinned to each,
// with two jobs each so that a thread always has the next one waiting.
// They stop when ctx ends. With no cpus it starts none: the scan loop
// sends itself.
func newSenderPool(ctx context.Context, cpus []int, clock Clock) *senderPool {
	n := len(cpus)
	p := &senderPool{jobs: make(chan *sendJob, 2*n), done: make(chan *sendJob, 2*n), n: n}
	for range max(2*n, 1) {
		j := &sendJob{}
		for range scanBatch {
			j.bufs = append(j.bufs, make([]byte, 0, 128))
		}
		p.free = append(p.free, j)
	}
	for _, cpu := range cpus {
		p.wg.Add(1)
		go p.thread(ctx, cpu, clock)
	}
	return p
}

// thread sends the jobs it is given, on its own OS thread pinned to cpu.
// The thread stays locked, so it ends with the goroutine and its affinity
// goes with it.
func (p *senderPool) thread(ctx context.Context, cpu int, clock Clock) {
	defer p.wg.Done()
	runtime.LockOSThread()
	pinThread(cpu) // best effort: unpinned, it runs wherever the scheduler puts it
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-p.jobs:
			j.send(ctx, clock)
			p.done <- j
		}
	}
}

// send sends the job's SYNs, skipping those our output firewall refuses
// (EPERM) and waiting out a full device queue (ENOBUFS).
func (j *sendJob) send(ctx context.Context, clock Clock) {
	j.at, j.sent, j.refused, j.err = clock.Now(), 0, j.refused[:0], nil
	for off := 0; off < len(j.pkts); {
		m, err := j.sender.SendBatch(j.pkts[off:], j.dsts[off:])
		off += m
		j.sent += m
		switch {
		case err == nil:
		case isRefused(err) && off < len(j.pkts):
			j.refused = append(j.refused, off)
			off++
		case isNoBufs(err):
			select {
			case <-ctx.Done():
				j.err = ctx.Err()
				return
			case <-clock.After(200 * time.Microsecond):
			}
		default:
			j.err = err
			return
		}
	}
}

// flush hands the batch to the sender threads as the pacer lets it,
// taking answers in between.
func (s *scan) flush(ctx context.Context, b *outBatch) error {
	for off := 0; off < len(b.pkts); {
		now := s.env.Clock.Now()
		k := min(s.pacer.ready(now), len(b.pkts)-off)
		if k == 0 {
			if err := s.waitFor(ctx, s.pacer.wait(1)); err != nil {
				return err
			}
			continue
		}
		j, err := s.freeJob(ctx)
		if err != nil {
			return err
		}
		s.pacer.take(k)
		if err := s.dispatch(ctx, j, b, off, k, now); err != nil {
			return err
		}
		off += k
		if err := s.drain(); err != nil {
			return err
		}
	}
	b.pkts, b.dsts, b.idxs = b.pkts[:0], b.dsts[:0], b.idxs[:0]
	return nil
}

// freeJob returns a job no thread holds, waiting for one (and taking
// answers) when all are out.
func (s *scan) freeJob(ctx context.Context) (*sendJob, error) {
	for len(s.pool.free) == 0 {
		if _, err := s.waitEvent(ctx, nil); err != nil {
			return nil, err
		}
	}
	j := s.pool.free[len(s.pool.free)-1]
	s.pool.free = s.pool.free[:len(s.pool.free)-1]
	return j, nil
}

// dispatch copies b's packets off..off+k into j and hands it to a thread.
// Each entry counts as sent from now on, so that an answer that comes
// before the thread is back finds its attempt; collect corrects the send
// time to the thread's and undoes what did not leave.
func (s *scan) dispatch(ctx context.Context, j *sendJob, b *outBatch, off, k int, now time.Time) error {
	j.sender = b.sender
	j.pkts, j.dsts, j.idxs, j.tries = j.pkts[:0], j.dsts[:0], j.idxs[:0], j.tries[:0]
	us := uint32(now.Sub(s.start).Microseconds())
	for i := off; i < off+k; i++ {
		buf := append(j.bufs[i-off][:0], b.pkts[i]...)
		idx := b.idxs[i]
		try := s.tries[idx]
		j.pkts, j.dsts = append(j.pkts, buf), append(j.dsts, b.dsts[i])
		j.idxs, j.tries = append(j.idxs, idx), append(j.tries, try)
		s.sent[2*idx+uint64(try&1)] = us
		s.tries[idx]++
		s.fifo = append(s.fifo, inFlight{idx: idx, try: try})
		if try == 0 {
			s.state[idx] = esWait
		}
	}
	s.pool.out++
	if s.pool.n == 0 {
		j.send(ctx, s.env.Clock) // one CPU: a thread of its own would only take turns with the receiver
		return s.collect(j)
	}
	s.pool.jobs <- j
	return nil
}

// collect takes a job back from its thread: the send times become the
// thread's, a refused SYN decides its port (undecided, our-firewall), and
// the counters count what left.
func (s *scan) collect(j *sendJob) error {
	s.pool.out--
	s.pool.free = append(s.pool.free, j)
	us := uint32(j.at.Sub(s.start).Microseconds())
	r := 0
	for i, idx := range j.idxs {
		try := j.tries[i]
		if r < len(j.refused) && j.refused[r] == i {
			r++
			if s.tries[idx] == try+1 {
				s.tries[idx] = try
			}
			// Our own output firewall dropped this SYN: the port is
			// undecided, the scan goes on with the others.
			s.refused(idx)
			continue
		}
		if i >= j.sent+len(j.refused) {
			break // not sent: the scan stops with j.err
		}
		if int(s.tries[idx]) <= int(try)+2 && s.sent[2*idx+uint64(try&1)] < us {
			s.sent[2*idx+uint64(try&1)] = us
		}
		if try == 0 {
			s.firstSent++
			if j.at.After(s.lastFirst) {
				s.lastFirst = j.at
			}
		} else {
			s.ledger.Retransmissions++
		}
		s.ledger.MaxTries = max(s.ledger.MaxTries, int(try)+1)
	}
	s.out.Sent += j.sent
	return j.err
}

// collectAll waits until every job is back.
func (s *scan) collectAll(ctx context.Context) error {
	for s.pool.out > 0 {
		if _, err := s.waitEvent(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// MaxScanSenders is the most sender threads a scan starts by itself.
const MaxScanSenders = 4

// scanThreadRate is the rate from which a scan sends from one thread per
// CPU: below it the scan loop sends itself (one CPU completes about 100,000
// SYN→RST round trips a second through a veth pair, and a thread would only
// add a hand-over per batch).
const scanThreadRate = 50000

// senderCPUs is the CPUs the sender threads are pinned to, one each; nil
// when the scan loop sends itself.
func (s *scan) senderCPUs() []int {
	cpus := allowedCPUs()
	n := s.cfg.Senders
	if n == 0 {
		n = min(len(cpus), MaxScanSenders)
		if s.cfg.Rate < scanThreadRate {
			n = 1
		}
	}
	if n <= 1 || len(cpus) == 0 {
		return nil
	}
	out := make([]int, n)
	for i := range out {
		out[i] = cpus[i%len(cpus)]
	}
	return out
}
