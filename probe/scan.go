package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
)

// ScanConfig is a SYN scan of many ports on many hosts.
type ScanConfig struct {
	Ranges  []ScanRange
	Ports   []uint16
	SPort   uint16        // our source port, reserved by the caller
	Rate    float64       // packets per second
	Retries int           // most retransmissions of a silent probe (nmap --max-retries); at most capture.MaxTries-1
	Timeout time.Duration // wait after a pass; 0: adaptive (RFC 6298 estimate, 100 ms-10 s)
	// Senders is how many threads send, each pinned to a CPU of those the
	// process may run on (in turn); 0: one per such CPU (at most
	// MaxScanSenders) from a rate of 50,000 per second, else 1; 1: the
	// scan loop sends itself.
	Senders int
	Shard   int // this machine's part, 1..Shards; 0: the whole scan
	Shards  int
	Window  uint16
	TTL     uint8
	SYN     craft.SYNOptionSet
	// Verbose streams closed ports too; otherwise only open, filtered and
	// undecided ones are emitted (the closed are counted).
	Verbose bool
}

// A Clock is the time a scan paces and waits by.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the system clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ScanEnv is what a scan needs from the outside world.
type ScanEnv struct {
	Sender4, Sender6 capture.BatchSender // nil when no target has that family
	Source           capture.BatchSource
	Clock            Clock
	Key              [16]byte // the cookie's secret, fresh per run
	Emit             func(event.Event)
	// Progress, when set, is told how many first SYNs have left and how
	// many probes are decided, at most ten times a second.
	Progress func(sent, decided, total int)
	// Unreachable, when set, is asked at the end about each host that
	// answered nothing: a non-empty reason (nmap-style word, e.g.
	// "no-neighbour" or "link-down") and why in words mean our SYNs never
	// left this host, so its silent ports are undecided, not filtered.
	Unreachable func(host netip.Addr) (reason, why string)
}

// ScanHost is one host's tally.
type ScanHost struct {
	Addr                              netip.Addr
	Name                              string // the argument it came from
	Open, Closed, Filtered, Undecided int
	ICMP                              int // of Filtered: by an ICMP error (the rest were silent)
	ClosedReason                      string
	Unreachable                       string // why nothing left for this host (ScanEnv.Unreachable)
	UnreachableReason                 string
}

// ScanOutcome is what a scan found: the results it emitted (open, filtered,
// undecided; closed too when verbose), per-host tallies and the ledger.
type ScanOutcome struct {
	Results []event.Result
	Hosts   []ScanHost
	Ledger  event.ScanLedger
	RTT     *event.RTTStats
	Ignored map[string]uint64
	Sent    int // SYNs sent, retransmissions included
}

// Entry states.
const (
	esNone uint8 = iota
	esWait
	esOpen
	esClosed
	esICMP
	esSilent
	esDropped
	esInterrupted
	esNeverLeft
	esOurFirewall
)

// hit is one validated answer, from the receiver to the scan loop.
type hit struct {
	idx    uint64
	try    uint8
	state  uint8 // esOpen, esClosed or esICMP
	ttl    uint8
	window uint16
	icmpT  uint8
	icmpC  uint8
	icmpV6 bool
	at     time.Time
	from   netip.Addr
}

// scan is one run's state. The scan loop owns everything but what the
// receiver keeps (ignored counts, under mu).
type scan struct {
	cfg    ScanConfig
	env    ScanEnv
	cookie capture.Cookie
	start  time.Time
	perm   permutation
	hosts  uint64
	nports uint64
	first  []uint64 // index of each range's first host
	portIx [65536]int32

	state []uint8
	tries []uint8
	sent  []uint32 // µs since start of the last two sends (slot try&1)

	pacer     *pacer
	next      uint64     // the next permutation position to send first
	fifo      []inFlight // SYNs in the air, oldest first (from head)
	head      int
	retry     []uint64  // entries whose retransmission is due
	given     []uint64  // entries that used their tries, waiting for the end
	dropPoll  time.Time // when the drop counter was last read
	lastDrop  time.Time // when it last grew
	firstSent int
	lastFirst time.Time
	asked     map[uint64]bool // hosts ScanEnv.Unreachable was asked about
	est       rttEstimator
	stats     rttStats
	maxTry    int // highest try that was ever answered (nmap's max_successful_tryno)
	ledger    event.ScanLedger
	tally     []ScanHost
	out       ScanOutcome
	hits      chan []hit
	free      chan []hit
	decided   int
	progress  time.Time

	read    atomic.Uint64 // packets the receiver read and handed on
	seen    time.Time     // every packet that reached the receiver's socket before it was read
	markAt  time.Time     // when markP was taken (zero: no mark)
	markP   uint64        // the socket's count of accepted packets then, less its drops
	pool    *senderPool
	rxPause time.Duration // how long the receiver lets answers gather after a short read

	mu      sync.Mutex
	ignored map[string]uint64
	rerr    error
}

// scanBatch is the most packets one system call sends or receives.
const scanBatch = 64

// scanRxPause is how long the receiver lets answers gather after a read
// that found fewer than scanBatch: at 100,000 answers a second a wake-up
// per packet or two cost the sending CPUs about 30,000 context switches a
// scan; with the pause, half as many.
const scanRxPause = 200 * time.Microsecond

// RunScan sends one SYN to every (host, port) of cfg (of its shard), at
// cfg.Rate, matches the answers statelessly by their cookie, retries the
// silent ones like nmap, and emits results as they are decided and a
// summary with the ledger. On a cancelled context it emits what it has and
// the rest as undecided, and returns the context's error.
func RunScan(ctx context.Context, cfg ScanConfig, env ScanEnv) (ScanOutcome, error) {
	s, err := newScan(cfg, env)
	if err != nil {
		return ScanOutcome{}, err
	}
	done := make(chan struct{})
	go func() { defer close(done); s.receive() }()
	sctx, stop := context.WithCancel(ctx)
	s.pool = newSenderPool(sctx, s.senderCPUs(), env.Clock)
	err = s.run(ctx)
	stop()
	s.pool.wait()
	for s.pool.out > 0 && len(s.pool.done) > 0 {
		s.collect(<-s.pool.done) // what left before an error or an interrupt
	}
	env.Source.Close()
	for {
		select {
		case hs := <-s.hits:
			s.free <- hs[:0]
			continue
		case <-done:
		}
		break
	}
	s.finish(err)
	return s.out, err
}

func newScan(cfg ScanConfig, env ScanEnv) (*scan, error) {
	if len(cfg.Ranges) == 0 || len(cfg.Ports) == 0 {
		return nil, errors.New("probe: a scan needs targets and ports")
	}
	if cfg.Rate <= 0 {
		return nil, errors.New("probe: a scan needs a rate above zero")
	}
	cfg.Retries = min(max(cfg.Retries, 0), capture.MaxTries-1)
	if cfg.Shards == 0 {
		cfg.Shard, cfg.Shards = 1, 1
	}
	s := &scan{cfg: cfg, env: env, cookie: capture.NewCookie(env.Key), nports: uint64(len(cfg.Ports)),
		ignored: map[string]uint64{}, hits: make(chan []hit, 256), free: make(chan []hit, 260)}
	for i := range s.portIx {
		s.portIx[i] = -1
	}
	for i, p := range cfg.Ports {
		s.portIx[p] = int32(i)
	}
	for _, r := range cfg.Ranges {
		s.first = append(s.first, s.hosts)
		s.hosts += r.N
	}
	if s.hosts > MaxScanHosts {
		return nil, fmt.Errorf("probe: %d hosts; one scan takes at most %d", s.hosts, MaxScanHosts)
	}
	n := s.hosts * s.nports
	if n > MaxScanProbes {
		return nil, fmt.Errorf("probe: %d hosts × %d ports = %d probes; one scan takes at most %d", s.hosts, s.nports, n, MaxScanProbes)
	}
	s.perm = newPermutation(n)
	s.state, s.tries, s.sent = make([]uint8, n), make([]uint8, n), make([]uint32, 2*n)
	s.tally = make([]ScanHost, s.hosts)
	for i, r := range cfg.Ranges {
		for j := range r.N {
			s.tally[s.first[i]+j] = ScanHost{Addr: r.addr(j), Name: r.Name}
		}
	}
	for range 260 {
		s.free <- make([]hit, 0, scanBatch)
	}
	s.start = env.Clock.Now()
	s.seen = s.start
	s.rxPause = scanRxPause
	s.progress = s.start
	burst := max(scanBatch, int(cfg.Rate/1000))
	s.pacer = newPacer(cfg.Rate, burst, s.start)
	s.next = uint64(cfg.Shard - 1)
	s.ledger = event.ScanLedger{Hosts: int(s.hosts), Ports: len(cfg.Ports), RatePPS: cfg.Rate}
	for j := uint64(cfg.Shard - 1); j < n; j += uint64(cfg.Shards) {
		s.ledger.Probes++
	}
	if cfg.Shards > 1 {
		s.ledger.Shard = fmt.Sprintf("%d/%d", cfg.Shard, cfg.Shards)
	}
	return s, nil
}

// locate returns the range and host of entry idx, and its port.
func (s *scan) locate(idx uint64) (r *ScanRange, host uint64, port uint16) {
	host = idx / s.nports
	i := 0
	if len(s.first) > 1 { // one range is the common case, and this runs twice a probe
		i = sort.Search(len(s.first), func(i int) bool { return s.first[i] > host }) - 1
	}
	return &s.cfg.Ranges[i], host, s.cfg.Ports[idx-host*s.nports]
}

// run sends every entry's first SYN in permutation order and, as nmap
// does, retransmits each silent one as soon as its own timeout runs out,
// at the same rate (retransmissions go first). An entry that used the
// tries nmap's rule allows waits; once nothing is left in the air and the
// receiver has caught up, the waiting entries are retried if the
// rule now allows more (a later answer raised it), or decided.
func (s *scan) run(ctx context.Context) error {
	b4, b6 := s.newBatch(s.env.Sender4), s.newBatch(s.env.Sender6)
	for {
		now := s.env.Clock.Now()
		s.pollDrops(now)
		s.advanceSeen(now, false)
		if err := s.drain(); err != nil {
			return err
		}
		s.expire(s.seen)
		// No more than the pacer lets go now, so that a retransmission
		// that falls due is not held behind a batch of first SYNs.
		limit := min(max(s.pacer.ready(now), 1), scanBatch)
		for len(b4.pkts) < limit && len(b6.pkts) < limit {
			idx, ok := s.nextToSend()
			if !ok {
				break
			}
			r, host, port := s.locate(idx)
			b := b4
			if s.tally[host].Addr.Is6() {
				b = b6
			}
			if err := s.add(b, r, s.tally[host].Addr, port, idx); err != nil {
				return err
			}
		}
		if len(b4.pkts)+len(b6.pkts) > 0 {
			for _, b := range []*outBatch{b4, b6} {
				if err := s.flush(ctx, b); err != nil {
					return err
				}
			}
			continue
		}
		if s.head < len(s.fifo) {
			// Nothing to send now: wait for the oldest probe's timeout.
			f := s.fifo[s.head]
			due := s.start.Add(time.Duration(s.sent[2*f.idx+uint64(f.try&1)])*time.Microsecond + s.timeout())
			if s.next >= uint64(len(s.state)) {
			}
			// Answers may decide it (and the ones behind it) sooner.
			if err := s.waitAnswer(ctx, max(due.Sub(now), 100*time.Microsecond)); err != nil {
				return err
			}
			continue
		}
		// Nothing in the air: let the receiver catch up, then retry what
		// the rule allows by now, or stop.
		if err := s.settle(ctx); err != nil {
			return err
		}
		if !s.requeue(s.seen) {
			return nil
		}
	}
}

// inFlight is one SYN in the air: the entry and its attempt.
type inFlight struct {
	idx uint64
	try uint8
}

// nextToSend is the next entry to send: a retransmission first, else the
// next first SYN of the shard.
func (s *scan) nextToSend() (uint64, bool) {
	if len(s.retry) > 0 {
		idx := s.retry[0]
		s.retry = s.retry[1:]
		return idx, true
	}
	if s.next < uint64(len(s.state)) {
		idx := s.perm.at(s.next)
		s.next += uint64(s.cfg.Shards)
		return idx, true
	}
	return 0, false
}

func (s *scan) timeout() time.Duration {
	if s.cfg.Timeout != 0 {
		return s.cfg.Timeout
	}
	return s.est.timeout()
}

// allowed is how many retransmissions an entry may have now: nmap's rule
// (one try more than the highest that was ever answered, at least one,
// within --retries), or every one allowed when our kernel dropped replies
// after its last send, since silence is then no evidence.
func (s *scan) allowed(idx uint64) int {
	if s.droppedSince(idx) {
		return s.cfg.Retries
	}
	return min(s.cfg.Retries, max(1, s.maxTry+1))
}

// droppedSince tells whether our kernel dropped replies after the entry's
// last SYN left.
func (s *scan) droppedSince(idx uint64) bool {
	if s.lastDrop.IsZero() || s.tries[idx] == 0 {
		return false
	}
	return !s.lastDrop.Before(s.lastSent(idx))
}

// expire takes the probes whose timeout ran out by seen (see advanceSeen)
// off the queue: a silent entry is retransmitted if the rule allows, else
// it waits for the end. A reply that our kernel holds but we have not read
// yet does not make its probe time out.
func (s *scan) expire(seen time.Time) {
	to := s.timeout()
	for s.head < len(s.fifo) {
		f := s.fifo[s.head]
		if s.state[f.idx] == esWait && int(f.try) == int(s.tries[f.idx])-1 {
			sent := s.start.Add(time.Duration(s.sent[2*f.idx+uint64(f.try&1)]) * time.Microsecond)
			if seen.Sub(sent) < to {
				break
			}
			if int(f.try) < s.allowed(f.idx) {
				s.retry = append(s.retry, f.idx)
			} else {
				s.given = append(s.given, f.idx)
			}
		}
		s.head++
	}
	if s.head > 4096 && s.head > len(s.fifo)/2 {
		s.fifo = append(s.fifo[:0], s.fifo[s.head:]...)
		s.head = 0
	}
}

// requeue retries the entries that used their tries, where the rule now
// allows more, and decides the others, each once its last SYN has waited
// its whole timeout (a send time that its thread corrected may put that
// later: such an entry is back in the air). It tells whether anything is
// left to send or wait for.
func (s *scan) requeue(seen time.Time) bool {
	given := s.given
	s.given = nil
	to := s.timeout()
	for _, idx := range given {
		if s.state[idx] != esWait {
			continue
		}
		if int(s.tries[idx])-1 < s.allowed(idx) {
			s.retry = append(s.retry, idx)
			continue
		}
		if seen.Sub(s.lastSent(idx)) < to {
			s.fifo = append(s.fifo, inFlight{idx: idx, try: s.tries[idx] - 1})
			continue
		}
		s.state[idx] = esSilent
		if s.droppedSince(idx) {
			s.state[idx] = esDropped
		}
	}
	return len(s.retry) > 0 || s.head < len(s.fifo)
}

// lastSent is when the entry's last SYN left.
func (s *scan) lastSent(idx uint64) time.Time {
	return s.start.Add(time.Duration(s.sent[2*idx+uint64((s.tries[idx]-1)&1)]) * time.Microsecond)
}

// settle waits until every reply that reached our kernel before now has
// been read and taken (see advanceSeen), so that a reply that arrived in
// time but was still queued is not taken for silence. It waits at most a
// second (a receiver that cannot catch up that long is stuck; its drops
// are still counted).
func (s *scan) settle(ctx context.Context) error {
	if err := s.collectAll(ctx); err != nil {
		return err
	}
	now := s.env.Clock.Now()
	deadline := now.Add(time.Second)
	for t0 := now; s.seen.Before(t0) && now.Before(deadline); now = s.env.Clock.Now() {
		s.advanceSeen(now, true)
		if !s.seen.Before(t0) {
			break
		}
		if err := s.waitFor(ctx, 100*time.Microsecond); err != nil {
			return err
		}
	}
	if err := s.drain(); err != nil {
		return err
	}
	return s.receiverErr()
}

// advanceSeen moves s.seen, the time before which every packet our kernel
// accepted for the receiver has been read: a mark notes the kernel's count
// of accepted packets (drops included, less the drops) at a time; once the
// receiver has read that many, seen moves to the mark's time and a new mark
// is taken (at most every millisecond unless force). The answers of what
// was read are in s.hits by then (the receiver counts after it hands them
// on), so a drain after this takes them.
func (s *scan) advanceSeen(now time.Time, force bool) {
	if !s.markAt.IsZero() && s.read.Load() >= s.markP {
		s.seen, s.markAt = s.markAt, time.Time{}
	}
	if s.markAt.IsZero() && (force || now.Sub(s.seen) >= time.Millisecond) {
		st := s.readStats()
		s.markAt, s.markP = now, st.Packets-st.Drops
		if s.read.Load() >= s.markP {
			s.seen, s.markAt = now, time.Time{}
		}
	}
}

// pollDrops reads the kernel's counters at most every 5 ms.
func (s *scan) pollDrops(now time.Time) {
	if now.Sub(s.dropPoll) >= 5*time.Millisecond {
		s.readStats()
	}
}

// readStats reads the kernel's counters and notes when its drop count last
// grew.
func (s *scan) readStats() capture.ScanStats {
	now := s.env.Clock.Now()
	s.dropPoll = now
	st, _ := s.env.Source.Stats()
	if st.Drops > s.ledger.Drops {
		s.lastDrop = now
	}
	s.ledger.Drops = st.Drops
	return st
}

// waitFor waits d while taking answers.
func (s *scan) waitFor(ctx context.Context, d time.Duration) error {
	t := s.env.Clock.After(d)
	for {
		fired, err := s.waitEvent(ctx, t)
		if fired || err != nil {
			return err
		}
	}
}

// waitAnswer waits d, or until answers came or a sender thread is back.
func (s *scan) waitAnswer(ctx context.Context, d time.Duration) error {
	if _, err := s.waitEvent(ctx, s.env.Clock.After(d)); err != nil {
		return err
	}
	return s.drain()
}

// waitEvent waits for one thing: answers (taken), a job back from its
// sender thread (collected), t (nil: never), or the end of ctx.
func (s *scan) waitEvent(ctx context.Context, t <-chan time.Time) (fired bool, err error) {
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case hs := <-s.hits:
		s.takeAll(hs)
	case j := <-s.pool.done:
		if err := s.collect(j); err != nil {
			return false, err
		}
	case <-t:
		fired = true
	}
	return fired, s.receiverErr()
}

// drain takes the answers and the jobs that are back, without blocking.
func (s *scan) drain() error {
	for {
		select {
		case hs := <-s.hits:
			s.takeAll(hs)
		case j := <-s.pool.done:
			if err := s.collect(j); err != nil {
				return err
			}
		default:
			s.report(false)
			return nil
		}
	}
}

func (s *scan) takeAll(hs []hit) {
	for i := range hs {
		s.take(&hs[i])
	}
	s.free <- hs[:0]
}

// take decides an entry from one answer.
func (s *scan) take(h *hit) {
	idx := h.idx
	if int(h.try) >= int(s.tries[idx]) {
		// Our cookie, but for a try not sent yet: the ack is wrong (off by
		// a few, or forged by someone who saw an ISN).
		s.count("bad-ack")
		return
	}
	switch s.state[idx] {
	case esWait:
	default:
		s.ledger.Duplicates++
		return
	}
	var rtt *float64
	tries := int(s.tries[idx])
	if tries-int(h.try) <= 2 { // its slot still holds its send time
		at := uint64(h.at.Sub(s.start).Microseconds())
		if h.at.After(s.start) {
			d := time.Duration(uint32(at)-s.sent[2*idx+uint64(h.try&1)]) * time.Microsecond
			if d < time.Hour {
				v := ms(d)
				rtt = &v
				s.est.sample(d)
				s.stats.add(v)
			}
		}
	}
	s.maxTry = max(s.maxTry, int(h.try))
	s.state[idx] = h.state
	if tries == 1 {
		s.ledger.Answered++
	} else {
		s.ledger.AnsweredRetry++
	}
	s.decided++
	r, host, port := s.locate(idx)
	res := event.Result{Host: r.Name, Addr: s.tally[host].Addr.String(), Port: port, RTTMs: rtt, Sent: tries, Received: 1}
	t := &s.tally[host]
	switch h.state {
	case esOpen:
		res.State, res.Reason = "open", "syn-ack"
		t.Open++
	case esClosed:
		res.State, res.Reason = "closed", "reset"
		t.Closed++
		t.ClosedReason = "reset"
	case esICMP:
		e := craft.ICMPError{V6: h.icmpV6, Type: h.icmpT, Code: h.icmpC}
		res.State, res.Reason, res.From = "filtered", e.Reason(), h.from.String()
		t.Filtered++
		t.ICMP++
	}
	if h.state != esICMP {
		ttl, win := h.ttl, h.window
		res.TTL, res.Window = &ttl, &win
	}
	if h.state != esClosed || s.cfg.Verbose {
		s.emit(res)
	}
}

// refused decides an entry whose SYN this host's output firewall dropped.
func (s *scan) refused(idx uint64) {
	s.state[idx] = esOurFirewall
	s.decided++
	s.ledger.OurFirewall++
	r, host, port := s.locate(idx)
	s.tally[host].Undecided++
	s.emit(event.Result{Host: r.Name, Addr: s.tally[host].Addr.String(), Port: port, State: "undecided", Reason: "our-firewall", Sent: int(s.tries[idx])})
}

func (s *scan) emit(res event.Result) {
	s.out.Results = append(s.out.Results, res)
	if s.env.Emit != nil {
		s.env.Emit(res)
	}
}

func (s *scan) report(force bool) {
	if s.env.Progress == nil {
		return
	}
	now := s.env.Clock.Now()
	if !force && now.Sub(s.progress) < 100*time.Millisecond {
		return
	}
	s.progress = now
	s.env.Progress(s.firstSent, s.decided, s.ledger.Probes)
}

func (s *scan) count(why string) {
	s.mu.Lock()
	s.ignored[why]++
	s.mu.Unlock()
}

func (s *scan) receiverErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rerr
}

// receive reads the source until it is closed, validates every packet by
// its cookie and hands the answers to the scan loop in batches.
func (s *scan) receive() {
	frames := make([]capture.Frame, scanBatch)
	for i := range frames {
		frames[i].Data = make([]byte, 0, 256)
	}
	var w wireReply
	for {
		n, err := s.env.Source.ReadBatch(frames)
		if err != nil {
			if !errors.Is(err, capture.ErrClosed) {
				s.mu.Lock()
				s.rerr = err
				s.mu.Unlock()
			}
			return
		}
		hs := <-s.free
		for i := range n {
			if len(frames[i].Data) == 0 || !parseWire(frames[i].Data, &w) {
				continue
			}
			if h, ok := s.validate(&w, frames[i].Time); ok {
				hs = append(hs, h)
			}
		}
		if len(hs) == 0 {
			s.free <- hs
		} else {
			s.hits <- hs
		}
		s.read.Add(uint64(n))
		if n < len(frames) && s.rxPause > 0 {
			// Let answers gather: one wake-up per packet would cost the
			// CPUs that send (and, on a veth pair, answer) a context
			// switch every packet or two. The kernel's timestamps keep
			// the RTTs exact.
			<-s.env.Clock.After(s.rxPause)
		}
	}
}

// validate checks an answer against the cookie of the 4-tuple it names.
func (s *scan) validate(w *wireReply, at time.Time) (hit, bool) {
	h := hit{at: at, ttl: w.ttl, window: w.window, from: w.from}
	if w.local.Port() != s.cfg.SPort {
		return h, false
	}
	pi := s.portIx[w.remote.Port()]
	host, ok := s.hostIndex(w.remote.Addr())
	if pi < 0 || !ok {
		s.count("not-a-target")
		return h, false
	}
	h.idx = host*s.nports + uint64(pi)
	isn := w.seq
	if !w.icmp {
		if !w.flags.Has(craft.ACK) {
			s.count("no-ack")
			return h, false
		}
		isn = w.ack - 1
	}
	try, ok := s.cookie.Check(w.local, w.remote, isn)
	if !ok {
		if w.icmp {
			s.count("icmp-bad-seq")
		} else {
			s.count("bad-ack")
		}
		return h, false
	}
	h.try = uint8(try)
	switch {
	case w.icmp:
		h.state, h.icmpT, h.icmpC, h.icmpV6 = esICMP, w.icmpType, w.icode, w.icmpV6
	case w.flags.Has(craft.RST):
		h.state = esClosed
	case w.flags.Has(craft.SYN):
		h.state = esOpen
	default:
		s.count("unexpected-flags")
		return h, false
	}
	return h, true
}

func (s *scan) hostIndex(a netip.Addr) (uint64, bool) {
	for i, r := range s.cfg.Ranges {
		if j, ok := r.index(a); ok {
			return s.first[i] + j, true
		}
	}
	return 0, false
}

// unreachable asks once per host that answered nothing why nothing left
// for it ("" when nothing says so).
func (s *scan) unreachable(host uint64) string {
	t := &s.tally[host]
	if s.env.Unreachable == nil || t.Open+t.Closed+t.ICMP > 0 {
		return ""
	}
	if !s.asked[host] {
		if s.asked == nil {
			s.asked = map[uint64]bool{}
		}
		s.asked[host] = true
		t.UnreachableReason, t.Unreachable = s.env.Unreachable(t.Addr)
	}
	return t.Unreachable
}

// finish turns what is left into results, and emits the summary.
func (s *scan) finish(err error) {
	n := uint64(len(s.state))
	for j := uint64(s.cfg.Shard - 1); j < n; j += uint64(s.cfg.Shards) {
		idx := s.perm.at(j)
		st := s.state[idx]
		if st != esSilent && st != esDropped && st != esWait && st != esNone {
			continue
		}
		r, host, port := s.locate(idx)
		res := event.Result{Host: r.Name, Addr: s.tally[host].Addr.String(), Port: port, Sent: int(s.tries[idx])}
		t := &s.tally[host]
		if st == esSilent && s.unreachable(host) != "" {
			st = esNeverLeft
		}
		switch st {
		case esNeverLeft:
			res.State, res.Reason = "undecided", t.UnreachableReason
			s.ledger.NeverLeft++
			t.Undecided++
		case esSilent:
			res.State, res.Reason = "filtered", "no-response"
			s.ledger.Silent++
			t.Filtered++
		case esDropped:
			res.State, res.Reason = "undecided", "kernel-drop"
			s.ledger.KernelDropped++
			t.Undecided++
		default:
			res.State, res.Reason = "undecided", "error"
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				res.Reason = "interrupted"
			}
			s.ledger.Interrupted++
			t.Undecided++
		}
		s.emit(res)
	}
	if d := s.lastFirst.Sub(s.start).Seconds(); d > 0 && s.firstSent > 1 {
		s.ledger.SentPPS = float64(s.firstSent) / d
	}
	for _, t := range s.tally {
		s.ledger.Open += t.Open
		s.ledger.Closed += t.Closed
		s.ledger.Filtered += t.Filtered
		s.ledger.Undecided += t.Undecided
	}
	s.readStats()
	s.report(true)
	s.mu.Lock()
	if len(s.ignored) > 0 {
		s.out.Ignored = s.ignored
	}
	s.mu.Unlock()
	s.out.Hosts, s.out.Ledger, s.out.RTT = s.tally, s.ledger, s.stats.result()
	sent := s.out.Sent
	recv := s.ledger.Answered + s.ledger.AnsweredRetry
	sum := event.Summary{Command: "probe", Host: s.cfg.Ranges[0].Name, Sent: sent, Received: recv,
		RTT: s.out.RTT, Ignored: s.out.Ignored, Open: s.ledger.Open,
		Elapsed: ms(s.env.Clock.Now().Sub(s.start)), Scan: &s.out.Ledger}
	if sent > 0 {
		sum.LossPct = 100 * float64(sent-recv) / float64(sent)
	}
	if s.env.Emit != nil {
		s.env.Emit(sum)
	}
}
