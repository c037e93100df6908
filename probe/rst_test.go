package probe_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/internal/peertest"
	"tcpshake/probe"
	"tcpshake/probe/observe"
	"tcpshake/probe/tcpstate"
)

// The rst seam tests run probe.RunRST against rstServer, a small TCP server
// scripted in peertest.Peer's Respond hook, inside a synctest bubble: time.Now
// is a virtual clock, so the waits of the scenarios take no real time and
// every run prints the same numbers. rstServer behaves like RFC 9293 with RFC
// 5961 (challenge ACKs, rate-limited as Linux does) unless a misbehaviour is
// switched on; the negative tests switch them on one at a time and check that
// the verdict changes and says why. Nothing is sent anywhere.

var (
	rstClient = netip.MustParseAddr("198.51.100.1")
	rstHost   = netip.MustParseAddr("198.51.100.2")
)

const (
	rstListenPort = 9  // rstServer listens here
	rstClosedPort = 81 // and nowhere else
	rstOurISN     = craft.Seq(1000)
	rstRandVal    = 0x0badcafe // env.Rand: the made-up ack of ack-to-listener
	rstWindow     = 65535
)

// rstMisbehave switches one of rstServer's deviations from the RFCs on.
type rstMisbehave struct {
	silent           bool   // drop everything, as a firewall would
	closedAckOff     uint32 // added to the ack of a closed port's RST,ACK
	dieOnInWindowRST bool   // an in-window (not exact) RST aborts silently
	anyRSTKills      bool   // any RST aborts, in the window or not (before RFC 5961, and worse)
	noChallengeACK   bool   // in-window RSTs and SYNs are dropped without a challenge ACK
	noRateLimit      bool   // a challenge ACK for every RST
	synResets        bool   // a SYN in ESTABLISHED resets (RFC 793's rule)
	ignoreExactRST   bool   // an exact RST is dropped silently, the connection stays up
	ignoreSynRcvdRST bool   // a RST in SYN-RECEIVED is ignored
	ignoreSynRcvdFIN bool   // a FIN,ACK in SYN-RECEIVED is dropped
	noAckOfUnsent    bool   // an ACK of unsent data is dropped without an ACK
	silentWhenClosed bool   // segments for no connection get no RST
}

// rstConn is one connection rstServer holds, keyed from its side.
type rstConn struct {
	state         string // SYN-RECEIVED, ESTABLISHED or CLOSE-WAIT
	iss, sndNxt   craft.Seq
	rcvNxt        craft.Seq
	lastChallenge time.Time
}

type rstConnKey struct{ server, client netip.AddrPort }

// rstServer is the scripted TCP server. Its Respond is installed as the
// peer's hook; it is also the fake Observer that reads its own states.
type rstServer struct {
	bad rstMisbehave

	mu    sync.Mutex
	conns map[rstConnKey]*rstConn
}

func newRSTServer(bad rstMisbehave) *rstServer {
	return &rstServer{bad: bad, conns: map[rstConnKey]*rstConn{}}
}

func rstReply(to craft.Segment, seq, ack craft.Seq, flags craft.Flags) craft.Segment {
	return craft.Segment{Src: to.Dst, Dst: to.Src, Seq: seq, Ack: ack, Flags: flags, Window: rstWindow, TTL: 64, ID: 0x4321}
}

// respond is peertest.Peer.Respond: never nil, so the peer's port scripts
// stay out of it. It runs under the peer's lock and must not call it.
func (sv *rstServer) respond(seg craft.Segment) [][]byte {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	var out [][]byte
	for _, r := range sv.answer(seg) {
		b, err := r.Marshal()
		if err != nil {
			panic(fmt.Sprintf("rstServer: marshal reply: %v", err))
		}
		out = append(out, b)
	}
	if out == nil {
		out = [][]byte{}
	}
	return out
}

func (sv *rstServer) answer(seg craft.Segment) []craft.Segment {
	if sv.bad.silent {
		return nil
	}
	k := rstConnKey{server: seg.Dst, client: seg.Src}
	c := sv.conns[k]
	f := seg.Flags
	if c == nil {
		return sv.noConnection(k, seg)
	}
	if c.state == "SYN-RECEIVED" {
		switch {
		case f.Has(craft.RST):
			// Linux drops a request socket on any RST inside its window
			// (tcp_check_req), not only an exact one.
			if seg.Seq.InWindow(c.rcvNxt, rstWindow) && !sv.bad.ignoreSynRcvdRST {
				delete(sv.conns, k)
			}
			return nil
		case !f.Has(craft.ACK) || f.Has(craft.SYN):
			return nil
		case seg.Ack != c.sndNxt:
			return []craft.Segment{rstReply(seg, seg.Ack, 0, craft.RST)}
		case f.Has(craft.FIN) && sv.bad.ignoreSynRcvdFIN:
			return nil
		}
		c.state = "ESTABLISHED"
	}
	return sv.synchronized(k, c, seg)
}

// noConnection answers a segment for which no connection exists: a
// listener's rules (RFC 9293 §3.10.7.2) on the listening port, a closed
// port's (§3.10.7.1) elsewhere.
func (sv *rstServer) noConnection(k rstConnKey, seg craft.Segment) []craft.Segment {
	f := seg.Flags
	switch {
	case f.Has(craft.RST):
		return nil
	case f.Has(craft.ACK):
		if sv.bad.silentWhenClosed {
			return nil
		}
		return []craft.Segment{rstReply(seg, seg.Ack, 0, craft.RST)}
	case seg.Dst.Port() != rstListenPort:
		return []craft.Segment{rstReply(seg, 0, seg.End().Add(sv.bad.closedAckOff), craft.RST|craft.ACK)}
	case f.Has(craft.SYN):
		c := &rstConn{state: "SYN-RECEIVED", iss: peertest.DefaultISN, sndNxt: peertest.DefaultISN + 1, rcvNxt: seg.Seq + 1}
		sv.conns[k] = c
		r := rstReply(seg, c.iss, c.rcvNxt, craft.SYN|craft.ACK)
		r.Options = craft.Options{craft.MSS(1460)}
		return []craft.Segment{r}
	}
	return nil
}

// synchronized answers a segment of an established connection (RFC 9293
// §3.10.7.4 with RFC 5961 §3.2, §4.2 and §7).
func (sv *rstServer) synchronized(k rstConnKey, c *rstConn, seg craft.Segment) []craft.Segment {
	f := seg.Flags
	ack := func() []craft.Segment { return []craft.Segment{rstReply(seg, c.sndNxt, c.rcvNxt, craft.ACK)} }
	inWindow := seg.Seq.InWindow(c.rcvNxt, rstWindow)
	switch {
	case f.Has(craft.RST):
		switch {
		case seg.Seq == c.rcvNxt && sv.bad.ignoreExactRST:
			return nil
		case sv.bad.anyRSTKills, seg.Seq == c.rcvNxt:
			delete(sv.conns, k)
			return nil
		case inWindow && sv.bad.dieOnInWindowRST:
			delete(sv.conns, k)
			return nil
		case inWindow:
			return sv.challenge(c, seg)
		}
		return nil
	case f.Has(craft.SYN):
		if sv.bad.synResets {
			delete(sv.conns, k)
			return []craft.Segment{rstReply(seg, c.sndNxt, 0, craft.RST)}
		}
		return sv.challenge(c, seg)
	case !f.Has(craft.ACK):
		return nil
	case c.sndNxt.LessThan(seg.Ack):
		if sv.bad.noAckOfUnsent {
			return nil
		}
		return ack()
	}
	need := false
	if n := uint32(len(seg.Payload)); n > 0 && seg.Seq == c.rcvNxt {
		c.rcvNxt = c.rcvNxt.Add(n)
		need = true
	}
	if f.Has(craft.FIN) && seg.Seq.Add(uint32(len(seg.Payload))) == c.rcvNxt {
		c.rcvNxt = c.rcvNxt.Add(1)
		c.state = "CLOSE-WAIT"
		need = true
	}
	if need {
		return ack()
	}
	return nil
}

// challenge sends <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, at most one per
// 500 ms per connection like Linux (net.ipv4.tcp_invalid_ratelimit).
func (sv *rstServer) challenge(c *rstConn, seg craft.Segment) []craft.Segment {
	now := time.Now()
	switch {
	case sv.bad.noChallengeACK:
		return nil
	case !sv.bad.noRateLimit && !c.lastChallenge.IsZero() && now.Sub(c.lastChallenge) < 500*time.Millisecond:
		return nil
	}
	c.lastChallenge = now
	return []craft.Segment{rstReply(seg, c.sndNxt, c.rcvNxt, craft.ACK)}
}

// State implements probe.Observer: the server's real state of a connection.
func (sv *rstServer) State(local, remote netip.AddrPort) (string, error) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if c := sv.conns[rstConnKey{server: local, client: remote}]; c != nil {
		return c.state, nil
	}
	return "CLOSED", nil
}

// reading is State as the observer reads it.
func (sv *rstServer) reading(local, remote netip.AddrPort) observe.Reading {
	name, _ := sv.State(local, remote)
	r := observe.Reading{At: time.Now(), Exists: name != "CLOSED"}
	for st := tcpstate.Closed; st <= tcpstate.TimeWait; st++ {
		if st.String() == name {
			r.State = st
		}
	}
	return r
}

// Listening implements probe.Observer.
func (sv *rstServer) Listening(local netip.AddrPort) (bool, error) {
	return local.Port() == rstListenPort && !sv.bad.silent, nil
}

// left lists the connections the server still holds.
func (sv *rstServer) left() []string {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	var out []string
	for k, c := range sv.conns {
		out = append(out, fmt.Sprintf("%v > %v %s", k.client, k.server, c.state))
	}
	return out
}

// rstEvents keeps the events of a run.
type rstEvents struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *rstEvents) Emit(e event.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// verdictText renders the scenario verdicts and the final table as the
// text renderer does, without the steps.
func (r *rstEvents) verdictText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b bytes.Buffer
	txt := &event.Text{W: &b}
	for _, e := range r.events {
		switch e.(type) {
		case event.Scenario, event.Summary:
			txt.Emit(e)
		}
	}
	return b.String()
}

// rstSeamRun is what one seam run left.
type rstSeamRun struct {
	results []event.Scenario
	events  *rstEvents
	left    []string // connections the server still holds
	stale   []string // 4-tuples whose guard was not released
}

// rstRecordGuard is a fake guard that records what is still blocked.
type rstRecordGuard struct {
	mu      sync.Mutex
	blocked map[string]int
}

func (g *rstRecordGuard) Hold(local, remote netip.AddrPort) (func() error, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := local.String() + " > " + remote.String()
	g.blocked[k]++
	return func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.blocked[k]--; g.blocked[k] == 0 {
			delete(g.blocked, k)
		}
		return nil
	}, nil
}

func (g *rstRecordGuard) stale() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for k := range g.blocked {
		out = append(out, k)
	}
	return out
}

// runRSTSeam runs the named scenarios against a server that misbehaves as
// bad says, with the server as observer when observe is set. It runs its
// own synctest bubble.
func runRSTSeam(t *testing.T, names []string, bad rstMisbehave, observe bool) rstSeamRun {
	t.Helper()
	var out rstSeamRun
	synctest.Test(t, func(t *testing.T) {
		sv := newRSTServer(bad)
		peer := peertest.New(nil)
		peer.Now = time.Now
		peer.Respond = sv.respond
		m := capture.NewMatcher()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, peer) }()
		rec := &rstEvents{}
		g := &rstRecordGuard{blocked: map[string]int{}}
		var obs probe.Observer
		if observe {
			obs = probe.ObserverFunc(sv.reading, sv.Listening)
		}
		sport := uint16(40000)
		dial := func(port uint16) (*probe.Session, func(), error) {
			sport++
			isn := rstOurISN
			cfg := probe.SessionConfig{
				Host: rstHost.String(), Local: netip.AddrPortFrom(rstClient, sport), Remote: netip.AddrPortFrom(rstHost, port),
				ISN: &isn, Window: 64240, TTL: 64, SYN: craft.SYNOptionSet{MSS: 1460, WScale: -1},
			}
			env := probe.SessionEnv{
				Env:      probe.Env{Sender: peer, Matcher: m, Sink: rec, Now: time.Now, Rand: peertest.FixedRand(rstRandVal)},
				Guard:    g,
				Observer: obs,
			}
			return probe.NewSession(cfg, env), func() {}, nil
		}
		cfg := probe.RSTConfig{Port: rstListenPort, ClosedPort: rstClosedPort}
		res, err := probe.RunRST(ctx, names, cfg, dial, rec, time.Now)
		if err != nil {
			t.Errorf("RunRST: %v", err)
		}
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("matcher: %v", err)
		}
		out = rstSeamRun{results: res, events: rec, left: sv.left(), stale: g.stale()}
	})
	return out
}

// rstVerdict is a scenario's verdict in short, for comparison.
type rstVerdict struct {
	Name, Verdict string
}

func verdicts(res []event.Scenario) []rstVerdict {
	var out []rstVerdict
	for _, r := range res {
		out = append(out, rstVerdict{r.Name, r.Verdict})
	}
	return out
}

// TestRSTConforming runs every scenario against a server that follows RFC
// 9293 and RFC 5961, with its state in view and without (then the survival
// checks send data), and checks that nothing is left behind.
func TestRSTConforming(t *testing.T) {
	for _, observe := range []bool{true, false} {
		t.Run(fmt.Sprintf("observe=%v", observe), func(t *testing.T) {
			run := runRSTSeam(t, probe.Scenarios(), rstMisbehave{}, observe)
			var want []rstVerdict
			for _, n := range probe.Scenarios() {
				want = append(want, rstVerdict{n, probe.Conforms})
			}
			if diff := cmp.Diff(want, verdicts(run.results)); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
				for _, r := range run.results {
					if r.Verdict != probe.Conforms {
						t.Logf("%s: %s (observed: %s)", r.Name, r.Why, r.Observed)
					}
				}
			}
			if len(run.left) > 0 {
				t.Errorf("the server still holds connections: %v", run.left)
			}
			if len(run.stale) > 0 {
				t.Errorf("guard rules not released: %v", run.stale)
			}
			for _, r := range run.results {
				if r.Why == "" || r.Sent == "" || r.Expected == "" || r.Observed == "" || r.Title == "" || r.RFC == "" {
					t.Errorf("%s: a field is empty: %+v", r.Name, r)
				}
			}
			var sums []event.Summary
			for _, e := range run.events.events {
				if s, ok := e.(event.Summary); ok {
					sums = append(sums, s)
				}
			}
			if len(sums) != 1 || sums[0].Command != "rst" || sums[0].Outcome != "11 of 11 scenarios conform" || len(sums[0].Scenarios) != 11 {
				for _, s := range sums {
					t.Logf("summary: command %q, outcome %q, %d scenarios", s.Command, s.Outcome, len(s.Scenarios))
				}
				t.Errorf("%d summary events, want one for rst with 11 of 11 scenarios conforming", len(sums))
			}
		})
	}
}

// TestRSTDeviations switches one misbehaviour on at a time: the scenario
// that checks the rule must say deviates (or inconclusive) and why.
func TestRSTDeviations(t *testing.T) {
	tests := []struct {
		name     string
		scenario string
		bad      rstMisbehave
		observe  bool
		verdict  string
		why      string // a phrase of Why
		observed string // a phrase of Observed
	}{
		{
			name: "dies on an in-window RST", scenario: "in-window-rst", bad: rstMisbehave{dieOnInWindowRST: true},
			verdict: probe.Deviates, why: "no challenge ACK, and the connection was aborted by a RST that was not exact",
			observed: "nothing; one byte of data drew a RST: the connection is gone",
		},
		{
			name: "dies on an in-window RST, observed", scenario: "in-window-rst", bad: rstMisbehave{dieOnInWindowRST: true}, observe: true,
			verdict: probe.Deviates, why: "no challenge ACK, and the connection was aborted by a RST that was not exact",
			observed: "nothing; the peer's kernel shows CLOSED",
		},
		{
			name: "no challenge ACK for an in-window RST", scenario: "in-window-rst", bad: rstMisbehave{noChallengeACK: true},
			verdict: probe.Deviates, why: "no challenge ACK came back", observed: "nothing",
		},
		{
			name: "no challenge ACK for a SYN", scenario: "syn-in-established", bad: rstMisbehave{noChallengeACK: true},
			verdict: probe.Deviates, why: "no challenge ACK came back", observed: "one byte of data was acknowledged",
		},
		{
			name: "a SYN resets (RFC 793)", scenario: "syn-in-established", bad: rstMisbehave{synResets: true},
			verdict: probe.Deviates, why: "the SYN aborted the connection (RFC 793's old rule",
		},
		{
			name: "a SYN resets (RFC 793), observed", scenario: "syn-in-established", bad: rstMisbehave{synResets: true}, observe: true,
			verdict: probe.Deviates, why: "the SYN aborted the connection", observed: "the peer's kernel shows CLOSED",
		},
		{
			name: "no challenge ACK in the burst", scenario: "challenge-ack-burst", bad: rstMisbehave{noChallengeACK: true},
			verdict: probe.Deviates, why: "no challenge ACK at all", observed: "0 challenge ACK(s) for 10 RSTs",
		},
		{
			name: "every RST of the burst answered", scenario: "challenge-ack-burst", bad: rstMisbehave{noRateLimit: true},
			verdict: probe.Deviates, why: "one challenge ACK per RST: no rate limit", observed: "10 challenge ACK(s) for 10 RSTs",
		},
		{
			name: "closed port answers with a wrong ack", scenario: "closed-port", bad: rstMisbehave{closedAckOff: 1},
			verdict: probe.Deviates, why: "a reset, but with [R.] seq 0 ack 1002", observed: "[R.] seq 0 ack 1002",
		},
		{
			name: "closed port silent", scenario: "closed-port", bad: rstMisbehave{silent: true},
			verdict: probe.Inconclusive, why: "nothing came back in time: the port may be filtered", observed: "nothing",
		},
		{
			name: "silent: no ACK to a listener", scenario: "ack-to-listener", bad: rstMisbehave{silent: true},
			verdict: probe.Inconclusive, why: "nothing came back: the port may be filtered",
		},
		{
			name: "silent listener, observed", scenario: "ack-to-listener", bad: rstMisbehave{silentWhenClosed: true}, observe: true,
			verdict: probe.Deviates, why: "nothing came back: a listener must answer an ACK with RST",
		},
		{
			name: "silent: no connection for in-window-rst", scenario: "in-window-rst", bad: rstMisbehave{silent: true},
			verdict: probe.Inconclusive, why: "no connection to port 9 within 3s (we are in SYN-SENT)",
		},
		{
			name: "silent: no SYN-ACK for rst-in-syn-received", scenario: "rst-in-syn-received", bad: rstMisbehave{silent: true},
			verdict: probe.Inconclusive, why: "no SYN-ACK: the port must be listening",
		},
		{
			name: "exact RST ignored", scenario: "exact-rst", bad: rstMisbehave{ignoreExactRST: true},
			verdict: probe.Deviates, why: "the connection survived an exact RST", observed: "a bare ACK afterwards drew no RST",
		},
		{
			name: "exact RST ignored, observed", scenario: "exact-rst", bad: rstMisbehave{ignoreExactRST: true}, observe: true,
			verdict: probe.Deviates, why: "the connection survived an exact RST", observed: "the peer's kernel shows ESTABLISHED",
		},
		{
			name: "any RST kills", scenario: "out-of-window-rst", bad: rstMisbehave{anyRSTKills: true},
			verdict: probe.Deviates, why: "the connection did not survive an out-of-window RST", observed: "one byte of data drew a RST",
		},
		{
			name: "RST in SYN-RECEIVED ignored", scenario: "rst-in-syn-received", bad: rstMisbehave{ignoreSynRcvdRST: true},
			verdict: probe.Deviates, why: "the final ACK afterwards drew no RST: the embryonic connection survived",
		},
		{
			name: "RST in SYN-RECEIVED ignored, observed", scenario: "rst-in-syn-received", bad: rstMisbehave{ignoreSynRcvdRST: true}, observe: true,
			verdict: probe.Deviates, why: "the embryonic connection is still there", observed: "the peer's kernel shows SYN-RECEIVED",
		},
		{
			name: "no RST for data after the reset", scenario: "data-after-reset", bad: rstMisbehave{silentWhenClosed: true},
			verdict: probe.Deviates, why: "nothing came back: a segment for no connection must draw RST", observed: "nothing",
		},
		{
			name: "ACK of unsent data dropped silently", scenario: "ack-of-unsent-data", bad: rstMisbehave{noAckOfUnsent: true},
			verdict: probe.Deviates, why: "no ACK came back", observed: "nothing; one byte of data was acknowledged",
		},
		{
			name: "FIN in SYN-RECEIVED dropped", scenario: "fin-in-syn-received", bad: rstMisbehave{ignoreSynRcvdFIN: true},
			verdict: probe.Deviates, why: "our FIN was not acknowledged",
		},
		// Positive controls next to the negative ones: the same scenarios
		// against the RFC 5961 behaviour.
		{
			name: "RFC 5961: challenge ACK for an in-window RST", scenario: "in-window-rst",
			verdict: probe.Conforms, why: "challenge ACK, connection intact",
			observed: fmt.Sprintf("[.] seq %d ack %d; one byte of data was acknowledged (ack %d)", peertest.DefaultISN+1, rstOurISN+1, rstOurISN+2),
		},
		{
			name: "RFC 5961: one challenge ACK for the burst", scenario: "challenge-ack-burst",
			verdict: probe.Conforms, why: "rate-limited to 1", observed: "1 challenge ACK(s) for 10 RSTs",
		},
		{
			name: "RFC 9293: closed port", scenario: "closed-port",
			verdict: probe.Conforms, why: "the reset names our SYN exactly", observed: "[R.] seq 0 ack 1001",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := runRSTSeam(t, []string{tt.scenario}, tt.bad, tt.observe)
			if len(run.results) != 1 {
				t.Fatalf("%d results, want 1: %+v", len(run.results), run.results)
			}
			r := run.results[0]
			got := rstVerdict{r.Name, r.Verdict}
			if diff := cmp.Diff(rstVerdict{tt.scenario, tt.verdict}, got); diff != "" {
				t.Errorf("verdict (-want +got):\n%s\nwhy: %s\nobserved: %s", diff, r.Why, r.Observed)
			}
			if !strings.Contains(r.Why, tt.why) {
				t.Errorf("why = %q, want it to contain %q", r.Why, tt.why)
			}
			if !strings.Contains(r.Observed, tt.observed) {
				t.Errorf("observed = %q, want it to contain %q", r.Observed, tt.observed)
			}
			if len(run.stale) > 0 {
				t.Errorf("guard rules not released: %v", run.stale)
			}
			// Whatever the peer did, tcpshake leaves no connection it opened
			// (the one that the peer still holds after ignoring an exact RST
			// is closed by the final abort, which resets at the right seq).
			if len(run.left) > 0 && !tt.bad.ignoreExactRST && !tt.bad.ignoreSynRcvdRST {
				t.Errorf("the server still holds connections: %v", run.left)
			}
		})
	}
}

// TestRSTSeamGolden is the verdict report and final table of a run against
// the RFC 5961 server, observed.
func TestRSTSeamGolden(t *testing.T) {
	run := runRSTSeam(t, probe.Scenarios(), rstMisbehave{}, true)
	golden(t, "rst_seam.golden", []byte(run.events.verdictText()))
}

// TestRSTTableGolden renders the final table of `tcpshake rst` from fixed
// results: every verdict, long texts cut at a word, an empty observation.
func TestRSTTableGolden(t *testing.T) {
	sum := event.Summary{
		Command: "rst", Elapsed: 2194.5, Outcome: "1 of 3 scenarios conform",
		Scenarios: []event.Scenario{
			{
				Name: "closed-port", Verdict: probe.Conforms,
				Expected: "RST,ACK with seq 0 and ack 538731955 = ISN + 1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>",
				Observed: "[R.] seq 0 ack 538731955",
			},
			{
				Name: "in-window-rst", Verdict: probe.Deviates,
				Expected: "a challenge ACK (ack 3322681069 = RCV.NXT), and the connection survives",
				Observed: "nothing; one byte of data drew a RST: the connection is gone",
			},
			{
				Name: "fin-in-syn-received", Verdict: probe.Inconclusive,
				Expected: "",
				Observed: "",
			},
		},
	}
	var b bytes.Buffer
	(&event.Text{W: &b}).Emit(sum)
	golden(t, "rst_table.golden", b.Bytes())
}
