package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
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
	Shard   int           // this machine's part, 1..Shards; 0: the whole scan
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
	// Progress, when set, is told how many probes of the first pass have
	// left and how many are decided, at most ten times a second.
	Progress func(sent, decided, total int)
}

// ScanHost is one host's tally.
type ScanHost struct {
	Addr                              netip.Addr
	Name                              string // the argument it came from
	Open, Closed, Filtered, Undecided int
	ICMP                              int // of Filtered: by an ICMP error (the rest were silent)
	ClosedReason                      string
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

	pacer    *pacer
	est      rttEstimator
	stats    rttStats
	maxTry   int // highest try that was ever answered (nmap's max_successful_tryno)
	ledger   event.ScanLedger
	tally    []ScanHost
	out      ScanOutcome
	hits     chan []hit
	free     chan []hit
	lastSend time.Time
	lastHit  time.Time
	sentPass int
	decided  int
	progress time.Time

	mu      sync.Mutex
	ignored map[string]uint64
	rerr    error
}

// scanBatch is the most packets one system call sends or receives.
const scanBatch = 64

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
	err = s.run(ctx)
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
	s.lastHit = s.start
	s.progress = s.start
	burst := max(scanBatch, int(cfg.Rate/1000))
	s.pacer = newPacer(cfg.Rate, burst, s.start)
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
	i := sort.Search(len(s.first), func(i int) bool { return s.first[i] > host }) - 1
	return &s.cfg.Ranges[i], host, s.cfg.Ports[idx%s.nports]
}

// run sends the passes: the first to every entry, then each retry to the
// entries still silent, as long as nmap's rule allows one more.
func (s *scan) run(ctx context.Context) error {
	for pass := 0; ; pass++ {
		drops0 := s.drops()
		s.ledger.Passes = pass + 1
		passStart := s.env.Clock.Now()
		err := s.sendPass(ctx, pass)
		if pass == 0 {
			if d := s.lastSend.Sub(passStart).Seconds(); d > 0 {
				s.ledger.SentPPS = float64(s.sentPass) / d
			}
		}
		if err != nil {
			return err
		}
		if err := s.waitPass(ctx); err != nil {
			return err
		}
		dropped := s.drops() > drops0
		silent := 0
		for _, st := range s.state {
			if st == esWait {
				silent++
			}
		}
		if silent == 0 {
			return nil
		}
		// nmap allows one try more than the highest that ever got an
		// answer (at least one retry), within --max-retries; replies our
		// own kernel dropped are no evidence, so a pass that lost some is
		// always followed by another.
		allowed := min(s.cfg.Retries, max(1, s.maxTry+1))
		if dropped {
			allowed = s.cfg.Retries
		}
		if pass+1 > allowed {
			for i, st := range s.state {
				if st == esWait {
					s.state[i] = esSilent
					if dropped {
						s.state[i] = esDropped
					}
				}
			}
			return nil
		}
	}
}

func (s *scan) drops() uint64 {
	st, _ := s.env.Source.Stats()
	s.ledger.Drops = st.Drops
	return st.Drops
}

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

func (s *scan) sendPass(ctx context.Context, pass int) error {
	b4, b6 := s.newBatch(s.env.Sender4), s.newBatch(s.env.Sender6)
	n := uint64(len(s.state))
	s.sentPass = 0
	for j := uint64(s.cfg.Shard - 1); j < n; j += uint64(s.cfg.Shards) {
		idx := s.perm.at(j)
		if (pass == 0 && s.state[idx] != esNone) || (pass > 0 && s.state[idx] != esWait) {
			continue
		}
		r, _, port := s.locate(idx)
		dst := r.addr(idx/s.nports - s.first[s.rangeOf(r)])
		b := b4
		if dst.Is6() {
			b = b6
		}
		if err := s.add(b, r, dst, port, idx); err != nil {
			return err
		}
		if len(b.pkts) == scanBatch {
			if err := s.flush(ctx, b); err != nil {
				return err
			}
		}
	}
	for _, b := range []*outBatch{b4, b6} {
		if err := s.flush(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (s *scan) rangeOf(r *ScanRange) int {
	for i := range s.cfg.Ranges {
		if &s.cfg.Ranges[i] == r {
			return i
		}
	}
	return 0
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

// flush sends the batch as the pacer lets it, taking answers in between.
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
		us := uint32(now.Sub(s.start).Microseconds())
		for _, idx := range b.idxs[off : off+k] {
			s.sent[2*idx+uint64(s.tries[idx]&1)] = us
			s.tries[idx]++
			if s.state[idx] == esNone {
				s.state[idx] = esWait
			} else {
				s.ledger.Retransmissions++
			}
		}
		m, err := b.sender.SendBatch(b.pkts[off:off+k], b.dsts[off:off+k])
		s.pacer.take(m)
		s.sentPass += m
		s.out.Sent += m
		s.lastSend = now
		if err != nil {
			// The ones that did not leave are sent again.
			for _, idx := range b.idxs[off+m : off+k] {
				s.tries[idx]--
				if s.tries[idx] == 0 {
					s.state[idx] = esNone
				} else {
					s.ledger.Retransmissions--
				}
			}
			if !isNoBufs(err) {
				return err
			}
			if err := s.waitFor(ctx, 200*time.Microsecond); err != nil {
				return err
			}
		}
		off += m
		s.drain()
	}
	b.pkts, b.dsts, b.idxs = b.pkts[:0], b.dsts[:0], b.idxs[:0]
	return nil
}

// waitFor waits d while taking answers.
func (s *scan) waitFor(ctx context.Context, d time.Duration) error {
	t := s.env.Clock.After(d)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case hs := <-s.hits:
			s.takeAll(hs)
		case <-t:
			return s.receiverErr()
		}
	}
}

// drain takes the answers that are waiting, without blocking.
func (s *scan) drain() {
	for {
		select {
		case hs := <-s.hits:
			s.takeAll(hs)
		default:
			s.report(false)
			return
		}
	}
}

// waitPass waits for the answers to the pass's last probes: the timeout
// after the last send, then until the receiver has been idle for a while,
// so a reply that arrived in time but was still queued is not lost.
func (s *scan) waitPass(ctx context.Context) error {
	to := s.cfg.Timeout
	if to == 0 {
		to = s.est.timeout()
	}
	if d := s.lastSend.Add(to).Sub(s.env.Clock.Now()); d > 0 {
		if err := s.waitFor(ctx, d); err != nil {
			return err
		}
	}
	const quiet = 20 * time.Millisecond
	for s.env.Clock.Now().Sub(s.lastHit) < quiet {
		if err := s.waitFor(ctx, quiet); err != nil {
			return err
		}
	}
	return nil
}

func (s *scan) takeAll(hs []hit) {
	for i := range hs {
		s.take(&hs[i])
	}
	s.lastHit = s.env.Clock.Now()
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
	s.env.Progress(s.sentPass, s.decided, s.ledger.Probes)
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
			continue
		}
		s.hits <- hs
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
		switch st {
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
	for _, t := range s.tally {
		s.ledger.Open += t.Open
		s.ledger.Closed += t.Closed
		s.ledger.Filtered += t.Filtered
		s.ledger.Undecided += t.Undecided
	}
	s.drops()
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
