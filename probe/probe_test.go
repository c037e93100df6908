package probe_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/internal/peertest"
	"tcpshake/probe"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Lab addresses: nothing is sent anywhere in these tests, the peer is scripted.
var (
	ourV4  = netip.MustParseAddr("198.51.100.1")
	peerV4 = netip.MustParseAddr("198.51.100.2")
	ourV6  = netip.MustParseAddr("2001:db8::1")
	peerV6 = netip.MustParseAddr("2001:db8::2")
)

// isn is the fixed value of every "random" number in these tests: ISNs, IP
// IDs, and (through the probe's formula) the source port.
const isn = 1000

// recorder is a sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Emit(e event.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) steps() []event.Step {
	var out []event.Step
	for _, e := range r.events {
		if s, ok := e.(event.Step); ok {
			out = append(out, s)
		}
	}
	return out
}

func (r *recorder) summary(t *testing.T) event.Summary {
	t.Helper()
	for _, e := range r.events {
		if s, ok := e.(event.Summary); ok {
			return s
		}
	}
	t.Fatal("no summary event")
	return event.Summary{}
}

// fixture is one probe run against a scripted peer.
type fixture struct {
	peer    *peertest.Peer
	matcher *capture.Matcher
	env     probe.Env
}

// newFixture starts a matcher reading peer; the run's clock is fixed at the
// peer's epoch unless the caller replaces env.Now.
func newFixture(t *testing.T, peer *peertest.Peer, sink event.Sink) *fixture {
	t.Helper()
	m := capture.NewMatcher()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, peer) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("matcher: %v", err)
		}
	})
	return &fixture{peer: peer, matcher: m, env: probe.Env{
		Sender: peer, Matcher: m, Sink: sink, Now: peertest.Epoch, Rand: peertest.FixedRand(isn),
	}}
}

// config is a probe of ports on the v4 or v6 peer, one probe each, no
// retransmission, a short fixed timeout.
func config(v6 bool, flags craft.Flags, ports ...uint16) probe.Config {
	c := probe.Config{
		Host: "peer.test", Addr: peerV4, Src: ourV4, Iface: "veth0", Ports: ports,
		Flags: flags, Window: 64240, TTL: 64, SYN: craft.SYNOptionSet{MSS: 1460, WScale: -1},
		Count: 1, Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond,
	}
	if v6 {
		c.Addr, c.Src = peerV6, ourV6
	}
	return c
}

func run(t *testing.T, f *fixture, cfg probe.Config) probe.Outcome {
	t.Helper()
	out, err := probe.Run(t.Context(), cfg, f.env)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// rttMs is the scripted RTT of most tests.
const rttMs = 1.5

var rtt = time.Duration(rttMs * float64(time.Millisecond))

// TestStates checks the state and reason of every kind of answer, for each
// probe type and both address families, with nmap's semantics.
func TestStates(t *testing.T) {
	const port = 80
	type want struct {
		state, reason string
		answered      bool
	}
	tests := []struct {
		name   string
		flags  craft.Flags
		answer peertest.Answer
		want   want
	}{
		{"syn/open", craft.SYN, peertest.Open, want{"open", "syn-ack", true}},
		{"syn/closed", craft.SYN, peertest.Closed, want{"closed", "reset", true}},
		{"syn/silent", craft.SYN, peertest.Silent, want{"filtered", "no-response", false}},
		{"syn/icmp", craft.SYN, peertest.PortUnreachable, want{"filtered", "port-unreach", true}},
		{"syn/prohibited", craft.SYN, peertest.Prohibited, want{"filtered", "admin-prohibited", true}},
		{"fin/open", craft.FIN, peertest.Open, want{"open|filtered", "no-response", false}},
		{"fin/closed", craft.FIN, peertest.Closed, want{"closed", "reset", true}},
		{"fin/silent", craft.FIN, peertest.Silent, want{"open|filtered", "no-response", false}},
		{"fin/icmp", craft.FIN, peertest.PortUnreachable, want{"filtered", "port-unreach", true}},
		{"null/open", 0, peertest.Open, want{"open|filtered", "no-response", false}},
		{"null/closed", 0, peertest.Closed, want{"closed", "reset", true}},
		{"null/prohibited", 0, peertest.Prohibited, want{"filtered", "admin-prohibited", true}},
		{"xmas/open", craft.FIN | craft.PSH | craft.URG, peertest.Open, want{"open|filtered", "no-response", false}},
		{"xmas/closed", craft.FIN | craft.PSH | craft.URG, peertest.Closed, want{"closed", "reset", true}},
		{"ack/open", craft.ACK, peertest.Open, want{"unfiltered", "reset", true}},
		{"ack/closed", craft.ACK, peertest.Closed, want{"unfiltered", "reset", true}},
		{"ack/silent", craft.ACK, peertest.Silent, want{"filtered", "no-response", false}},
		{"ack/icmp", craft.ACK, peertest.PortUnreachable, want{"filtered", "port-unreach", true}},
		{"synack/open", craft.SYN | craft.ACK, peertest.Open, want{"unfiltered", "reset", true}},
	}
	for _, v6 := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name + "/v4"
			if v6 {
				name = tt.name + "/v6"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				peer := peertest.New(map[uint16]peertest.Script{port: {Answer: tt.answer, RTT: rtt}})
				f := newFixture(t, peer, &recorder{})
				cfg := config(v6, tt.flags, port)
				out := run(t, f, cfg)
				if len(out.Results) != 1 {
					t.Fatalf("got %d results, want 1", len(out.Results))
				}
				got := out.Results[0]
				w := event.Result{
					Host: "peer.test", Addr: cfg.Addr.String(), Port: port,
					State: tt.want.state, Reason: tt.want.reason, Sent: 1,
				}
				if tt.want.answered {
					w.Received = 1
					w.RTTMs = ptr(rttMs)
					switch tt.answer {
					case peertest.PortUnreachable, peertest.Prohibited:
						w.From = cfg.Addr.String()
					default:
						w.TTL, w.Window = ptr(uint8(64)), ptr(uint16(0))
						if tt.want.state == "open" {
							w.Window = ptr(uint16(65535))
						}
					}
				}
				if diff := cmp.Diff(w, got); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
				wantOpen := 0
				if tt.want.state == "open" {
					wantOpen = 1
				}
				if out.Open != wantOpen {
					t.Errorf("Open = %d, want %d", out.Open, wantOpen)
				}
			})
		}
	}
}

// TestOpenResetsHalfOpen checks that after a SYN-ACK we send a reset whose
// seq is the SYN-ACK's ack, so the peer leaves SYN-RECEIVED.
func TestOpenResetsHalfOpen(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			peer := peertest.New(map[uint16]peertest.Script{80: {Answer: peertest.Open, RTT: rtt}})
			f := newFixture(t, peer, &recorder{})
			run(t, f, config(v6, craft.SYN, 80))
			got := peer.Received()
			if len(got) != 2 {
				t.Fatalf("peer received %d segments, want SYN and RST: %v", len(got), got)
			}
			syn, rst := got[0].Seg, got[1].Seg
			if syn.Flags != craft.SYN || syn.Seq != isn {
				t.Errorf("first segment %v, want SYN seq %d", syn.String(), isn)
			}
			wantRST := struct {
				Flags    craft.Flags
				Seq      craft.Seq
				Src, Dst netip.AddrPort
			}{craft.RST, syn.Seq + 1, syn.Src, syn.Dst}
			gotRST := struct {
				Flags    craft.Flags
				Seq      craft.Seq
				Src, Dst netip.AddrPort
			}{rst.Flags, rst.Seq, rst.Src, rst.Dst}
			if diff := cmp.Diff(wantRST, gotRST, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
				t.Errorf("reset (-want +got):\n%s", diff)
			}
			if h := peer.HalfOpen(); len(h) != 0 {
				t.Errorf("peer still half-open: %v", h)
			}
		})
	}
}

// TestRTT checks where round-trip times come from: the kernel timestamps of
// the probe leaving and the answer arriving when the capture saw both, our
// clock at send time otherwise.
func TestRTT(t *testing.T) {
	peerEpoch := peertest.Epoch().Add(time.Hour) // a different clock than the run's
	tests := []struct {
		name         string
		hideOutgoing bool
		loopback     bool
		want         float64
	}{
		{"kernel timestamps", false, false, rttMs},
		{"kernel timestamps on loopback", false, true, rttMs},
		{"clock fallback", true, false, float64(time.Hour+rtt) / 1e6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := peertest.New(map[uint16]peertest.Script{80: {Answer: peertest.Open, RTT: rtt}, 81: {RTT: 2 * rtt}})
			peer.Now = func() time.Time { return peerEpoch }
			peer.HideOutgoing, peer.Loopback = tt.hideOutgoing, tt.loopback
			rec := &recorder{}
			f := newFixture(t, peer, rec)
			out := run(t, f, config(false, craft.SYN, 80, 81))
			if got := *out.Results[0].RTTMs; got != tt.want {
				t.Errorf("port 80 RTT = %v ms, want %v", got, tt.want)
			}
			want81 := tt.want + rttMs
			if got := *out.Results[1].RTTMs; math.Abs(got-want81) > 1e-9 {
				t.Errorf("port 81 RTT = %v ms, want %v", got, want81)
			}
			if s := rec.summary(t); s.Received != 2 || s.Sent != 2 {
				t.Errorf("summary sent/received = %d/%d, want 2/2", s.Sent, s.Received)
			}
		})
	}
}

// TestRetries checks retransmission of unanswered probes.
func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		script       peertest.Script
		retries      int
		wantSent     int
		wantState    string
		wantReceived int
	}{
		{"silent, no retries", peertest.Script{Answer: peertest.Silent}, 0, 1, "filtered", 0},
		{"silent, 2 retries", peertest.Script{Answer: peertest.Silent}, 2, 3, "filtered", 0},
		{"answers the retransmission", peertest.Script{Answer: peertest.Open, DropFirst: 1, RTT: rtt}, 1, 2, "open", 1},
		{"answers the last retransmission", peertest.Script{Answer: peertest.Closed, DropFirst: 3, RTT: rtt}, 3, 4, "closed", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			peer := peertest.New(map[uint16]peertest.Script{80: tt.script})
			rec := &recorder{}
			f := newFixture(t, peer, rec)
			cfg := config(false, craft.SYN, 80)
			cfg.Retries, cfg.Timeout = tt.retries, 30*time.Millisecond
			out := run(t, f, cfg)
			res := out.Results[0]
			if res.State != tt.wantState || res.Sent != tt.wantSent || res.Received != tt.wantReceived {
				t.Errorf("result %s sent %d received %d, want %s sent %d received %d",
					res.State, res.Sent, res.Received, tt.wantState, tt.wantSent, tt.wantReceived)
			}
			var probes, retrans int
			for _, r := range peer.Received() {
				if r.Seg.Flags == craft.SYN {
					probes++
					if r.Seg.Seq != isn {
						t.Errorf("retransmission with seq %d, want the same segment (seq %d)", r.Seg.Seq, isn)
					}
				}
			}
			for _, s := range rec.steps() {
				if s.Direction == "sent" && s.Retrans {
					retrans++
				}
			}
			if probes != tt.wantSent || retrans != tt.wantSent-1 {
				t.Errorf("peer got %d probes, %d steps marked retransmission; want %d and %d", probes, retrans, tt.wantSent, tt.wantSent-1)
			}
		})
	}
}

// TestOddReplies checks that a SYN-ACK with a wrong ack is ignored and
// counted, and that duplicate answers change nothing.
func TestOddReplies(t *testing.T) {
	tests := []struct {
		name        string
		script      peertest.Script
		wantState   string
		wantIgnored map[string]uint64
	}{
		{"bad ack before the SYN-ACK", peertest.Script{Answer: peertest.Open, BadAckFirst: true, RTT: rtt}, "open", map[string]uint64{"bad-ack": 1}},
		{"bad ack before the reset", peertest.Script{Answer: peertest.Closed, BadAckFirst: true, RTT: rtt}, "closed", map[string]uint64{"bad-ack": 1}},
		{"duplicate SYN-ACK", peertest.Script{Answer: peertest.Open, Duplicate: true, RTT: rtt}, "open", nil},
		{"duplicate ICMP", peertest.Script{Answer: peertest.PortUnreachable, Duplicate: true, RTT: rtt}, "filtered", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			peer := peertest.New(map[uint16]peertest.Script{80: tt.script})
			rec := &recorder{}
			f := newFixture(t, peer, rec)
			out := run(t, f, config(false, craft.SYN, 80))
			res := out.Results[0]
			if res.State != tt.wantState || res.Sent != 1 || res.Received != 1 {
				t.Errorf("result %s sent %d received %d, want %s sent 1 received 1", res.State, res.Sent, res.Received, tt.wantState)
			}
			if diff := cmp.Diff(tt.wantIgnored, rec.summary(t).Ignored); diff != "" {
				t.Errorf("summary ignored (-want +got):\n%s", diff)
			}
			if tt.wantState == "open" {
				got := peer.Received()
				if last := got[len(got)-1].Seg; last.Flags != craft.RST || last.Seq != isn+1 {
					t.Errorf("last segment %s, want RST seq %d (the right SYN-ACK's ack)", last.String(), isn+1)
				}
				if h := peer.HalfOpen(); len(h) != 0 {
					t.Errorf("peer still half-open: %v", h)
				}
			}
		})
	}
}

// TestCountInterval checks that every port gets Count probes, one round per
// Interval, on the real clock.
func TestCountInterval(t *testing.T) {
	const count, interval = 3, 40 * time.Millisecond
	peer := peertest.New(map[uint16]peertest.Script{80: {Answer: peertest.Open, RTT: rtt}, 81: {RTT: rtt}})
	peer.Now = time.Now
	rec := &recorder{}
	f := newFixture(t, peer, rec)
	f.env.Now = time.Now
	cfg := config(false, craft.SYN, 80, 81)
	cfg.Count, cfg.Interval = count, interval
	start := time.Now()
	out := run(t, f, cfg)
	for _, r := range out.Results {
		if r.Sent != count || r.Received != count {
			t.Errorf("port %d: sent %d received %d, want %d and %d", r.Port, r.Sent, r.Received, count, count)
		}
	}
	var rounds []time.Time
	for _, r := range peer.Received() {
		if r.Seg.Flags == craft.SYN && r.Seg.Dst.Port() == 80 {
			rounds = append(rounds, r.Time)
		}
	}
	if len(rounds) != count {
		t.Fatalf("port 80 got %d SYNs, want %d", len(rounds), count)
	}
	for i, at := range rounds {
		if early := start.Add(time.Duration(i) * interval); at.Before(early) {
			t.Errorf("round %d sent %v after start, before the interval allows (%v)", i, at.Sub(start), time.Duration(i)*interval)
		}
	}
	if s := rec.summary(t); s.Sent != 2*count || s.Received != 2*count || s.LossPct != 0 || s.Open != 1 {
		t.Errorf("summary %+v, want %d sent and received, no loss, 1 open", s, 2*count)
	}
}

// TestSummaryStats checks min/avg/max/mdev against a two-pass computation,
// and the loss percentage.
func TestSummaryStats(t *testing.T) {
	rtts := map[uint16]time.Duration{80: time.Millisecond, 81: 2 * time.Millisecond, 82: 4 * time.Millisecond, 83: 1500 * time.Microsecond}
	peer := peertest.New(map[uint16]peertest.Script{
		80: {Answer: peertest.Open, RTT: rtts[80]},
		81: {Answer: peertest.Closed, RTT: rtts[81]},
		82: {Answer: peertest.PortUnreachable, RTT: rtts[82]},
		83: {Answer: peertest.Open, RTT: rtts[83]},
		84: {Answer: peertest.Silent},
	})
	rec := &recorder{}
	f := newFixture(t, peer, rec)
	run(t, f, config(false, craft.SYN, 80, 81, 82, 83, 84))

	var xs []float64
	for _, d := range rtts {
		xs = append(xs, float64(d)/1e6)
	}
	want := &event.RTTStats{Min: 1, Max: 4}
	for _, x := range xs {
		want.Avg += x / float64(len(xs))
	}
	for _, x := range xs {
		want.Mdev += (x - want.Avg) * (x - want.Avg) / float64(len(xs))
	}
	want.Mdev = math.Sqrt(want.Mdev)

	s := rec.summary(t)
	if diff := cmp.Diff(want, s.RTT, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("rtt stats (-want +got):\n%s", diff)
	}
	if s.Sent != 5 || s.Received != 4 || s.LossPct != 20 || s.Open != 2 {
		t.Errorf("summary sent %d received %d loss %v%% open %d, want 5, 4, 20%%, 2", s.Sent, s.Received, s.LossPct, s.Open)
	}
}

// goldenRun is the 4-port run of the golden files: open, closed, silent and
// ICMP port unreachable, with fixed ISN, clock and RTTs.
func goldenRun(t *testing.T, sink event.Sink) {
	t.Helper()
	peer := peertest.New(map[uint16]peertest.Script{
		80: {Answer: peertest.Open, RTT: 1200 * time.Microsecond},
		81: {Answer: peertest.Closed, RTT: 800 * time.Microsecond},
		82: {Answer: peertest.Silent},
		83: {Answer: peertest.PortUnreachable, RTT: 950 * time.Microsecond},
	})
	f := newFixture(t, peer, sink)
	cfg := config(false, craft.SYN, 80, 81, 82, 83)
	cfg.Timeout = 200 * time.Millisecond
	run(t, f, cfg)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		file string
		sink func(w *bytes.Buffer) event.Sink
	}{
		{"probe4.golden", func(w *bytes.Buffer) event.Sink { return &event.Text{W: w} }},
		{"probe4_verbose.golden", func(w *bytes.Buffer) event.Sink { return &event.Text{W: w, Verbose: true} }},
		{"probe4_quiet.golden", func(w *bytes.Buffer) event.Sink { return &event.Text{W: w, Quiet: true} }},
		{"probe4_json.golden", func(w *bytes.Buffer) event.Sink { return event.NewJSON(w) }},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			goldenRun(t, tt.sink(&b))
			golden(t, tt.file, b.Bytes())
		})
	}
}

// TestJSONLines checks that every line is a JSON object with a "type", and
// that results carry the fields docs/json.md promises.
func TestJSONLines(t *testing.T) {
	var b bytes.Buffer
	j := event.NewJSON(&b)
	goldenRun(t, j)
	if err := j.Err(); err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	sc := bufio.NewScanner(&b)
	for n := 1; sc.Scan(); n++ {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("line %d does not parse: %v\n%s", n, err, sc.Bytes())
		}
		typ, ok := obj["type"].(string)
		if !ok {
			t.Fatalf("line %d has no string \"type\": %s", n, sc.Bytes())
		}
		types[typ]++
		if typ != "result" {
			continue
		}
		for _, k := range []string{"host", "port", "state", "reason", "rtt_ms", "ttl", "window"} {
			if _, ok := obj[k]; !ok {
				t.Errorf("result line %d lacks %q: %s", n, k, sc.Bytes())
			}
		}
	}
	// 4 probes and 1 RST sent, 3 answers received.
	want := map[string]int{"start": 1, "step": 8, "result": 4, "summary": 1}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
}

// TestSendError checks that a failing sender ends the run with its error,
// and that the port it could not probe is undecided, not filtered.
func TestSendError(t *testing.T) {
	peer := peertest.New(nil)
	rec := &recorder{}
	f := newFixture(t, peer, rec)
	peer.Close()
	if _, err := probe.Run(t.Context(), config(false, craft.SYN, 80), f.env); err == nil {
		t.Error("Run with a closed sender: no error")
	}
	checkResults(t, rec, map[uint16]string{80: "undecided/error"})
}

// TestCancel checks that cancelling the context ends a run that waits, that
// the ports still waiting are undecided (interrupted), not filtered, and
// that a port whose wait ran out in an earlier round keeps its verdict.
func TestCancel(t *testing.T) {
	peer := peertest.New(map[uint16]peertest.Script{80: {Answer: peertest.Silent}})
	rec := &recorder{}
	f := newFixture(t, peer, rec)
	f.env.Now = time.Now
	cfg := config(false, craft.SYN, 80)
	cfg.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := probe.Run(ctx, cfg, f.env)
	if err != context.DeadlineExceeded {
		t.Errorf("Run error %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v after cancel", d)
	}
	checkResults(t, rec, map[uint16]string{80: "undecided/interrupted"})

	// Round 1 times out (filtered, decided); the interrupt comes in the
	// wait before round 2.
	rec = &recorder{}
	f = newFixture(t, peertest.New(map[uint16]peertest.Script{81: {Answer: peertest.Silent}}), rec)
	f.env.Now = time.Now
	cfg = config(false, craft.SYN, 81)
	cfg.Timeout, cfg.Count, cfg.Interval = 20*time.Millisecond, 2, time.Minute
	ctx2, cancel2 := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel2)
	if _, err := probe.Run(ctx2, cfg, f.env); err != context.Canceled {
		t.Errorf("Run error %v, want %v", err, context.Canceled)
	}
	checkResults(t, rec, map[uint16]string{81: "filtered/no-response"})
}

// checkResults compares the state/reason of every result event.
func checkResults(t *testing.T, rec *recorder, want map[uint16]string) {
	t.Helper()
	got := map[uint16]string{}
	for _, e := range rec.events {
		if r, ok := e.(event.Result); ok {
			got[r.Port] = r.State + "/" + r.Reason
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

// refusingSender is a sender whose "output firewall" refuses (EPERM) every
// segment to the ports in refuse, as netfilter's output hook does.
type refusingSender struct {
	capture.Sender
	refuse map[uint16]bool
	v6     bool
}

func (s refusingSender) Send(pkt []byte, dst netip.Addr) error {
	off := 20 // the IPv4 header, no options
	if s.v6 {
		off = 40
	}
	if len(pkt) >= off+4 && s.refuse[uint16(pkt[off+2])<<8|uint16(pkt[off+3])] {
		return syscall.EPERM
	}
	return s.Sender.Send(pkt, dst)
}

// TestOurFirewallRefuses: a probe that our own output firewall refuses
// leaves its port undecided (our-firewall), with one warning, and the other
// ports are still probed and decided; it never calls the port filtered.
func TestOurFirewallRefuses(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		peer := peertest.New(map[uint16]peertest.Script{
			80: {Answer: peertest.Open, RTT: rtt}, 81: {Answer: peertest.Closed, RTT: rtt}, 82: {Answer: peertest.Silent},
		})
		rec := &recorder{}
		f := newFixture(t, peer, rec)
		f.env.Sender = refusingSender{Sender: f.env.Sender, refuse: map[uint16]bool{79: true, 81: true}, v6: v6}
		cfg := config(v6, craft.SYN, 79, 80, 81, 82)
		cfg.Retries = 1
		run(t, f, cfg)
		checkResults(t, rec, map[uint16]string{79: "undecided/our-firewall", 80: "open/syn-ack", 81: "undecided/our-firewall", 82: "filtered/no-response"})
		warnings := 0
		for _, e := range rec.events {
			if w, ok := e.(event.Warning); ok && strings.Contains(w.Message, "our own firewall refused") {
				warnings++
			}
		}
		if warnings != 1 {
			t.Errorf("v6=%v: %d warnings about our firewall, want 1", v6, warnings)
		}
	}
}
