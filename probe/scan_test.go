package probe

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
)

// fakeSource delivers the frames the fake peer puts on it.
type fakeSource struct {
	c      chan capture.Frame
	closed chan struct{}
	once   sync.Once
	drops  uint64 // added to the counter at every Stats
	total  uint64
	queued atomic.Uint64 // frames put, as PACKET_STATISTICS counts them
	hold   time.Duration // how long a read takes
}

// put queues one frame for the scan's receiver.
func (s *fakeSource) put(f capture.Frame) {
	s.queued.Add(1)
	s.c <- f
}

func newFakeSource() *fakeSource {
	return &fakeSource{c: make(chan capture.Frame, 1<<17), closed: make(chan struct{})}
}

func (s *fakeSource) ReadBatch(frames []capture.Frame) (int, error) {
	n := 0
	put := func(f capture.Frame) {
		frames[n].Data = append(frames[n].Data[:0], f.Data...)
		frames[n].Time = f.Time
		n++
	}
	select {
	case f := <-s.c:
		put(f)
	case <-s.closed:
		return 0, capture.ErrClosed
	}
	if s.hold > 0 {
		time.Sleep(s.hold) // a receiver the CPU was taken from: the rest waits in the "kernel"
	}
	for n < len(frames) {
		select {
		case f := <-s.c:
			put(f)
		default:
			return n, nil
		}
	}
	return n, nil
}

func (s *fakeSource) Stats() (capture.ScanStats, error) {
	s.total += s.drops
	// Packets counts drops too, as the kernel's does.
	return capture.ScanStats{Packets: s.queued.Load() + s.total, Drops: s.total}, nil
}
func (s *fakeSource) Close() error { s.once.Do(func() { close(s.closed) }); return nil }

// sentProbe is one SYN as the fake peer saw it.
type sentProbe struct {
	at   time.Time
	dst  netip.AddrPort
	src  netip.AddrPort
	seq  uint32
	try  int // how many SYNs to this port came before
	pkt  []byte
	wire []byte
}

// fakePeer answers the scan's SYNs: open ports with SYN-ACK, silent ones
// not at all, the rest with RST; answer may change or delay any reply.
type fakePeer struct {
	t      *testing.T
	src    *fakeSource
	mu     sync.Mutex
	sent   []sentProbe
	tries  map[netip.AddrPort]int
	open   map[uint16]bool
	silent map[uint16]bool
	// refuse: the ports whose SYN the "kernel" refuses with EPERM (an
	// output firewall).
	refuse map[uint16]bool
	// reply, when set, may rewrite the reply's ack (return it) or drop it
	// (ok false), and delay it.
	reply func(p sentProbe) (ack uint32, delay time.Duration, ok bool)
}

func newFakePeer(t *testing.T, src *fakeSource) *fakePeer {
	return &fakePeer{t: t, src: src, tries: map[netip.AddrPort]int{}, open: map[uint16]bool{}, silent: map[uint16]bool{}}
}

func (p *fakePeer) SendBatch(pkts [][]byte, dsts []netip.Addr) (int, error) {
	now := time.Now()
	for i, b := range pkts {
		pkt, err := craft.Parse(b)
		if err != nil || pkt.Kind != craft.KindTCP {
			p.t.Errorf("the scan sent something that is not TCP: %v", err)
			continue
		}
		seg := pkt.Seg
		if p.refuse[seg.Dst.Port()] {
			return i, syscall.EPERM
		}
		p.mu.Lock()
		sp := sentProbe{at: now, dst: seg.Dst, src: seg.Src, seq: uint32(seg.Seq), try: p.tries[seg.Dst]}
		p.tries[seg.Dst]++
		p.sent = append(p.sent, sp)
		p.mu.Unlock()
		if p.silent[seg.Dst.Port()] {
			continue
		}
		ack, delay := uint32(seg.Seq)+1, time.Duration(0)
		if p.reply != nil {
			var ok bool
			if ack, delay, ok = p.reply(sp); !ok {
				continue
			}
		}
		flags := craft.RST | craft.ACK
		if p.open[seg.Dst.Port()] {
			flags = craft.SYN | craft.ACK
		}
		r := craft.Segment{Src: seg.Dst, Dst: seg.Src, Seq: 7, Ack: craft.Seq(ack), Flags: flags, Window: 100, TTL: 61}
		wire, err := r.Marshal()
		if err != nil {
			p.t.Fatal(err)
		}
		if delay == 0 {
			p.src.put(capture.Frame{Data: wire, Time: time.Now()})
			continue
		}
		go func() {
			time.Sleep(delay)
			p.src.put(capture.Frame{Data: wire, Time: time.Now()})
		}()
	}
	return len(pkts), nil
}

func (p *fakePeer) Close() error { return nil }

func scanTestConfig(ports ...uint16) ScanConfig {
	return ScanConfig{
		Ranges: []ScanRange{{Name: "peer", First: netip.MustParseAddr("198.51.100.2"), N: 1, Src: netip.MustParseAddr("198.51.100.1")}},
		Ports:  ports, SPort: 40000, Rate: 100000, Retries: 10, Window: 1024, TTL: 64,
	}
}

func portRange(lo, hi int) []uint16 {
	var ps []uint16
	for p := lo; p <= hi; p++ {
		ps = append(ps, uint16(p))
	}
	return ps
}

// runFake runs a scan against the fake peer and returns its outcome and
// the emitted events.
func runFake(t *testing.T, ctx context.Context, cfg ScanConfig, setup func(*fakePeer)) (ScanOutcome, *fakePeer, []event.Event, error) {
	return runFakeSource(t, ctx, cfg, newFakeSource(), setup)
}

func runFakeSource(t *testing.T, ctx context.Context, cfg ScanConfig, src *fakeSource, setup func(*fakePeer)) (ScanOutcome, *fakePeer, []event.Event, error) {
	return runFakeEnv(t, ctx, cfg, src, setup, nil)
}

func runFakeEnv(t *testing.T, ctx context.Context, cfg ScanConfig, src *fakeSource, setup func(*fakePeer), unreachable func(netip.Addr) (string, string)) (ScanOutcome, *fakePeer, []event.Event, error) {
	peer := newFakePeer(t, src)
	if setup != nil {
		setup(peer)
	}
	var evs []event.Event
	env := ScanEnv{Sender4: peer, Sender6: peer, Source: src, Clock: RealClock{}, Key: [16]byte{9},
		Emit: func(e event.Event) { evs = append(evs, e) }, Unreachable: unreachable}
	out, err := RunScan(ctx, cfg, env)
	return out, peer, evs, err
}

func checkLedger(t *testing.T, l event.ScanLedger) {
	t.Helper()
	if sum := l.Answered + l.AnsweredRetry + l.Silent + l.KernelDropped + l.NeverLeft + l.OurFirewall + l.Interrupted; sum != l.Probes {
		t.Errorf("ledger: %d answered + %d after retry + %d silent + %d dropped + %d never left + %d refused + %d interrupted = %d, want %d probes",
			l.Answered, l.AnsweredRetry, l.Silent, l.KernelDropped, l.NeverLeft, l.OurFirewall, l.Interrupted, sum, l.Probes)
	}
	if sum := l.Open + l.Closed + l.Filtered + l.Undecided; sum != l.Probes {
		t.Errorf("ledger: %d open + %d closed + %d filtered + %d undecided = %d, want %d", l.Open, l.Closed, l.Filtered, l.Undecided, sum, l.Probes)
	}
}

// TestScanPacer: at --rate 10000 the first second carries 10,000 SYNs
// within ±5%, on the fake clock of a synctest bubble.
func TestScanPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 30000)...)
		cfg.Rate = 10000
		start := time.Now()
		out, peer, _, err := runFake(t, t.Context(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, window := range []struct{ from, to time.Duration }{{0, time.Second}, {time.Second, 2 * time.Second}, {500 * time.Millisecond, 1500 * time.Millisecond}} {
			n := 0
			for _, p := range peer.sent {
				if d := p.at.Sub(start); d >= window.from && d < window.to {
					n++
				}
			}
			if n < 9500 || n > 10500 {
				t.Errorf("%v-%v: %d SYNs, want 10000 ±5%%", window.from, window.to, n)
			}
		}
		if out.Ledger.Closed != 30000 {
			t.Errorf("closed = %d, want 30000", out.Ledger.Closed)
		}
		checkLedger(t, out.Ledger)
	})
}

// TestScanWrongAckIgnored: an RST whose ack is not our cookie + 1 decides
// nothing and is counted; the retry's right answer decides the port.
func TestScanWrongAckIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 100)...)
		out, _, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) {
			p.reply = func(sp sentProbe) (uint32, time.Duration, bool) {
				if sp.dst.Port()%10 == 0 && sp.try == 0 {
					return sp.seq + 2, 0, true // off by one
				}
				if sp.dst.Port()%10 == 5 && sp.try == 0 {
					return sp.seq + 1 + 1<<20, 0, true // another cookie's bits
				}
				return sp.seq + 1, 0, true
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Ignored["bad-ack"]; got != 20 {
			t.Errorf("ignored bad-ack = %d, want 20 (%v)", got, out.Ignored)
		}
		if out.Ledger.Closed != 100 || out.Ledger.AnsweredRetry != 20 || out.Ledger.Answered != 80 {
			t.Errorf("closed %d, answered %d + %d after retry; want 100, 80 + 20", out.Ledger.Closed, out.Ledger.Answered, out.Ledger.AnsweredRetry)
		}
		checkLedger(t, out.Ledger)
	})
}

// TestScanKarn: a reply to the first SYN that arrives after the
// retransmission left is timed from the first SYN (not from the
// retransmission, which would give 50 ms, nor negative), and a late answer
// to a decided port is a duplicate.
func TestScanKarn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(7, 81)
		cfg.Timeout = 100 * time.Millisecond
		out, peer, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) {
			p.reply = func(sp sentProbe) (uint32, time.Duration, bool) {
				switch {
				case sp.dst.Port() == 81 && sp.try == 0:
					return sp.seq + 1, 150 * time.Millisecond, true
				case sp.dst.Port() == 81:
					return 0, 0, false
				case sp.try == 0:
					return sp.seq + 1, 120 * time.Millisecond, true // a late copy
				}
				return sp.seq + 1, time.Millisecond, true
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		var first, second time.Time
		for _, p := range peer.sent {
			if p.dst.Port() == 81 {
				if p.try == 0 {
					first = p.at
				} else {
					second = p.at
				}
			}
		}
		if second.IsZero() || second.Sub(first) < 100*time.Millisecond {
			t.Fatalf("port 81 was not retransmitted after the timeout (first %v, second %v)", first, second)
		}
		var r81 *event.Result
		for i, r := range out.Results {
			if r.RTTMs != nil && *r.RTTMs < 0 {
				t.Errorf("port %d: negative RTT %v", r.Port, *r.RTTMs)
			}
			if r.Port == 81 {
				r81 = &out.Results[i]
			}
		}
		cfg.Verbose = true
		if r81 != nil {
			t.Fatalf("closed port 81 was listed without -v: %+v", r81)
		}
		if out.RTT == nil || out.RTT.Max < 149 || out.RTT.Max > 151 {
			t.Errorf("rtt stats %+v: want the late answer timed from the first SYN, 150 ms", out.RTT)
		}
		if out.Ledger.Duplicates != 1 || out.Ledger.AnsweredRetry != 2 {
			t.Errorf("duplicates %d, answered after retry %d; want 1 (port 7's late copy) and 2", out.Ledger.Duplicates, out.Ledger.AnsweredRetry)
		}
		checkLedger(t, out.Ledger)
	})
}

// TestScanVerboseRTT: with -v every port is emitted with its own RTT.
func TestScanVerboseRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(7, 81)
		cfg.Verbose, cfg.Timeout = true, 100*time.Millisecond
		out, _, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) {
			p.open[7] = true
			p.reply = func(sp sentProbe) (uint32, time.Duration, bool) {
				if sp.dst.Port() == 81 {
					return sp.seq + 1, 150 * time.Millisecond, sp.try == 0
				}
				return sp.seq + 1, 2 * time.Millisecond, true
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint16]struct {
			state string
			rtt   float64
			sent  int
		}{7: {"open", 2, 1}, 81: {"closed", 150, 2}}
		if len(out.Results) != 2 {
			t.Fatalf("results %+v", out.Results)
		}
		for _, r := range out.Results {
			w := want[r.Port]
			if r.State != w.state || r.RTTMs == nil || *r.RTTMs < w.rtt-0.01 || *r.RTTMs > w.rtt+0.01 || r.Sent != w.sent {
				t.Errorf("port %d: %s rtt %v sent %d, want %s %v ms sent %d", r.Port, r.State, deref(r.RTTMs), r.Sent, w.state, w.rtt, w.sent)
			}
		}
	})
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestScanSilentAndRetries: silent ports are retried as nmap does (one try
// more than the highest that ever got an answer, at least one) and end
// filtered; a port that answers only its third SYN is found because another
// answered its second.
func TestScanSilentAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 50)...)
		cfg.Timeout = 50 * time.Millisecond
		out, peer, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) {
			p.silent[20] = true
			p.reply = func(sp sentProbe) (uint32, time.Duration, bool) {
				switch sp.dst.Port() {
				case 30:
					return sp.seq + 1, 0, sp.try >= 2
				case 31:
					return sp.seq + 1, 0, sp.try >= 1
				}
				return sp.seq + 1, 0, true
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if out.Ledger.Closed != 49 || out.Ledger.Silent != 1 || out.Ledger.Filtered != 1 || out.Ledger.AnsweredRetry != 2 {
			t.Errorf("ledger %+v: want 49 closed (2 after retries) and port 20 silent", out.Ledger)
		}
		// Port 31 answers try 1, which allows try 2; port 30 answers try 2,
		// which allows try 3, and no more: port 20 had four SYNs.
		if n := peer.tries[netip.MustParseAddrPort("198.51.100.2:20")]; n != 4 {
			t.Errorf("silent port 20 got %d SYNs, want 4 (answered up to try 2, nmap allows one more)", n)
		}
		checkLedger(t, out.Ledger)
	})
}

// TestScanInterrupted: a cancelled scan reports what it has and the rest
// as undecided, and the ledger still adds up.
func TestScanInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 5000)...)
		cfg.Rate = 1000
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		out, _, evs, err := runFake(t, ctx, cfg, nil)
		if err == nil {
			t.Fatal("no error from an interrupted scan")
		}
		if out.Ledger.Interrupted < 2500 || out.Ledger.Closed < 1500 {
			t.Errorf("ledger %+v: want about 2000 closed, the rest interrupted", out.Ledger)
		}
		checkLedger(t, out.Ledger)
		if _, ok := evs[len(evs)-1].(event.Summary); !ok {
			t.Errorf("last event %T, want the summary", evs[len(evs)-1])
		}
	})
}

// TestScanShards: the shards 1/4..4/4 send disjoint parts whose union is
// the whole scan, each SYN once.
func TestScanShards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 1000)...)
		cfg.Ranges[0].N = 3
		seen := map[netip.AddrPort]int{}
		for i := 1; i <= 4; i++ {
			cfg.Shard, cfg.Shards = i, 4
			out, peer, _, err := runFake(t, t.Context(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range peer.sent {
				seen[p.dst]++
			}
			if out.Ledger.Probes < 749 || out.Ledger.Probes > 751 || out.Ledger.Closed != out.Ledger.Probes {
				t.Errorf("shard %d/4: %+v", i, out.Ledger)
			}
		}
		if len(seen) != 3000 {
			t.Errorf("the shards probed %d (host, port) pairs, want 3000", len(seen))
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("%v probed %d times", k, n)
			}
		}
	})
}

func TestPermutationIsOne(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 10, 1000, 65535, 65536, 16 * 65535} {
		p := newPermutation(n)
		seen := make([]bool, n)
		for j := range n {
			v := p.at(j)
			if v >= n || seen[v] {
				t.Fatalf("n=%d: position %d gives %d again or out of range", n, j, v)
			}
			seen[v] = true
		}
	}
}

func TestParseScanTarget(t *testing.T) {
	for _, tc := range []struct {
		in, first string
		n         uint64
		err       bool
	}{
		{"198.51.100.2", "198.51.100.2", 1, false},
		{"198.51.100.0/28", "198.51.100.1", 14, false},
		{"198.51.100.2/31", "198.51.100.2", 2, false},
		{"198.51.100.2-17", "198.51.100.2", 16, false},
		{"198.51.100.2-198.51.100.17", "198.51.100.2", 16, false},
		{"2001:db8::2-2001:db8::11", "2001:db8::2", 16, false},
		{"2001:db8::/124", "2001:db8::", 16, false},
		{"2001:db8::/64", "", 0, true},
		{"10.0.0.0/8", "", 0, true},
		{"0.0.0.0", "", 0, true},
		{"::", "", 0, true},
		{"224.0.0.1", "", 0, true},
		{"ff02::1", "", 0, true},
		{"255.255.255.255", "", 0, true},
		{"198.51.100.17-2", "", 0, true},
		{"198.51.100.2-300", "", 0, true},
	} {
		r, err := ParseScanTarget(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (r.First.String() != tc.first || r.N != tc.n) {
			t.Errorf("%s: %v ×%d, want %s ×%d", tc.in, r.First, r.N, tc.first, tc.n)
		}
		if err == nil {
			if i, ok := r.index(r.addr(r.N - 1)); !ok || i != r.N-1 {
				t.Errorf("%s: index(last) = %d %v", tc.in, i, ok)
			}
		}
	}
}

// TestSynTemplate: the patched SYN parses back with the right numbers and
// checksums (craft.Parse does not check them, so they are checked here).
func TestSynTemplate(t *testing.T) {
	for _, src := range []string{"198.51.100.1", "2001:db8::1"} {
		s := netip.MustParseAddr(src)
		dst := netip.MustParseAddr("198.51.100.9")
		if s.Is6() {
			dst = netip.MustParseAddr("2001:db8::9")
		}
		tm, err := newSynTemplate(s, 40000, 1024, 64, craft.SYNOptionSet{MSS: 1460, WScale: -1})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(tm.pkt))
		tm.fill(buf, dst, 443, 0xdeadbeef, 77)
		want := craft.Segment{Src: netip.AddrPortFrom(s, 40000), Dst: netip.AddrPortFrom(dst, 443), Seq: 0xdeadbeef,
			Flags: craft.SYN, Window: 1024, TTL: 64, Options: craft.SYNOptions(craft.SYNOptionSet{MSS: 1460, WScale: -1})}
		if !s.Is6() {
			want.ID = 77
		}
		wb, err := want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if s.Is4() {
			// craft sets DF and its own ID; compare the TCP part and the
			// IPv4 checksum separately.
			if fold(sum(buf[:20], 0)) != 0xffff {
				t.Errorf("IPv4 header checksum wrong: % x", buf[:20])
			}
			buf, wb = buf[20:], wb[20:]
		}
		if fmt.Sprintf("% x", buf) != fmt.Sprintf("% x", wb) {
			t.Errorf("%s: template SYN\n% x\nwant\n% x", src, buf, wb)
		}
		_ = binary.BigEndian
	}
}

// TestScanKernelDrops: a port still silent while our kernel dropped
// replies is undecided (kernel-drop), never filtered, after every retry
// allowed was used.
func TestScanKernelDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 20)...)
		cfg.Timeout, cfg.Retries = 10*time.Millisecond, 3
		src := newFakeSource()
		src.drops = 1
		out, peer, _, err := runFakeSource(t, t.Context(), cfg, src, func(p *fakePeer) { p.silent[5] = true })
		if err != nil {
			t.Fatal(err)
		}
		if out.Ledger.KernelDropped != 1 || out.Ledger.Filtered != 0 || out.Ledger.Undecided != 1 {
			t.Errorf("ledger %+v: want port 5 undecided (kernel-drop)", out.Ledger)
		}
		if n := peer.tries[netip.MustParseAddrPort("198.51.100.2:5")]; n != 4 {
			t.Errorf("port 5 got %d SYNs, want 4 (every retry, since replies were dropped)", n)
		}
		for _, r := range out.Results {
			if r.Port == 5 && (r.State != "undecided" || r.Reason != "kernel-drop") {
				t.Errorf("port 5: %s %s", r.State, r.Reason)
			}
		}
		checkLedger(t, out.Ledger)
	})
}

// TestScanRetryDuringFirstSends: a silent port is sent again once its own
// timeout ran out, while the first SYNs of the other ports still go out
// (nmap's per-probe timeouts, not a second pass after the first).
func TestScanRetryDuringFirstSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 2000)...)
		cfg.Rate, cfg.Timeout = 1000, 100*time.Millisecond
		start := time.Now()
		out, peer, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) { p.silent[5] = true })
		if err != nil {
			t.Fatal(err)
		}
		var first5, retry5, lastFirst time.Time
		for _, p := range peer.sent {
			switch {
			case p.dst.Port() == 5 && p.try == 0:
				first5 = p.at
			case p.dst.Port() == 5 && p.try == 1:
				retry5 = p.at
			case p.try == 0 && p.at.After(lastFirst):
				lastFirst = p.at
			}
		}
		if retry5.IsZero() || !retry5.Before(lastFirst) || retry5.Sub(first5) > 150*time.Millisecond {
			t.Errorf("port 5: first SYN at %v, retransmission at %v; the last first SYN at %v",
				first5.Sub(start), retry5.Sub(start), lastFirst.Sub(start))
		}
		if out.Ledger.Silent != 1 || out.Ledger.Closed != 1999 {
			t.Errorf("ledger %+v", out.Ledger)
		}
		checkLedger(t, out.Ledger)
	})
}

// TestScanNoNeighbour: the silent ports of a host whose next hop never
// answered ARP are undecided (no-neighbour), not filtered; a host that
// answered is not asked about, and a silent port of it stays filtered.
func TestScanNoNeighbour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 10)...)
		cfg.Ranges[0].N = 2 // .2 answers, .3 is absent
		cfg.Timeout = 50 * time.Millisecond
		asked := map[netip.Addr]int{}
		out, _, _, err := runFakeEnv(t, t.Context(), cfg, newFakeSource(), func(p *fakePeer) {
			p.silent[4] = true
			p.reply = func(sp sentProbe) (uint32, time.Duration, bool) {
				return sp.seq + 1, 0, sp.dst.Addr() == netip.MustParseAddr("198.51.100.2")
			}
		}, func(a netip.Addr) (string, string) {
			asked[a]++
			return "no-neighbour", "no ARP answer"
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(asked) != 1 || asked[netip.MustParseAddr("198.51.100.3")] != 1 {
			t.Errorf("asked about %v, want 198.51.100.3 once", asked)
		}
		l := out.Ledger
		if l.NeverLeft != 10 || l.Silent != 1 || l.Closed != 9 || l.Undecided != 10 {
			t.Errorf("ledger %+v: want .3's 10 ports undecided, .2's port 4 silent", l)
		}
		for _, r := range out.Results {
			if r.Addr == "198.51.100.3" && (r.State != "undecided" || r.Reason != "no-neighbour") {
				t.Errorf("%s:%d %s %s", r.Addr, r.Port, r.State, r.Reason)
			}
		}
		checkLedger(t, l)
	})
}
