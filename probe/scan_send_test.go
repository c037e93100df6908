package probe

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestScanSenderThreads: two sender threads send every SYN once, at the
// rate (±5 % in each 50 ms), a refused SYN leaves its port undecided and
// the others go on, and the answers are exact.
func TestScanSenderThreads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 20000)...)
		cfg.Rate, cfg.Senders, cfg.Timeout = 100000, 2, 50*time.Millisecond
		start := time.Now()
		out, peer, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) {
			p.open[80], p.silent[82] = true, true
			p.refuse = map[uint16]bool{83: true, 19999: true}
		})
		if err != nil {
			t.Fatal(err)
		}
		l := out.Ledger
		if l.Open != 1 || l.Closed != 19996 || l.Filtered != 1 || l.OurFirewall != 2 || l.Retransmissions != 1 {
			t.Errorf("ledger %+v: want 80 open, 82 filtered (one retransmission), 83 and 19999 refused, the rest closed", l)
		}
		for p := uint16(1); p <= 20000; p++ {
			want := 1
			switch p {
			case 82:
				want = 2
			case 83, 19999:
				want = 0
			}
			if n := peer.tries[netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), p)]; n != want {
				t.Errorf("port %d reached the peer %d times, want %d", p, n, want)
			}
		}
		for from := time.Duration(0); from < 200*time.Millisecond; from += 50 * time.Millisecond {
			n := 0
			for _, p := range peer.sent {
				if d := p.at.Sub(start); d >= from && d < from+50*time.Millisecond && p.try == 0 {
					n++
				}
			}
			if n < 4750 || n > 5250 {
				t.Errorf("%v-%v: %d first SYNs, want 5000 ±5%%", from, from+50*time.Millisecond, n)
			}
		}
		checkLedger(t, l)
	})
}

// TestScanEndsWhenDecided: a scan whose ports all answered stops as soon
// as the last answer is taken, not a timeout after its last SYN.
func TestScanEndsWhenDecided(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 2000)...)
		cfg.Timeout = time.Second
		start := time.Now()
		out, _, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) {
			p.reply = func(sp sentProbe) (uint32, time.Duration, bool) { return sp.seq + 1, time.Millisecond, true }
		})
		if err != nil {
			t.Fatal(err)
		}
		// 2000 SYNs at 100,000 a second take 20 ms, the last answer 1 ms more.
		if d := time.Since(start); d > 30*time.Millisecond {
			t.Errorf("the scan took %v, want about 21 ms", d)
		}
		if out.Ledger.Closed != 2000 {
			t.Errorf("ledger %+v", out.Ledger)
		}
	})
}

// TestScanUnreadReplyIsNoTimeout: answers that reached our "kernel" in time
// but that a starved receiver reads only 300 ms later (three timeouts) make
// no probe time out: nothing is sent twice and every port is decided by its
// first SYN.
func TestScanUnreadReplyIsNoTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 3000)...)
		cfg.Timeout = 100 * time.Millisecond
		src := newFakeSource()
		src.hold = 300 * time.Millisecond
		out, _, _, err := runFakeSource(t, t.Context(), cfg, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		l := out.Ledger
		if l.Retransmissions != 0 || l.Answered != 3000 || l.Closed != 3000 {
			t.Errorf("ledger %+v: want 3000 closed at the first SYN, no retransmission", l)
		}
		checkLedger(t, l)
	})
}
