package probe_test

import (
	"sync/atomic"
	"testing"
	"time"

	"tcpshake/craft"
	"tcpshake/internal/peertest"
)

// TestRoundsKeepTheirInterval: with a silent port, -c 5 -i 1ms still sends
// its rounds 1 ms apart (they took one timeout each), and the silent
// port's probes each wait their own timeout.
func TestRoundsKeepTheirInterval(t *testing.T) {
	const count, interval, timeout = 5, time.Millisecond, 200 * time.Millisecond
	peer := peertest.New(map[uint16]peertest.Script{7: {Answer: peertest.Open, RTT: rtt}, 82: {Answer: peertest.Silent}})
	peer.Now = time.Now
	rec := &recorder{}
	f := newFixture(t, peer, rec)
	f.env.Now = time.Now
	var n atomic.Uint32
	f.env.Rand = func() uint32 { return 1000 + 7919*n.Add(1) } // a new ISN per probe
	cfg := config(false, craft.SYN, 7, 82)
	cfg.Count, cfg.Interval, cfg.Timeout, cfg.Retries = count, interval, timeout, 1
	start := time.Now()
	out := run(t, f, cfg)
	elapsed := time.Since(start)
	var syn7, syn82 []time.Time
	for _, r := range peer.Received() {
		if r.Seg.Flags == craft.SYN {
			switch r.Seg.Dst.Port() {
			case 7:
				syn7 = append(syn7, r.Time)
			case 82:
				syn82 = append(syn82, r.Time)
			}
		}
	}
	if len(syn7) != count || len(syn82) != 2*count {
		t.Fatalf("SYNs to 7: %d, to 82: %d; want %d and %d (one retransmission each)", len(syn7), len(syn82), count, 2*count)
	}
	if span := syn7[count-1].Sub(syn7[0]); span > 100*time.Millisecond {
		t.Errorf("the %d rounds to port 7 took %v; -i 1ms wants about %v", count, span, (count-1)*interval)
	}
	// Each silent probe waits 200 ms twice; the rounds overlap, so the
	// run takes about 400 ms, not 5 × 400.
	if elapsed > 1500*time.Millisecond {
		t.Errorf("the run took %v; the rounds did not overlap", elapsed)
	}
	for _, r := range out.Results {
		if r.Port == 82 && (r.State != "filtered" || r.Sent != 2*count) {
			t.Errorf("port 82: %s, %d sent", r.State, r.Sent)
		}
		if r.Port == 7 && (r.State != "open" || r.Received != count) {
			t.Errorf("port 7: %s, %d received", r.State, r.Received)
		}
	}
}
