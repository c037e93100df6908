package probe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/internal/tcppeer"
	"tcpshake/probe"
	"tcpshake/probe/tcpstate"
)

// Session tests run a probe.Session against tcppeer inside a synctest bubble:
// time.Now is a virtual clock that only moves while every goroutine waits, so
// RTTs, retransmission timers and TIME-WAIT take no real time and every run
// prints the same numbers. Nothing is sent anywhere.

// sessISN is our fixed ISN: the textbook numbers are SYN seq 100, SYN-ACK
// seq 2000 ack 101, ACK seq 101 ack 2001.
const sessISN craft.Seq = 100

var (
	sessLocal  = netip.MustParseAddrPort("198.51.100.1:40000")
	sessRemote = netip.MustParseAddrPort("198.51.100.2:7")
)

// sessEvents is a sink that keeps every event.
type sessEvents struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *sessEvents) Emit(e event.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *sessEvents) steps() []event.Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Step
	for _, e := range r.events {
		if s, ok := e.(event.Step); ok {
			out = append(out, s)
		}
	}
	return out
}

// fanout sends every event to each sink in turn.
type fanout []event.Sink

func (f fanout) Emit(e event.Event) {
	for _, s := range f {
		s.Emit(e)
	}
}

// fakeGuard counts the 4-tuples blocked and released.
type fakeGuard struct {
	mu                sync.Mutex
	blocked, released int
}

func (g *fakeGuard) Hold(local, remote netip.AddrPort) (func() error, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if local != sessLocal || remote != sessRemote {
		return nil, fmt.Errorf("fake guard: unexpected tuple %v > %v", local, remote)
	}
	g.blocked++
	return func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.released++
		return nil
	}, nil
}

// sessOutcome is what one scripted conversation left behind.
type sessOutcome struct {
	err       error
	steps     []event.Step
	sum       event.Summary
	received  []byte         // what the session got from the peer
	peerData  []byte         // what the peer got from us
	us, peer  tcpstate.State // the session's own state and its inference of the peer's
	peerTrue  tcpstate.State // the peer's real state
	peerReset bool
	guard     *fakeGuard
	records   []tcppeer.Record
}

// sessScript drives a session the way `tcpshake handshake` does.
type sessScript func(ctx context.Context, s *probe.Session) error

// handshakeScript opens, sends data (if any) and closes as mode says.
func handshakeScript(data string, mode probe.CloseMode) sessScript {
	return func(ctx context.Context, s *probe.Session) error {
		if err := s.Open(ctx); err != nil {
			return err
		}
		if data != "" {
			if err := s.Send(ctx, []byte(data)); err != nil {
				return err
			}
		}
		return s.Close(ctx, mode)
	}
}

// runSession plays script against peer in a synctest bubble, with sink (if
// any) receiving the events as well, and each of envs changing the
// session's environment. It must be called inside the bubble.
func runSession(t *testing.T, peer *tcppeer.Peer, cfg probe.SessionConfig, script sessScript, sink event.Sink, envs ...func(*probe.SessionEnv)) sessOutcome {
	t.Helper()
	m := capture.NewMatcher()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, peer) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("matcher: %v", err)
		}
	}()
	rec := &sessEvents{}
	sinks := fanout{rec}
	if sink != nil {
		sinks = append(sinks, sink)
	}
	g := &fakeGuard{}
	isn := sessISN
	if cfg.ISN == nil {
		cfg.ISN = &isn
	}
	env := probe.SessionEnv{
		Env:   probe.Env{Sender: peer, Matcher: m, Sink: sinks, Now: time.Now, Rand: func() uint32 { return 0x1234 }},
		Guard: g,
	}
	for _, f := range envs {
		f(&env)
	}
	s := probe.NewSession(cfg, env)
	err := script(ctx, s)
	if err != nil {
		s.Abort(err)
	}
	s.End()
	sum := s.Summary()
	sum.Outcome = "ok"
	if err != nil {
		sum.Outcome = err.Error()
	}
	sinks.Emit(sum)
	// Let what is still in flight arrive before the peer's state is read.
	time.Sleep(time.Second)
	synctest.Wait()
	return sessOutcome{
		err: err, steps: rec.steps(), sum: sum, received: s.Received(), peerData: peer.Data(),
		us: s.State(), peer: s.PeerState(), peerTrue: peer.State(), peerReset: peer.Reset(), guard: g,
		records: peer.Records(),
	}
}

// sessConfig is the connection of every session test.
func sessConfig() probe.SessionConfig {
	return probe.SessionConfig{
		Host: "198.51.100.2", Local: sessLocal, Remote: sessRemote,
		Window: 64240, TTL: 64, SYN: craft.SYNOptionSet{MSS: 1460, WScale: -1},
	}
}

// ladder is the conversation in short: ">" sent, "<" received, the tcpdump
// flags, "+N" the payload length, "*" a retransmission; notes are left out.
func ladder(steps []event.Step) []string {
	var out []string
	for _, s := range steps {
		var b strings.Builder
		switch s.Direction {
		case "sent":
			b.WriteString(">")
		case "received":
			b.WriteString("<")
		default:
			continue
		}
		b.WriteString(s.Flags)
		if s.Len > 0 {
			fmt.Fprintf(&b, "+%d", s.Len)
		}
		if s.Retrans {
			b.WriteString("*")
		}
		out = append(out, b.String())
	}
	return out
}

// explained returns every explanation line, notes included.
func explained(steps []event.Step) string {
	var b strings.Builder
	for _, s := range steps {
		for _, x := range s.Explain {
			b.WriteString(x)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// checkRelative checks the relative numbers of every step against the
// absolute ones: our numbers count from ISS 100, the peer's from its ISN 2000
// (a closed port's RST, seq 0, comes before any peer ISN and has none).
func checkRelative(t *testing.T, steps []event.Step) {
	t.Helper()
	const iss, irs = uint32(sessISN), uint32(tcppeer.DefaultISN)
	for _, s := range steps {
		if s.Direction == "note" {
			continue
		}
		mine, theirs := iss, irs
		if s.Direction == "received" {
			mine, theirs = irs, iss
		}
		var wantSeq, wantAck uint32
		if s.Seq != 0 {
			wantSeq = s.Seq - mine
		}
		if strings.Contains(s.Flags, ".") {
			wantAck = s.Ack - theirs
		}
		if s.RelSeq != wantSeq || s.RelAck != wantAck {
			t.Errorf("step %d %s [%s] seq %d ack %d: rel seq %d ack %d, want %d and %d", s.N, s.Direction, s.Flags,
				s.Seq, s.Ack, s.RelSeq, s.RelAck, wantSeq, wantAck)
		}
	}
}

func TestSessionScenarios(t *testing.T) {
	tests := []struct {
		name    string
		peer    func(p *tcppeer.Peer)
		cfg     func(c *probe.SessionConfig)
		script  sessScript
		wantErr error
		// the conversation, the data received, the end states (ours, the
		// peer's inferred, the peer's real one), retransmissions, and
		// phrases the explanations must contain
		want        []string
		wantData    string
		us, peerInf tcpstate.State
		peerTrue    tcpstate.State
		retrans     int
		wantExplain []string
	}{
		{
			name:     "active close",
			script:   handshakeScript("hello\n", probe.CloseFIN),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">F.", "<F.", ">."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{
				"ack 101 = our seq 100 + 1",
				"ack 2001 = peer seq 2000 + 1",
				"ack 107 = 101 + 6 bytes",
				"we: FIN-WAIT-1 → TIME-WAIT",
				"TIME-WAIT → CLOSED (2·MSL passed",
			},
		},
		{
			name:     "passive close",
			peer:     func(p *tcppeer.Peer) { p.CloseFirst = true },
			script:   handshakeScript("hello\n", probe.CloseWait),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", "<F.", ">.", ">F.", "<."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.TimeWait, peerTrue: tcpstate.TimeWait,
			wantExplain: []string{
				"passive close: we wait for the peer to close first",
				"we: ESTABLISHED → CLOSE-WAIT",
				"we: CLOSE-WAIT → LAST-ACK",
				"we: LAST-ACK → CLOSED",
			},
		},
		{
			name: "half close, the peer keeps sending",
			peer: func(p *tcppeer.Peer) {
				p.AfterFIN = []byte("bye\n")
				p.FINDelay = 500 * time.Millisecond
			},
			script:   handshakeScript("hello\n", probe.CloseHalf),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">F.", "<.", "<P.+4", ">.", "<F.", ">."},
			wantData: "hello\nbye\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{
				"half-close: FIN says we will send nothing more, but we keep receiving",
				"we: FIN-WAIT-1 → FIN-WAIT-2",
				"4 bytes of data from the peer",
				"we: FIN-WAIT-2 → TIME-WAIT",
			},
		},
		{
			name:     "abort with RST",
			script:   handshakeScript("hello\n", probe.CloseRST),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">R."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{"RST with seq 107 = our SND.NXT"},
		},
		{
			name:     "leave it established",
			script:   handshakeScript("hello\n", probe.CloseNone),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">."},
			wantData: "hello\n", us: tcpstate.Established, peerInf: tcpstate.Established, peerTrue: tcpstate.Established,
			wantExplain: []string{"we leave the connection ESTABLISHED and remove the guard"},
		},
		{
			name: "FIN by hand, then close",
			script: func(ctx context.Context, s *probe.Session) error {
				if err := s.Open(ctx); err != nil {
					return err
				}
				if err := s.FIN(ctx); err != nil {
					return err
				}
				return s.Close(ctx, probe.CloseFIN) // must not send a second FIN
			},
			want: []string{">S", "<S.", ">.", ">F.", "<F.", ">."},
			us:   tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
		},
		{
			name:     "simultaneous close",
			peer:     func(p *tcppeer.Peer) { p.CrossFIN = true },
			script:   handshakeScript("hello\n", probe.CloseFIN),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">F.", "<F.", ">.", "<."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.TimeWait, peerTrue: tcpstate.TimeWait,
			wantExplain: []string{
				"we: FIN-WAIT-1 → CLOSING (received FIN before the ACK of ours: simultaneous close)",
				"we: CLOSING → TIME-WAIT",
				"the FINs crossed (simultaneous close)",
				"peer: ESTABLISHED → CLOSING (sent its FIN, then received ours: simultaneous close)",
				"peer: CLOSING → TIME-WAIT",
			},
		},
		{
			name:     "SYN lost once",
			peer:     func(p *tcppeer.Peer) { p.Drop = []int{1} },
			script:   handshakeScript("hello\n", probe.CloseFIN),
			want:     []string{">S", ">S*", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">F.", "<F.", ">."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed, retrans: 1,
			wantExplain: []string{"retransmission 1: no ACK for our SYN within 1s"},
		},
		{
			name:     "data lost once",
			peer:     func(p *tcppeer.Peer) { p.Drop = []int{3} },
			script:   handshakeScript("hello\n", probe.CloseFIN),
			want:     []string{">S", "<S.", ">.", ">P.+6", ">P.+6*", "<P.+6", ">.", ">F.", "<F.", ">."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed, retrans: 1,
			wantExplain: []string{"tail loss probe: no ACK for 6 bytes at seq 101 within 2·SRTT"},
		},
		{
			name:     "FIN lost once",
			peer:     func(p *tcppeer.Peer) { p.Drop = []int{5} },
			script:   handshakeScript("hello\n", probe.CloseFIN),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">F.", ">F.*", "<F.", ">."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed, retrans: 1,
			wantExplain: []string{"tail loss probe: no ACK for our FIN within 2·SRTT"},
		},
		{
			name:     "SYN, data and FIN each lost once",
			peer:     func(p *tcppeer.Peer) { p.Drop = []int{1, 4, 7} },
			script:   handshakeScript("hello\n", probe.CloseFIN),
			want:     []string{">S", ">S*", "<S.", ">.", ">P.+6", ">P.+6*", "<P.+6", ">.", ">F.", ">F.*", "<F.", ">."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed, retrans: 3,
			wantExplain: []string{
				"retransmission 1: no ACK for our SYN within 1s",
				// RFC 6298 §5.7: after a lost SYN the RTO starts at 3 s, and no
				// sample comes from a retransmitted segment (Karn).
				"retransmission 1: no ACK for 6 bytes at seq 101 within 3s",
				"retransmission 1: no ACK for our FIN within 3s",
			},
		},
		{
			name:   "duplicate echo",
			peer:   func(p *tcppeer.Peer) { p.Duplicate = []int{3} },
			script: handshakeScript("hello\n", probe.CloseFIN),
			// The first echo acknowledges our data, so our FIN leaves before the copy arrives.
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+6", ">.", ">F.", "<P.+6", ">.", "<F.", ">."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{"duplicate: seq 2001 to 2007 was already received"},
		},
		{
			name:     "echo out of order",
			peer:     func(p *tcppeer.Peer) { p.Reorder = true },
			script:   handshakeScript("hello\n", probe.CloseFIN),
			want:     []string{">S", "<S.", ">.", ">P.+6", "<P.+3", ">.", ">F.", "<P.+3", ">.", "<F.", ">."},
			wantData: "hello\n", us: tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{
				"out of order: we expect seq 2001, this starts 3 bytes later",
				"the gap is filled: 3 held bytes are now in order",
			},
		},
		{
			name:    "the peer resets mid-way",
			peer:    func(p *tcppeer.Peer) { p.ResetAt = 3 },
			script:  handshakeScript("hello\n", probe.CloseFIN),
			wantErr: probe.ErrReset,
			want:    []string{">S", "<S.", ">.", ">P.+6", "<R."},
			us:      tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{"RST with seq 2001 = RCV.NXT: acceptable, the peer aborted the connection"},
		},
		{
			name:    "closed port",
			peer:    func(p *tcppeer.Peer) { p.Answer = tcppeer.Closed },
			script:  handshakeScript("hello\n", probe.CloseFIN),
			wantErr: probe.ErrRefused,
			want:    []string{">S", "<R."},
			us:      tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{"RST,ACK with ack 101 = our ISN 100 + 1: nothing listens on port 7"},
		},
		{
			name:    "silent port",
			peer:    func(p *tcppeer.Peer) { p.Answer = tcppeer.Silent },
			cfg:     func(c *probe.SessionConfig) { c.Retries = 2 },
			script:  handshakeScript("hello\n", probe.CloseFIN),
			wantErr: probe.ErrNoAnswer,
			want:    []string{">S", ">S*", ">S*"},
			us:      tcpstate.Closed, peerInf: tcpstate.SynReceived, peerTrue: tcpstate.Closed, retrans: 2,
			wantExplain: []string{"retransmission 2: no ACK for our SYN within 2s"},
		},
		{
			name: "the peer never closes",
			peer: func(p *tcppeer.Peer) { p.NeverClose = true },
			cfg:  func(c *probe.SessionConfig) { c.Timeout = 3 * time.Second },
			script: func(ctx context.Context, s *probe.Session) error {
				if err := s.Open(ctx); err != nil {
					return err
				}
				return s.Close(ctx, probe.CloseHalf)
			},
			wantErr: probe.ErrPeerStays,
			want:    []string{">S", "<S.", ">.", ">F.", "<.", ">R."},
			us:      tcpstate.Closed, peerInf: tcpstate.Closed, peerTrue: tcpstate.Closed,
			wantExplain: []string{"the peer did not close within 3s", "RST: abort instead of waiting forever"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				peer := tcppeer.New()
				if tt.peer != nil {
					tt.peer(peer)
				}
				cfg := sessConfig()
				if tt.cfg != nil {
					tt.cfg(&cfg)
				}
				got := runSession(t, peer, cfg, tt.script, nil)
				if !errors.Is(got.err, tt.wantErr) || (tt.wantErr == nil) != (got.err == nil) {
					t.Errorf("error = %v, want %v", got.err, tt.wantErr)
				}
				if diff := cmp.Diff(tt.want, ladder(got.steps)); diff != "" {
					t.Errorf("conversation (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.wantData, string(got.received)); diff != "" {
					t.Errorf("data received (-want +got):\n%s", diff)
				}
				if tt.wantData != "" && !bytes.HasPrefix([]byte(tt.wantData), got.peerData) {
					t.Errorf("the peer got %q, want a prefix of %q", got.peerData, tt.wantData)
				}
				gotStates := []tcpstate.State{got.us, got.peer, got.peerTrue}
				wantStates := []tcpstate.State{tt.us, tt.peerInf, tt.peerTrue}
				if diff := cmp.Diff(wantStates, gotStates); diff != "" {
					t.Errorf("end states [us, peer inferred, peer real] (-want +got):\n%s", diff)
				}
				if got.sum.Retransmissions != tt.retrans {
					t.Errorf("summary: %d retransmissions, want %d", got.sum.Retransmissions, tt.retrans)
				}
				text := explained(got.steps)
				for _, w := range tt.wantExplain {
					if !strings.Contains(text, w) {
						t.Errorf("no explanation contains %q; they are:\n%s", w, text)
					}
				}
				checkRelative(t, got.steps)
				if got.guard.blocked != 1 || got.guard.released != 1 {
					t.Errorf("guard: %d blocked, %d released, want 1 and 1", got.guard.blocked, got.guard.released)
				}
			})
		})
	}
}

// TestSessionRetransmitsWithBackoff checks RFC 6298's doubling: a SYN lost
// three times is resent after 1 s, 2 s and 4 s.
func TestSessionRetransmitsWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peer := tcppeer.New()
		peer.Drop = []int{1, 2, 3}
		got := runSession(t, peer, sessConfig(), handshakeScript("", probe.CloseRST), nil)
		if got.err != nil {
			t.Fatalf("session: %v", got.err)
		}
		var gaps []time.Duration
		for i := 1; i < 4; i++ {
			gaps = append(gaps, got.records[i].Time.Sub(got.records[i-1].Time))
		}
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
		if diff := cmp.Diff(want, gaps); diff != "" {
			t.Errorf("time between SYNs (-want +got):\n%s", diff)
		}
		if got.sum.SRTTMs != 0 {
			t.Errorf("srtt %v ms: retransmitted segments must not be sampled (Karn)", got.sum.SRTTMs)
		}
	})
}

// TestSessionGolden renders the textbook handshake (ISN 100, peer ISN 2000,
// 6 bytes, active close) in both text views and as JSON lines.
func TestSessionGolden(t *testing.T) {
	var ladderBuf, listBuf, jsonBuf bytes.Buffer
	synctest.Test(t, func(t *testing.T) {
		sinks := fanout{
			&event.Text{W: &ladderBuf, View: event.ViewLadder},
			&event.Text{W: &listBuf, View: event.ViewList},
			event.NewJSON(&jsonBuf),
		}
		got := runSession(t, tcppeer.New(), sessConfig(), handshakeScript("hello\n", probe.CloseFIN), sinks)
		if got.err != nil {
			t.Fatalf("session: %v", got.err)
		}
	})
	for _, tt := range []struct {
		file string
		got  []byte
	}{
		{"handshake_ladder.golden", ladderBuf.Bytes()},
		{"handshake_list.golden", listBuf.Bytes()},
		{"handshake_json.golden", jsonBuf.Bytes()},
	} {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, tt.got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(tt.got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}
