package probe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// Verdicts of a scenario.
const (
	Conforms     = "conforms"
	Deviates     = "deviates"
	Inconclusive = "inconclusive"
)

// Dialer makes the fresh connection each scenario runs on: a session to
// port (the listening port, or the closed one), not yet begun.
type Dialer func(port uint16) (*Session, func(), error)

// RSTConfig is what `tcpshake rst` needs besides the dialer.
type RSTConfig struct {
	Port       uint16        // a listening port
	ClosedPort uint16        // a closed port (closed-port scenario)
	Wait       time.Duration // how long to wait for the peer's answer
}

// A scenario checks one rule on a fresh connection.
type scenario struct {
	name, title, rfc string
	// conn: the scenario needs an established connection (it can also run
	// in the shell, on the connection there).
	conn bool
	run  func(ctx context.Context, r *rstRun) event.Scenario
}

// rstRun is one scenario being run.
type rstRun struct {
	s    *Session
	cfg  RSTConfig
	dial Dialer
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

func scenarioTable() []scenario {
	return []scenario{
		{name: "closed-port", title: "SYN to a closed port", rfc: "RFC 9293 §3.10.7.1", run: closedPort},
		{name: "ack-to-listener", title: "a bare ACK to a listening port, no connection", rfc: "RFC 9293 §3.10.7.2", run: ackToListener},
		{name: "exact-rst", title: "RST with seq = RCV.NXT in an established connection", rfc: "RFC 5961 §3.2 / RFC 9293 §3.10.7.4", conn: true, run: exactRST},
		{name: "in-window-rst", title: "RST inside the window but not at RCV.NXT", rfc: "RFC 5961 §3.2", conn: true, run: inWindowRST},
		{name: "out-of-window-rst", title: "RST outside the window", rfc: "RFC 5961 §3.2 / RFC 9293 §3.10.7.4", conn: true, run: outOfWindowRST},
		{name: "syn-in-established", title: "SYN on an established connection", rfc: "RFC 5961 §4.2", conn: true, run: synInEstablished},
		{name: "rst-in-syn-received", title: "RST instead of the handshake's final ACK", rfc: "RFC 9293 §3.10.7.4 (SYN-RECEIVED)", run: rstInSynReceived},
		{name: "data-after-reset", title: "data on the 4-tuple of a connection the peer aborted", rfc: "RFC 9293 §3.10.7.2 / §3.10.7.1", conn: true, run: dataAfterReset},
		{name: "ack-of-unsent-data", title: "an ACK for bytes the peer never sent", rfc: "RFC 9293 §3.10.7.4 / RFC 5961 §5.2", conn: true, run: ackOfUnsent},
		{name: "challenge-ack-burst", title: "ten in-window RSTs at once: are challenge ACKs rate-limited?", rfc: "RFC 5961 §7", conn: true, run: challengeBurst},
		{name: "fin-in-syn-received", title: "FIN instead of the handshake's final ACK", rfc: "RFC 9293 §3.10.7.4 (SYN-RECEIVED, eighth step)", run: finInSynReceived},
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
	for _, n := range names {
		if ctx.Err() != nil {
			break
		}
		sc := byName[n]
		port := cfg.Port
		if n == "closed-port" {
			port = cfg.ClosedPort
		}
		s, closeFn, err := dial(port)
		if err != nil {
			return out, err
		}
		r := &rstRun{s: s, cfg: cfg, dial: dial}
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
		res.Name, res.Title, res.RFC = sc.name, sc.title, sc.rfc
		if ctx.Err() != nil {
			// Interrupted in the middle: what was seen is not a verdict.
			res.Verdict, res.Why = Inconclusive, "interrupted before the scenario finished"
			sink.Emit(res)
			out = append(out, res)
			break
		}
		sink.Emit(res)
		out = append(out, res)
	}
	sum := event.Summary{Command: "rst", Elapsed: ms(now().Sub(start))}
	n := 0
	for _, r := range out {
		if r.Verdict == Conforms {
			n++
		}
	}
	sum.Outcome = fmt.Sprintf("%d of %d scenarios conform", n, len(out))
	if ctx.Err() != nil {
		sum.Outcome = fmt.Sprintf("interrupted after %d of %d scenarios (%d conform)", len(out), len(names), n)
	}
	sum.Scenarios = out
	sink.Emit(sum)
	return out, ctx.Err()
}

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
			res := sc.run(ctx, &rstRun{s: s, cfg: RSTConfig{Wait: wait}})
			res.Name, res.Title, res.RFC = sc.name, sc.title, sc.rfc
			s.env.Sink.Emit(res)
			return res, nil
		}
	}
	return event.Scenario{}, fmt.Errorf("unknown in-connection scenario %q: want one of %s", name, strings.Join(InConnection(), ", "))
}

// establish performs the handshake for a scenario.
func (r *rstRun) establish(ctx context.Context) (string, bool) {
	s := r.s
	if err := s.SYN(ctx); err != nil {
		return err.Error(), false
	}
	if err := s.WaitOpenWithin(ctx, 3*time.Second); err != nil {
		return err.Error(), false
	}
	if s.State() == tcpstate.Established {
		if err := s.ACK(ctx); err != nil {
			return err.Error(), false
		}
	}
	if s.State().String() != "ESTABLISHED" {
		return fmt.Sprintf("no connection to port %d (we are in %s): the scenario needs a listening port", s.cfg.Remote.Port(), s.State()), false
	}
	// Let the final ACK arrive before the test segment.
	if _, err := s.Collect(ctx, 20*time.Millisecond, 0); err != nil {
		return err.Error(), false
	}
	return "", true
}

// send crafts a segment for the scenario.
func (r *rstRun) send(ctx context.Context, c Crafted) error {
	_, err := r.s.Craft(ctx, c)
	return err
}

// collect gathers the peer's answers.
func (r *rstRun) collect(ctx context.Context, enough int) []craft.Segment {
	got, _ := r.s.Collect(ctx, r.cfg.Wait, enough)
	return got
}

// before records the peer's state before the test segment.
func (r *rstRun) before(ctx context.Context, res *event.Scenario) {
	r.s.Settle(ctx)
	res.RemoteBefore = r.s.PeerState().String()
	res.ObservedBefore = r.s.Observed()
}

func (r *rstRun) after(ctx context.Context, res *event.Scenario) {
	r.s.Settle(ctx)
	res.RemoteAfter = r.s.PeerState().String()
	res.ObservedAfter = r.s.Observed()
}

// listening reports whether the peer's kernel is known to have a listener
// on the port (false when it cannot be asked).
func (r *rstRun) listening() bool {
	if r.s.env.Observer == nil {
		return false
	}
	ok, err := r.s.env.Observer.Listening(r.s.cfg.Remote)
	return err == nil && ok
}

// alive checks that the connection survived. With the peer's kernel in
// view, its state says so; otherwise one byte of data must be acknowledged.
func (r *rstRun) alive(ctx context.Context, res *event.Scenario) (bool, string) {
	if r.s.Observing() {
		ok := res.ObservedAfter == "ESTABLISHED"
		return ok, "the peer's kernel shows " + res.ObservedAfter
	}
	want := r.s.SndNxt().Add(1)
	if err := r.s.Write(ctx, []byte{'.'}); err != nil {
		return false, err.Error()
	}
	for _, seg := range r.collect(ctx, 1) {
		if seg.Flags.Has(craft.RST) {
			return false, "one byte of data drew a RST: the connection is gone"
		}
		if seg.Flags.Has(craft.ACK) && seg.Ack == want {
			return true, fmt.Sprintf("one byte of data was acknowledged (ack %d)", uint32(want))
		}
	}
	return false, "one byte of data was not acknowledged"
}

// survived is alive, with how it was checked added to what was observed.
func (r *rstRun) survived(ctx context.Context, res *event.Scenario) bool {
	ok, how := r.alive(ctx, res)
	res.Observed += "; " + how
	return ok
}

// gone checks that the peer has no connection left, and adds how it was
// checked to what was observed: its kernel shows none,
// or a bare ACK on the tuple draws <SEQ=SEG.ACK><CTL=RST>.
func (r *rstRun) gone(ctx context.Context, res *event.Scenario) bool {
	ok, how := r.goneHow(ctx, res)
	res.Observed += "; " + how
	return ok
}

// goneHow is gone without the note.
func (r *rstRun) goneHow(ctx context.Context, res *event.Scenario) (bool, string) {
	if r.s.Observing() {
		return res.ObservedAfter == "CLOSED", "the peer's kernel shows " + res.ObservedAfter
	}
	ack := r.s.RcvNxt()
	flags := craft.ACK
	if err := r.send(ctx, Crafted{Flags: flags, Ack: &ack}); err != nil {
		return false, err.Error()
	}
	for _, seg := range r.collect(ctx, 1) {
		if seg.Flags.Has(craft.RST) {
			return true, "a bare ACK afterwards drew RST: no connection is left"
		}
	}
	return false, "a bare ACK afterwards drew no RST: the connection may still exist"
}

// exchange sends c and collects the answers (enough: stop after that many,
// 0: wait the whole time), recording the peer's state before and after and
// what came back. A failure to send is the scenario's end (inconclusive).
func (r *rstRun) exchange(ctx context.Context, res *event.Scenario, c Crafted, enough int) ([]craft.Segment, error) {
	r.before(ctx, res)
	if err := r.send(ctx, c); err != nil {
		return nil, err
	}
	got := r.collect(ctx, enough)
	r.after(ctx, res)
	res.Observed = describeSegs(got)
	return got, nil
}

func describeSegs(segs []craft.Segment) string {
	if len(segs) == 0 {
		return "nothing"
	}
	var parts []string
	for i := range segs {
		sg := &segs[i]
		p := fmt.Sprintf("%s seq %d", sg.Flags.Tcpdump(), uint32(sg.Seq))
		if sg.Flags.Has(craft.ACK) {
			p += fmt.Sprintf(" ack %d", uint32(sg.Ack))
		}
		if len(sg.Payload) > 0 {
			p += fmt.Sprintf(" len %d", len(sg.Payload))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

func first(segs []craft.Segment) *craft.Segment {
	if len(segs) == 0 {
		return nil
	}
	return &segs[0]
}

// challenge finds a challenge ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
// from the peer, i.e. ack = our SND.NXT.
func challenge(segs []craft.Segment, sndNxt craft.Seq) (n int) {
	for i := range segs {
		sg := &segs[i]
		if sg.Flags == craft.ACK && sg.Ack == sndNxt && len(sg.Payload) == 0 {
			n++
		}
	}
	return n
}

func closedPort(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	res := event.Scenario{
		Sent:     fmt.Sprintf("SYN seq %d (our ISN) to port %d", uint32(s.ISS()), s.cfg.Remote.Port()),
		Expected: fmt.Sprintf("RST,ACK with seq 0 and ack %d = ISN + 1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>", uint32(s.ISS())+1),
	}
	r.before(ctx, &res)
	if err := s.SYN(ctx); err != nil {
		return inconclusive(res, err.Error())
	}
	got := r.collect(ctx, 1)
	r.after(ctx, &res)
	res.Observed = describeSegs(got)
	sg := first(got)
	switch {
	case sg == nil:
		return inconclusive(res, "nothing came back in time: the port may be filtered")
	case sg.Flags.Has(craft.SYN):
		return inconclusive(res, "the port answered SYN-ACK: it is open; give --closed-port a closed one")
	case sg.Flags.Has(craft.RST|craft.ACK) && sg.Seq == 0 && sg.Ack == s.ISS().Add(1):
		return conforms(res, "the reset names our SYN exactly")
	case sg.Flags.Has(craft.RST):
		return deviates(res, fmt.Sprintf("a reset, but with %s seq %d ack %d", sg.Flags.Tcpdump(), uint32(sg.Seq), uint32(sg.Ack)))
	}
	return deviates(res, "an answer other than RST")
}

func ackToListener(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq, ack := s.ISS(), craft.Seq(s.env.Rand())
	res := event.Scenario{
		Sent:     fmt.Sprintf("ACK seq %d ack %d (both made up) to listening port %d", uint32(seq), uint32(ack), s.cfg.Remote.Port()),
		Expected: fmt.Sprintf("RST with seq %d = our ack and no ACK bit: <SEQ=SEG.ACK><CTL=RST>; no connection is created", uint32(ack)),
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.ACK, Seq: &seq, Ack: &ack}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	sg := first(got)
	switch {
	case sg == nil && r.listening():
		return deviates(res, "nothing came back: a listener must answer an ACK with RST")
	case sg == nil:
		return inconclusive(res, "nothing came back: the port may be filtered (only the peer's kernel could tell that it listens)")
	case sg.Flags.Has(craft.RST) && !sg.Flags.Has(craft.ACK) && sg.Seq == ack:
		return conforms(res, "the reset carries our ack as its seq")
	case sg.Flags.Has(craft.RST):
		return deviates(res, fmt.Sprintf("a reset, but %s seq %d", sg.Flags.Tcpdump(), uint32(sg.Seq)))
	}
	return deviates(res, "an answer other than RST")
}

func exactRST(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt()
	res := event.Scenario{
		Sent:     fmt.Sprintf("RST seq %d = the peer's RCV.NXT (our SND.NXT)", uint32(seq)),
		Expected: "no answer; the peer aborts the connection (its socket is gone, its application sees a reset)",
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 0)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	if len(got) > 0 {
		return deviates(res, "the peer answered an acceptable RST")
	}
	ok := r.gone(ctx, &res)
	if !ok {
		return deviates(res, "the connection survived an exact RST")
	}
	return conforms(res, "silent abort, as RFC 9293 §3.10.7.4 (second check) says")
}

func inWindowRST(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt().Add(1)
	res := event.Scenario{
		Sent:     fmt.Sprintf("RST seq %d = RCV.NXT + 1: inside the window, not exact", uint32(seq)),
		Expected: fmt.Sprintf("a challenge ACK (ack %d = RCV.NXT), and the connection survives", uint32(s.SndNxt())),
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	if challenge(got, s.SndNxt()) == 0 {
		if alive, how := r.alive(ctx, &res); !alive {
			res.Observed += "; " + how
			return deviates(res, "no challenge ACK, and the connection was aborted by a RST that was not exact")
		}
		return deviates(res, "no challenge ACK came back")
	}
	alive := r.survived(ctx, &res)
	if !alive {
		return deviates(res, "a challenge ACK came, but the connection did not survive")
	}
	return conforms(res, "challenge ACK, connection intact")
}

func outOfWindowRST(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt().Add(1 << 31)
	res := event.Scenario{
		Sent:     fmt.Sprintf("RST seq %d = RCV.NXT + 2^31: far outside any window", uint32(seq)),
		Expected: "dropped silently: no answer, the connection survives",
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 0)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	alive := r.survived(ctx, &res)
	switch {
	case !alive:
		return deviates(res, "the connection did not survive an out-of-window RST")
	case len(got) > 0:
		return deviates(res, "the peer answered an out-of-window RST (it should drop it silently)")
	}
	return conforms(res, "silently dropped, connection intact")
}

func synInEstablished(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt()
	res := event.Scenario{
		Sent:     fmt.Sprintf("SYN seq %d (inside the window) on the established connection", uint32(seq)),
		Expected: fmt.Sprintf("a challenge ACK (ack %d), no reset, and the connection survives", uint32(s.SndNxt())),
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.SYN, Seq: &seq}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	// Count before alive: its probe byte moves SND.NXT on.
	n := challenge(got, s.SndNxt())
	alive := r.survived(ctx, &res)
	switch {
	case n == 0 && !alive:
		return deviates(res, "the SYN aborted the connection (RFC 793's old rule, which RFC 5961 replaced)")
	case n == 0:
		return deviates(res, "no challenge ACK came back")
	case !alive:
		return deviates(res, "a challenge ACK came, but the connection did not survive")
	}
	return conforms(res, "challenge ACK, connection intact")
}

func rstInSynReceived(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	s.ManualACK()
	res := event.Scenario{Expected: "no answer; the peer drops the embryonic connection (only the listener remains)"}
	if err := s.SYN(ctx); err != nil {
		return inconclusive(res, err.Error())
	}
	if got := r.collect(ctx, 1); len(got) == 0 || !got[0].Flags.Has(craft.SYN|craft.ACK) {
		return inconclusive(res, "no SYN-ACK: the port must be listening")
	}
	seq := s.SndNxt()
	res.Sent = fmt.Sprintf("SYN, then RST seq %d = ISN + 1 instead of the final ACK", uint32(seq))
	if _, err := r.exchange(ctx, &res, Crafted{Flags: craft.RST, Seq: &seq}, 0); err != nil {
		return inconclusive(res, err.Error())
	}
	if r.s.Observing() {
		res.Observed += "; the peer's kernel shows " + res.ObservedAfter
		if res.ObservedAfter != "CLOSED" {
			return deviates(res, "the embryonic connection is still there")
		}
		return conforms(res, "dropped at once, back to LISTEN only")
	}
	// Without a view of its kernel: the would-be final ACK must now draw a reset.
	ack := s.RcvNxt()
	if err := r.send(ctx, Crafted{Flags: craft.ACK, Ack: &ack}); err != nil {
		return inconclusive(res, err.Error())
	}
	for _, sg := range r.collect(ctx, 1) {
		if sg.Flags.Has(craft.RST) {
			res.Observed += "; the final ACK afterwards drew RST"
			return conforms(res, "the embryonic connection is gone")
		}
	}
	return deviates(res, "the final ACK afterwards drew no RST: the embryonic connection survived")
}

func dataAfterReset(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	seq := s.SndNxt()
	if err := r.send(ctx, Crafted{Flags: craft.RST, Seq: &seq}); err != nil {
		return inconclusive(event.Scenario{}, err.Error())
	}
	r.collect(ctx, 0)
	ack := s.RcvNxt()
	res := event.Scenario{
		Sent:     fmt.Sprintf("after an exact RST aborted the connection: data \"x\" seq %d ack %d on the same 4-tuple", uint32(seq), uint32(ack)),
		Expected: fmt.Sprintf("RST with seq %d = our ack: <SEQ=SEG.ACK><CTL=RST>: the connection is gone, so the listener (or, without one, the CLOSED state) answers", uint32(ack)),
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.PSH | craft.ACK, Seq: &seq, Ack: &ack, Data: []byte("x")}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	sg := first(got)
	switch {
	case sg == nil:
		return deviates(res, "nothing came back: a segment for no connection must draw RST")
	case sg.Flags.Has(craft.RST) && sg.Seq == ack:
		return conforms(res, "the reset carries our ack as its seq")
	case sg.Flags.Has(craft.RST):
		return deviates(res, fmt.Sprintf("a reset with seq %d, not %d", uint32(sg.Seq), uint32(ack)))
	}
	return deviates(res, "an answer other than RST: the connection was not aborted")
}

func ackOfUnsent(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	ack := s.RcvNxt().Add(1000)
	res := event.Scenario{
		Sent:     fmt.Sprintf("ACK ack %d = the peer's SND.NXT + 1000: acknowledges bytes it never sent", uint32(ack)),
		Expected: fmt.Sprintf("an ACK (seq %d, ack %d) and the segment dropped; no state change", uint32(s.RcvNxt()), uint32(s.SndNxt())),
	}
	got, err := r.exchange(ctx, &res, Crafted{Flags: craft.ACK, Ack: &ack}, 1)
	if err != nil {
		return inconclusive(res, err.Error())
	}
	n := challenge(got, s.SndNxt())
	alive := r.survived(ctx, &res)
	switch {
	case !alive:
		return deviates(res, "the connection did not survive")
	case n == 0:
		return deviates(res, "no ACK came back: the segment was dropped silently, without the ACK RFC 9293 asks for")
	}
	return conforms(res, "ACK sent, segment dropped, connection intact")
}

func challengeBurst(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	const burst = 10
	res := event.Scenario{
		Sent:     fmt.Sprintf("%d RSTs back to back, seq RCV.NXT+1 … RCV.NXT+%d (all in the window, none exact)", burst, burst),
		Expected: fmt.Sprintf("at least one challenge ACK, and fewer than %d: RFC 5961 §7 asks for a limit on challenge ACKs", burst),
	}
	r.before(ctx, &res)
	for i := uint32(1); i <= burst; i++ {
		seq := s.SndNxt().Add(i)
		if err := r.send(ctx, Crafted{Flags: craft.RST, Seq: &seq}); err != nil {
			return inconclusive(res, err.Error())
		}
	}
	got := r.collect(ctx, 0)
	r.after(ctx, &res)
	n := challenge(got, s.SndNxt())
	res.Observed = fmt.Sprintf("%d challenge ACK(s) for %d RSTs", n, burst)
	alive := r.survived(ctx, &res)
	switch {
	case !alive:
		return deviates(res, "the connection did not survive")
	case n == 0:
		return deviates(res, "no challenge ACK at all")
	case n >= burst:
		return deviates(res, "one challenge ACK per RST: no rate limit")
	}
	return conforms(res, fmt.Sprintf("rate-limited to %d (Linux: one per 500 ms per socket, net.ipv4.tcp_invalid_ratelimit)", n))
}

func finInSynReceived(ctx context.Context, r *rstRun) event.Scenario {
	s := r.s
	s.ManualACK()
	res := event.Scenario{}
	if err := s.SYN(ctx); err != nil {
		return inconclusive(res, err.Error())
	}
	if got := r.collect(ctx, 1); len(got) == 0 || !got[0].Flags.Has(craft.SYN|craft.ACK) {
		return inconclusive(res, "no SYN-ACK: the port must be listening")
	}
	fin := s.SndNxt().Add(1)
	res.Sent = fmt.Sprintf("SYN, then FIN,ACK seq %d ack %d instead of the final ACK", uint32(s.SndNxt()), uint32(s.RcvNxt()))
	res.Expected = fmt.Sprintf("the ACK completes the handshake and the FIN is acknowledged (ack %d); the peer moves to CLOSE-WAIT", uint32(fin))
	r.before(ctx, &res)
	if err := s.FIN(ctx); err != nil {
		return inconclusive(res, err.Error())
	}
	got := r.collect(ctx, 0)
	r.after(ctx, &res)
	res.Observed = describeSegs(got)
	acked := false
	for i := range got {
		if got[i].Flags.Has(craft.ACK) && got[i].Ack == fin {
			acked = true
		}
	}
	if r.s.Observing() {
		res.Observed += "; the peer's kernel shows " + res.ObservedAfter
	}
	switch {
	case !acked:
		return deviates(res, "our FIN was not acknowledged")
	case r.s.Observing() && res.ObservedAfter != "CLOSE-WAIT" && res.ObservedAfter != "LAST-ACK" && res.ObservedAfter != "CLOSED":
		return deviates(res, "the peer is in "+res.ObservedAfter+", not CLOSE-WAIT (or past it)")
	}
	return conforms(res, "FIN accepted with the handshake's ACK")
}

func conforms(res event.Scenario, why string) event.Scenario {
	res.Verdict, res.Why = Conforms, why
	return res
}

func deviates(res event.Scenario, why string) event.Scenario {
	res.Verdict, res.Why = Deviates, why
	return res
}

func inconclusive(res event.Scenario, why string) event.Scenario {
	res.Verdict, res.Why = Inconclusive, why
	return res
}
