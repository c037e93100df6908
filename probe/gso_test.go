package probe_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/internal/tcppeer"
	"tcpshake/probe"
)

// segmenter hands large segments to the scripted peer whole, as veth does;
// fail makes every SendGSO fail.
type segmenter struct {
	peer  *tcppeer.Peer
	fail  bool
	sizes []int // payload lengths handed over
	mss   []int
}

func (g *segmenter) SendGSO(pkt []byte, mss int) error {
	if g.fail {
		return errors.New("no such device")
	}
	p, err := craft.Parse(pkt)
	if err != nil {
		return err
	}
	g.sizes = append(g.sizes, len(p.Seg.Payload))
	g.mss = append(g.mss, mss)
	return g.peer.Send(pkt, p.Seg.Dst.Addr())
}

// runGSO sends data through a session whose environment offers gso (nil:
// none), and returns the outcome and the lengths of the data steps we sent.
func runGSO(t *testing.T, cfg probe.SessionConfig, data []byte, gso func(*tcppeer.Peer) (probe.Segmenter, error)) (sessOutcome, []int) {
	t.Helper()
	peer := tcppeer.New()
	out := runSession(t, peer, cfg, handshakeScript(string(data), probe.CloseFIN), nil, func(env *probe.SessionEnv) {
		if gso != nil {
			env.GSO = func() (probe.Segmenter, error) { return gso(peer) }
		}
	})
	var sizes []int
	for _, st := range out.steps {
		if st.Direction == "sent" && st.Len > 0 {
			sizes = append(sizes, st.Len)
		}
	}
	return out, sizes
}

func notes(steps []event.Step) string {
	var b strings.Builder
	for _, st := range steps {
		if st.Direction == "note" {
			b.WriteString(strings.Join(st.Explain, "; ") + "\n")
		}
	}
	return b.String()
}

// TestSessionGSO: with a segmenter, a transfer goes in segments of many MSS
// (whole MSS while more is to come), each one step and one write, and the
// peer gets every byte in order; without one, or with --no-gso, or when it
// fails (then the segment is cut here), every segment on the wire is at
// most one MSS and the transfer is just as exact.
func TestSessionGSO(t *testing.T) {
	const mss = 1460
	data := make([]byte, 300_000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	check := func(t *testing.T, got sessOutcome) {
		t.Helper()
		if got.err != nil {
			t.Fatalf("session: %v", got.err)
		}
		if !bytes.Equal(got.peerData, data) || !bytes.Equal(got.received, data) {
			t.Fatalf("the peer got %d bytes, we got %d back; want the %d sent, byte for byte", len(got.peerData), len(got.received), len(data))
		}
	}
	maxWire := func(got sessOutcome) int {
		n := 0
		for _, r := range got.records {
			n = max(n, len(r.Seg.Payload))
		}
		return n
	}
	t.Run("large segments", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var g *segmenter
			got, sizes := runGSO(t, sessConfig(), data, func(p *tcppeer.Peer) (probe.Segmenter, error) {
				g = &segmenter{peer: p}
				return g, nil
			})
			check(t, got)
			if g == nil || len(g.sizes) == 0 {
				t.Fatalf("no large segment was handed to the segmenter")
			}
			if len(sizes) > len(data)/(4*mss) {
				t.Errorf("%d data steps for %d bytes, want far fewer than one per MSS (%d)", len(sizes), len(data), len(data)/mss)
			}
			for i, n := range sizes[:len(sizes)-1] {
				if n%mss != 0 {
					t.Errorf("step %d carries %d bytes: not whole segments of %d while more was to come", i, n, mss)
				}
			}
			for i, m := range g.mss {
				if m != mss {
					t.Errorf("large segment %d cut at %d, want the MSS %d", i, m, mss)
				}
			}
			if maxWire(got) <= mss || maxWire(got) > 0xffff {
				t.Errorf("largest segment %d bytes, want more than one MSS and within an IP packet", maxWire(got))
			}
			if !strings.Contains(notes(got.steps), "GSO") {
				t.Errorf("the large segments are not explained:\n%s", notes(got.steps))
			}
		})
	})
	for _, tc := range []struct {
		name  string
		cfg   func(*probe.SessionConfig)
		gso   func(*tcppeer.Peer) (probe.Segmenter, error)
		noted string
	}{
		{name: "no segmenter"},
		{name: "no-gso", cfg: func(c *probe.SessionConfig) { c.NoGSO = true },
			gso: func(p *tcppeer.Peer) (probe.Segmenter, error) { return nil, errors.New("must not be opened") }},
		{name: "unavailable", gso: func(p *tcppeer.Peer) (probe.Segmenter, error) { return nil, errors.New("not Ethernet") },
			noted: "not available here (not Ethernet)"},
		{name: "failing", gso: func(p *tcppeer.Peer) (probe.Segmenter, error) { return &segmenter{peer: p, fail: true}, nil },
			noted: "large segments (GSO) failed (no such device)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := sessConfig()
				if tc.cfg != nil {
					tc.cfg(&cfg)
				}
				got, _ := runGSO(t, cfg, data, tc.gso)
				check(t, got)
				if n := maxWire(got); n > mss {
					t.Errorf("a segment of %d bytes reached the wire, want at most the MSS %d", n, mss)
				}
				if tc.noted != "" && !strings.Contains(notes(got.steps), tc.noted) {
					t.Errorf("notes do not say %q:\n%s", tc.noted, notes(got.steps))
				}
				if tc.noted == "" && strings.Contains(notes(got.steps), "GSO") {
					t.Errorf("GSO mentioned though it was not tried:\n%s", notes(got.steps))
				}
			})
		})
	}
}
