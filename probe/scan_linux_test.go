package probe

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestScanOurFirewall: a SYN that our own output firewall refuses (EPERM)
// leaves its port undecided (our-firewall), and the scan goes on with the
// SYNs after it in the same batch.
func TestScanOurFirewall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := scanTestConfig(portRange(1, 200)...)
		cfg.Timeout = 50 * time.Millisecond
		out, peer, _, err := runFake(t, t.Context(), cfg, func(p *fakePeer) {
			p.refuse = map[uint16]bool{50: true, 51: true, 199: true}
		})
		if err != nil {
			t.Fatal(err)
		}
		l := out.Ledger
		if l.OurFirewall != 3 || l.Closed != 197 || l.Undecided != 3 {
			t.Errorf("ledger %+v: want 3 refused, 197 closed", l)
		}
		for _, p := range []uint16{50, 51, 199} {
			if n := peer.tries[netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), p)]; n != 0 {
				t.Errorf("port %d reached the peer %d times", p, n)
			}
		}
		for _, r := range out.Results {
			if r.State != "undecided" || r.Reason != "our-firewall" {
				t.Errorf("%d: %s %s", r.Port, r.State, r.Reason)
			}
		}
		checkLedger(t, l)
	})
}
