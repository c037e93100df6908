package probe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"tcpshake/event"
)

// Verdicts of a scenario.
const (
	Conforms     = "conforms"     // the peer did what the rule says
	Deviates     = "deviates"     // it broke the rule (the level says whether a MUST or a SHOULD)
	Permitted    = "permitted"    // it did something else that the RFC's text allows
	Inconclusive = "inconclusive" // not decided; the explanation says what was missing
)

// Dialer makes the fresh connection each scenario runs on: a session to
// port (the listening port, or the closed one), not yet begun.
type Dialer func(port uint16) (*Session, func(), error)

// RSTConfig is what `tcpshake rst` needs besides the dialer.
type RSTConfig struct {
	Port       uint16        // a listening port
	ClosedPort uint16        // a closed port (closed-port scenario)
	EchoPort   uint16        // an echo service (ack-of-unsent-data); 0: Port
	Wait       time.Duration // how long to wait for the peer's answer
	// Tap, when set, is the sink the dialer's sessions emit into: the
	// scenarios read the ICMP errors it saw from it.
	Tap *RSTTap
	// Drops: the peer kernel's drops of our segments are recorded on the
	// steps (--drops), so a scenario may rest on them (ack-of-unsent-data
	// without an echo service).
	Drops bool
	// CheckCookies, when the peer's kernel is not in view, looks for SYN
	// cookies in the options of two SYN-ACKs (CheckCookies). It is called
	// once, at the first scenario whose SYN drew a SYN-ACK, so a port that
	// answers with RST or ICMP gets no extra SYNs (they would use up the
	// peer's ICMP rate limit); nil: not checked.
	CheckCookies func(context.Context) (CookieEvidence, error)
}

// cookieCheck is the run's one call of RSTConfig.CheckCookies.
type cookieCheck struct {
	done bool
	ev   CookieEvidence
}

// A scenario checks one rule on a fresh connection.
type scenario struct {
	name, title string
	rule        func() rule
	// conn: the scenario needs an established connection (it can also run
	// in the shell, on the connection there).
	conn bool
	// port picks the port the scenario runs on (default: cfg.Port).
	port func(RSTConfig) uint16
	run  func(ctx context.Context, r *rstRun) event.Scenario
}

// rstRun is one scenario being run.
type rstRun struct {
	s    *Session
	cfg  RSTConfig
	dial Dialer
	// cookie: the peer answered this scenario's SYN with a SYN cookie, and
	// how that was seen.
	cookie    bool
	cookieHow string
	cookies   *cookieCheck // shared by the run's scenarios
	tapMark   int
	dropMark  int        // where the scenario's drops start in the tap
	tests     []testSeg  // the test segments sent (rst_drops.go)
	byDrop    *dropCheck // a verdict left to the drop records (rst_drops.go)
}

// Scenarios lists the scenario names in the order `all` runs them.
func Scenarios() []string {
	var out []string
	for _, sc := range scenarioTable() {
		out = append(out, sc.name)
	}
	return out
}

// InConnection lists the scenarios that run on an established connection
// (the shell offers them mid-session).
func InConnection() []string {
	var out []string
	for _, sc := range scenarioTable() {
		if sc.conn {
			out = append(out, sc.name)
		}
	}
	return out
}

func closedPortOf(c RSTConfig) uint16 { return c.ClosedPort }

func echoPortOf(c RSTConfig) uint16 {
	if c.EchoPort != 0 {
		return c.EchoPort
	}
	return c.Port
}

func scenarioTable() []scenario {
	return []scenario{
		{name: "closed-port", title: "a SYN with an ack field and an ACK to a closed port", rule: ruleClosedNoACK, port: closedPortOf, run: closedPort},
		{name: "ack-to-listener", title: "a bare ACK to a listening port, no connection", rule: ruleListenACK, run: ackToListener},
		{name: "exact-rst", title: "RST with seq = RCV.NXT in an established connection", rule: ruleExactRST, conn: true, run: exactRST},
		{name: "in-window-rst", title: "RST inside the window but not at RCV.NXT", rule: ruleInWindowRST, conn: true, run: inWindowRST},
		{name: "out-of-window-rst", title: "RST outside the window", rule: ruleOutOfWindowRST, conn: true, run: outOfWindowRST},
		{name: "syn-in-established", title: "SYN on an established connection", rule: ruleSYNInSync, conn: true, run: synInEstablished},
		{name: "rst-in-syn-received", title: "RST instead of the handshake's final ACK", rule: ruleRSTSynRcvd, run: rstInSynReceived},
		{name: "data-after-reset", title: "data on the 4-tuple of a connection the peer aborted", rule: ruleListenACK, conn: true, run: dataAfterReset},
		{name: "ack-of-unsent-data", title: "data with an ACK for bytes the peer never sent, and a zero window", rule: ruleAckUnsent, conn: true, port: echoPortOf, run: ackOfUnsent},
		{name: "challenge-ack-burst", title: "25 in-window RSTs within 1.2 s: are challenge ACKs rate-limited?", rule: ruleThrottle, conn: true, run: challengeBurst},
		{name: "fin-in-syn-received", title: "FIN instead of the handshake's final ACK", rule: ruleFINSynRcvd, run: finInSynReceived},
	}
}

// ParseScenarios reads --scenario: names separated by commas, or "all".
func ParseScenarios(s string) ([]string, error) {
	if s == "" || s == "all" {
		return Scenarios(), nil
	}
	known := map[string]bool{}
	for _, n := range Scenarios() {
		known[n] = true
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if !known[n] {
			return nil, fmt.Errorf("unknown scenario %q: want all or some of %s", n, strings.Join(Scenarios(), ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

// RunRST runs the named scenarios, each on a fresh connection, emits one
// scenario event each and a final summary, and returns the verdicts.
func RunRST(ctx context.Context, names []string, cfg RSTConfig, dial Dialer, sink event.Sink, now func() time.Time) ([]event.Scenario, error) {
	start := now()
	if cfg.Wait == 0 {
		cfg.Wait = 300 * time.Millisecond
	}
	byName := map[string]scenario{}
	for _, sc := range scenarioTable() {
		byName[sc.name] = sc
	}
	var out []event.Scenario
	cookies := &cookieCheck{}
	for _, n := range names {
		if ctx.Err() != nil {
			break
		}
		sc := byName[n]
		port := cfg.Port
		if sc.port != nil {
			port = sc.port(cfg)
		}
		s, closeFn, err := dial(port)
		if err != nil {
			return out, err
		}
		r := &rstRun{s: s, cfg: cfg, dial: dial, tapMark: cfg.Tap.mark(), dropMark: cfg.Tap.dropMark(), cookies: cookies}
		res := func() event.Scenario {
			defer closeFn()
			defer s.Abort(nil)
			s.SetEpoch(start) // every scenario's steps count from the run's start
			if err := s.Begin("rst " + sc.name); err != nil {
				return event.Scenario{Verdict: Inconclusive, Why: err.Error()}
			}
			if sc.conn {
				if why, ok := r.establish(ctx); !ok {
					return event.Scenario{Verdict: Inconclusive, Why: why}
				}
			}
			return sc.run(ctx, r)
		}()
		r.finish(sc, &res)
		if ctx.Err() != nil {
			// Interrupted in the middle: what was seen is not a verdict.
			res.Verdict, res.Level, res.Why = Inconclusive, "", "interrupted before the scenario finished"
			sink.Emit(res)
			out = append(out, res)
			break
		}
		sink.Emit(res)
		out = append(out, res)
	}
	sum := event.Summary{Command: "rst", Elapsed: ms(now().Sub(start))}
	sum.Outcome = outcome(out)
	if ctx.Err() != nil {
		sum.Outcome = fmt.Sprintf("interrupted after %d of %d scenarios (%s)", len(out), len(names), sum.Outcome)
	}
	sum.Scenarios = out
	sink.Emit(sum)
	return out, ctx.Err()
}

// outcome counts the verdicts: "9 of 11 scenarios conform, 1 permitted, 1
// deviates (MUST)".
func outcome(res []event.Scenario) string {
	n := map[string]int{}
	for _, r := range res {
		k := r.Verdict
		if k == Deviates && r.Level != "" {
			k += " (" + r.Level + ")"
		}
		n[k]++
	}
	s := fmt.Sprintf("%d of %d scenarios conform", n[Conforms], len(res))
	for _, k := range []string{Permitted, Deviates + " (MUST)", Deviates + " (SHOULD)", Deviates, Inconclusive} {
		if n[k] > 0 {
			s += fmt.Sprintf(", %d %s", n[k], k)
		}
	}
	return s
}

// finish fills in what every scenario carries: its name, title, rule and
// what is known of the peer.
func (r *rstRun) finish(sc scenario, res *event.Scenario) {
	ru := sc.rule()
	res.Name, res.Title = sc.name, sc.title
	if res.RFC == "" {
		res.RFC, res.Rule, res.Strength, res.StrengthNote = ru.rfc, ru.words, ru.strength, ru.note
	}
	res.Peer = r.peerStack()
	if r.cookie {
		res.SynCookie, res.SynCookieHow = true, r.cookieHow
	}
	res.ICMP = append(res.ICMP, r.cfg.Tap.icmpSince(r.tapMark)...)
	r.judgeDrops(res)
	if len(res.ICMP) > 0 && strings.HasPrefix(res.Observed, "nothing") {
		// An ICMP error is an answer: never "nothing".
		res.Observed = strings.Join(res.ICMP, "; ") + strings.TrimPrefix(res.Observed, "nothing")
	}
	if res.Verdict != Deviates {
		res.Level = ""
	}
}

// peerStack is what is known of the peer's stack: Linux when its sockets are
// observed through sock_diag, else nothing.
func (r *rstRun) peerStack() string {
	if r.s.Observing() {
		return "Linux (its sockets observed through sock_diag)"
	}
	return "the peer's stack (not observed: unknown)"
}

// linux reports whether the peer is known to be Linux (observed).
func (r *rstRun) linux() bool { return r.s.Observing() }

// RunInConnection runs one in-connection scenario on s, an established
// session (the shell's `scenario NAME`).
func RunInConnection(ctx context.Context, name string, s *Session, wait time.Duration) (event.Scenario, error) {
	for _, sc := range scenarioTable() {
		if sc.name == name && sc.conn {
			if s.State().String() != "ESTABLISHED" {
				return event.Scenario{}, fmt.Errorf("%s needs an established connection (we are in %s)", name, s.State())
			}
			if wait == 0 {
				wait = 300 * time.Millisecond
			}
			r := &rstRun{s: s, cfg: RSTConfig{Wait: wait}}
			res := sc.run(ctx, r)
			r.finish(sc, &res)
			s.env.Sink.Emit(res)
			return res, nil
		}
	}
	return event.Scenario{}, fmt.Errorf("unknown in-connection scenario %q: want one of %s", name, strings.Join(InConnection(), ", "))
}

func conforms(res event.Scenario, why string) event.Scenario {
	res.Verdict, res.Level, res.Why = Conforms, "", why
	return res
}

// deviates is a broken rule of strength level (MUST or SHOULD).
func deviates(res event.Scenario, level, why string) event.Scenario {
	res.Verdict, res.Level, res.Why = Deviates, level, why
	return res
}

func permitted(res event.Scenario, why string) event.Scenario {
	res.Verdict, res.Level, res.Why = Permitted, "", why
	return res
}

func inconclusive(res event.Scenario, why string) event.Scenario {
	res.Verdict, res.Level, res.Why = Inconclusive, "", why
	return res
}
