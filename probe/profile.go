package probe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// The profile of a peer's TCP stack (`tcpshake rst --profile`): what its
// stack does, measured rather than assumed. Each measurement opens its own
// connections (raw SYNs, or sessions), resets or closes every one of them,
// and is bounded in count and in time.

// Profile measurements, in the order they run.
const (
	ProfileOptions   = "options"
	ProfileISN       = "isn"
	ProfileChallenge = "challenge-ack"
	ProfileSynAck    = "synack-schedule"
	ProfileTimeWait  = "time-wait"
)

// ProfileMeasurements lists the measurements in the order they run.
func ProfileMeasurements() []string {
	return []string{ProfileOptions, ProfileISN, ProfileChallenge, ProfileSynAck, ProfileTimeWait}
}

// ProfileConfig is what `rst --profile` measures and within which bounds.
type ProfileConfig struct {
	Host string
	// Session is the template of every connection: Local's address (its
	// port is reserved per connection), Remote (a listening port), TTL,
	// window, the options of our SYN, the timers of sessions.
	Session SessionConfig
	Only    []string // the measurements to run (nil: all but time-wait, which needs TimeWait)

	Wait time.Duration // how long to wait for an answer to one SYN (default 1 s)

	SynAckWait    time.Duration // how long to record SYN-ACK retransmissions (default 20 s)
	SynAckRetrans int           // stop after this many retransmissions (0: until SynAckWait)

	ISNCount int           // connections on one 4-tuple, and on as many different ones (default 8)
	ISNGap   time.Duration // between connections (default: 10 ms, at least 10 round trips)

	Burst      int           // in-window RSTs back to back (default 25)
	Paced      int           // in-window RSTs one by one (default 20)
	PacedEvery time.Duration // between those (default 100 ms)

	TimeWait        bool          // measure TIME-WAIT (minutes)
	TimeWaitPort    uint16        // a port whose server answers and closes first (default 80)
	TimeWaitRequest []byte        // what to send it (default an HTTP/1.0 request)
	TimeWaitMax     time.Duration // the bound (default 5 min: more than 2·MSL = 4 min)
	TimeWaitEvery   time.Duration // probing period: the resolution (default 1 s)
}

func (c *ProfileConfig) defaults() {
	if c.Wait == 0 {
		c.Wait = time.Second
	}
	if c.SynAckWait == 0 {
		c.SynAckWait = 20 * time.Second
	}
	if c.ISNCount == 0 {
		c.ISNCount = 8
	}
	if c.ISNGap == 0 {
		c.ISNGap = 10 * time.Millisecond
	}
	if c.Burst == 0 {
		c.Burst = 25
	}
	if c.Paced == 0 {
		c.Paced = 20
	}
	if c.PacedEvery == 0 {
		c.PacedEvery = 100 * time.Millisecond
	}
	if c.TimeWaitPort == 0 {
		c.TimeWaitPort = 80
	}
	if c.TimeWaitRequest == nil {
		c.TimeWaitRequest = []byte("GET / HTTP/1.0\r\n\r\n")
	}
	if c.TimeWaitMax == 0 {
		c.TimeWaitMax = 5 * time.Minute
	}
	if c.TimeWaitEvery == 0 {
		c.TimeWaitEvery = time.Second
	}
}

// ParseProfileOnly reads a list of measurement names.
func ParseProfileOnly(s string) ([]string, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	known := map[string]bool{}
	for _, n := range ProfileMeasurements() {
		known[n] = true
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if !known[n] {
			return nil, fmt.Errorf("unknown measurement %q: want some of %s", n, strings.Join(ProfileMeasurements(), ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

// profiler is one profile being measured.
type profiler struct {
	cfg ProfileConfig
	env SessionEnv
	rtt time.Duration // the round trip seen so far (the options' SYN-ACK)
}

// RunProfile measures the peer's stack, emits one profile event per
// measurement and a summary, and returns the events. An error is returned
// only when nothing could be measured (sockets, the guard); a measurement
// that could not decide says so in its event.
func RunProfile(ctx context.Context, cfg ProfileConfig, env SessionEnv) ([]event.Profile, error) {
	cfg.defaults()
	p := &profiler{cfg: cfg, env: env}
	start := env.Now()
	want := map[string]bool{}
	for _, n := range cfg.Only {
		want[n] = true
	}
	if cfg.Only == nil {
		for _, n := range ProfileMeasurements() {
			want[n] = n != ProfileTimeWait || cfg.TimeWait
		}
	}
	runs := []struct {
		name string
		run  func(context.Context) (event.Profile, error)
	}{
		{ProfileOptions, p.options},
		{ProfileISN, p.isn},
		{ProfileChallenge, p.challengeACK},
		{ProfileSynAck, p.synAckSchedule},
		{ProfileTimeWait, p.timeWait},
	}
	var out []event.Profile
	for _, r := range runs {
		if !want[r.name] || ctx.Err() != nil {
			continue
		}
		t0 := env.Now()
		ev, err := r.run(ctx)
		if err != nil && ev.Verdict == "" {
			return out, err
		}
		ev.Name, ev.Host, ev.Addr, ev.Port = r.name, cfg.Host, cfg.Session.Remote.Addr().String(), cfg.Session.Remote.Port()
		if ctx.Err() != nil {
			ev.Verdict, ev.Level, ev.Why = "inconclusive", "", "interrupted before the measurement finished"
		}
		ev.ElapsedMs = ms(env.Now().Sub(t0))
		env.Sink.Emit(ev)
		out = append(out, ev)
	}
	counts := map[string]int{}
	for _, e := range out {
		counts[e.Verdict]++
	}
	var parts []string
	for _, v := range []string{"conforms", "permitted", "deviates", "inconclusive"} {
		if counts[v] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[v], v))
		}
	}
	sum := event.Profile{
		Name: "summary", Title: "profile", Host: cfg.Host, Addr: cfg.Session.Remote.Addr().String(), Port: cfg.Session.Remote.Port(),
		Verdict: "measured", Why: fmt.Sprintf("%s: %s", plural(len(out), "measurement"), strings.Join(parts, ", ")),
		ElapsedMs: ms(env.Now().Sub(start)),
	}
	if ctx.Err() != nil {
		sum.Verdict, sum.Why = "inconclusive", "interrupted: "+sum.Why
	}
	env.Sink.Emit(sum)
	return out, ctx.Err()
}

// tuple reserves a source port (0: a free one) and holds back our kernel's
// RSTs for its 4-tuple to the peer's port. release undoes both.
func (p *profiler) tuple(lport uint16, rport uint16) (netip.AddrPort, func(), error) {
	addr := p.cfg.Session.Local.Addr()
	port, rel, err := ReservePort(addr, lport)
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	local := netip.AddrPortFrom(addr, port)
	remote := netip.AddrPortFrom(p.cfg.Session.Remote.Addr(), rport)
	release := func() { rel() }
	if p.env.Guard != nil {
		grel, err := p.env.Guard.Hold(local, remote)
		if err != nil {
			rel()
			return netip.AddrPort{}, nil, fmt.Errorf("kernel-RST guard: %w", err)
		}
		release = func() { grel(); rel() }
	}
	return local, release, nil
}

// synAnswer is the peer's answer to one SYN.
type synAnswer struct {
	seg      craft.Segment // SYN-ACK, or RST,ACK
	sent, at time.Time     // our SYN leaving, its answer arriving (kernel times when known)
}

func (a *synAnswer) rtt() time.Duration { return a.at.Sub(a.sent) }

// mid is when the peer chose its ISN, as well as we can tell: midway
// between our SYN leaving and the SYN-ACK arriving.
func (a *synAnswer) mid() time.Time { return a.sent.Add(a.rtt() / 2) }

// syn sends one SYN from local to the peer's port with seq and options and
// waits (at most cfg.Wait) for a SYN-ACK or RST,ACK that acknowledges it;
// a SYN-ACK is reset at once with <SEQ=SEG.ACK><CTL=RST>, so nothing stays
// half-open. nil, nil: nothing came.
func (p *profiler) syn(ctx context.Context, local netip.AddrPort, rport uint16, seq craft.Seq, opts craft.Options) (*synAnswer, error) {
	seg := craft.Segment{
		Src: local, Dst: netip.AddrPortFrom(p.cfg.Session.Remote.Addr(), rport),
		Seq: seq, Flags: craft.SYN, Window: p.window(), TTL: p.cfg.Session.TTL, ID: uint16(p.env.Rand()), Options: opts,
	}
	pkt, err := seg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("profile: build SYN: %w", err)
	}
	c := make(chan capture.Reply, 1)
	pr, err := p.env.Matcher.Expect(seg, c)
	if err != nil {
		return nil, err
	}
	defer p.env.Matcher.Forget(pr)
	sentAt := p.env.Now()
	if err := p.env.Sender.Send(pkt, seg.Dst.Addr()); err != nil {
		return nil, fmt.Errorf("profile: send SYN: %w", err)
	}
	timer := time.NewTimer(p.cfg.Wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.env.Matcher.Dead():
		return nil, fmt.Errorf("profile: capture stopped: %w", p.env.Matcher.Err())
	case <-timer.C:
		return nil, nil
	case rep := <-c:
		if rep.Packet.Kind != craft.KindTCP {
			return nil, nil
		}
		a := &synAnswer{seg: rep.Packet.Seg, sent: rep.Sent, at: rep.Time}
		if a.sent.IsZero() {
			a.sent = sentAt
		}
		if a.at.IsZero() {
			a.at = p.env.Now()
		}
		if a.seg.Flags.Has(craft.SYN) {
			if err := p.reset(local, seg.Dst, a.seg.Ack); err != nil {
				return a, err
			}
		}
		return a, nil
	}
}

// reset sends <SEQ=seq><CTL=RST> on the 4-tuple.
func (p *profiler) reset(local, remote netip.AddrPort, seq craft.Seq) error {
	rst := craft.Segment{Src: local, Dst: remote, Seq: seq, Flags: craft.RST, TTL: p.cfg.Session.TTL, ID: uint16(p.env.Rand())}
	pkt, err := rst.Marshal()
	if err != nil {
		return fmt.Errorf("profile: build RST: %w", err)
	}
	if err := p.env.Sender.Send(pkt, remote.Addr()); err != nil {
		return fmt.Errorf("profile: send RST: %w", err)
	}
	return nil
}

func (p *profiler) window() uint16 {
	if p.cfg.Session.Window != 0 {
		return p.cfg.Session.Window
	}
	return 64240
}

// allOptions is a SYN offering every option: MSS, SACK-permitted,
// timestamps and window scale.
func (p *profiler) allOptions() craft.Options { return p.synOptions(true) }

// options: what the SYN-ACK carries for a SYN offering every option, and
// for one offering none.
func (p *profiler) options(ctx context.Context) (event.Profile, error) {
	ev := event.Profile{
		Title:    "the options of the peer's SYN-ACK, for a SYN offering MSS, SACK-permitted, timestamps and window scale, for one offering none, and for one offering all but timestamps (a SYN cookie's signature)",
		RFC:      "RFC 7323 §2.2, §3.2; RFC 2018 §2; RFC 9293 §3.7.1",
		Rule:     "a window scale or timestamps option MAY be sent in a SYN-ACK only if the SYN carried one (RFC 7323); an MSS option SHOULD be sent when the receive MSS differs from the default (SHLD-5)",
		Strength: "MAY",
	}
	port := p.cfg.Session.Remote.Port()
	// The third SYN, everything but timestamps, looks for a SYN cookie
	// (CookieFromOptions).
	var answers [3]*synAnswer
	offers := []craft.Options{p.allOptions(), nil, p.synOptions(false)}
	for i, opts := range offers {
		local, release, err := p.tuple(0, port)
		if err != nil {
			return ev, err
		}
		a, err := p.syn(ctx, local, port, craft.Seq(p.env.Rand()), opts)
		release()
		if err != nil {
			return inconclusiveProfile(ev, err.Error()), nil
		}
		answers[i] = a
		s := event.ProfileSample{SPort: local.Port(), Options: opts.String(), Note: "our SYN's options"}
		if i == 2 {
			s.Note = "our SYN's options, all but timestamps (is its SYN-ACK a cookie?)"
		}
		if opts == nil {
			s.Options, s.Note = "", "our SYN, no options"
		}
		ev.Samples = append(ev.Samples, s)
		if a != nil {
			rtt := ms(a.rtt())
			isn := uint32(a.seg.Seq)
			ev.Samples = append(ev.Samples, event.ProfileSample{TimeMs: ms(a.at.Sub(a.sent)), SPort: local.Port(), Flags: a.seg.Flags.String(), Seq: &isn, RTTMs: &rtt, Options: a.seg.Options.String(), Note: "its answer"})
			if p.rtt == 0 {
				p.rtt = a.rtt()
			}
		}
	}
	j := judgeOptions(answers[0], answers[1], p.cfg.Session.Remote.Addr().Is6())
	var withTS, noTS *craft.Segment
	if answers[0] != nil {
		withTS = &answers[0].seg
	}
	if answers[2] != nil {
		noTS = &answers[2].seg
		j.Lines = append(j.Lines, fmt.Sprintf("to a SYN offering all but timestamps the SYN-ACK carried %s", orNone(noTS.Options.String())))
	}
	ce := CookieFromOptions(withTS, noTS)
	switch ce.Sign {
	case CookieSeen:
		j.Lines = append(j.Lines, "SYN cookie: "+ce.How)
	case CookieNoSign:
		j.Lines = append(j.Lines, "no SYN cookie seen: "+ce.How)
	default:
		j.Lines = append(j.Lines, "SYN cookies undecided: "+ce.How)
	}
	ev.Verdict, ev.Level, ev.Why, ev.Explain = j.Verdict, j.Level, j.Why, j.Lines
	if ce.Sign != CookieUndecided {
		ev.Figures = append(ev.Figures, event.Figure{Name: "syn cookie", Value: b2f(ce.Sign == CookieSeen), Unit: "",
			Text: "1 when the SYN-ACKs carry a SYN cookie's signature (options given with timestamps, forgotten without: RFC 4987 §3.6); absent when that cannot be told"})
	}
	ev.Figures = append(optionFigures(answers[0], answers[1]), ev.Figures...)
	return ev, nil
}

func inconclusiveProfile(ev event.Profile, why string) event.Profile {
	ev.Verdict, ev.Level, ev.Why = "inconclusive", "", why
	return ev
}

// optionFigures are the options of both answers as numbers.
func optionFigures(all, none *synAnswer) []event.Figure {
	var out []event.Figure
	for _, x := range []struct {
		name string
		a    *synAnswer
	}{{"all offered", all}, {"none offered", none}} {
		if x.a == nil || !x.a.seg.Flags.Has(craft.SYN) {
			continue
		}
		o := x.a.seg.Options
		mss, hasMSS := o.MSS()
		ws, hasWS := o.WindowScale()
		_, _, hasTS := o.Timestamps()
		out = append(out, event.Figure{Name: x.name + ": window", Value: float64(x.a.seg.Window), Unit: "bytes", Text: "the window in a SYN-ACK is never scaled (RFC 7323 §2.2)"})
		if hasMSS {
			out = append(out, event.Figure{Name: x.name + ": mss", Value: float64(mss), Unit: "bytes", Text: "the most data it accepts in one segment"})
		} else {
			out = append(out, event.Figure{Name: x.name + ": mss", Value: 0, Unit: "absent", Text: "no MSS option: we must assume 536 (IPv4) or 1220 (IPv6), RFC 9293 §3.7.1"})
		}
		if hasWS {
			out = append(out, event.Figure{Name: x.name + ": wscale", Value: float64(ws), Unit: "shift", Text: fmt.Sprintf("its windows are multiplied by 2^%d once both sides sent the option", ws)})
		}
		out = append(out,
			event.Figure{Name: x.name + ": sackOK", Value: b2f(o.SACKPermitted()), Unit: "", Text: "1 when its SYN-ACK carries SACK-permitted (RFC 2018)"},
			event.Figure{Name: x.name + ": timestamps", Value: b2f(hasTS), Unit: "", Text: "1 when its SYN-ACK carries a timestamps option (RFC 7323 §3)"})
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// judgeOptions: the options of the SYN-ACK to a SYN offering all, and to
// one offering none.
func judgeOptions(all, none *synAnswer, v6 bool) Judgement {
	var j Judgement
	switch {
	case all == nil || none == nil:
		j.Verdict, j.Why = "inconclusive", "a SYN got no answer in time"
		return j
	case !all.seg.Flags.Has(craft.SYN) || !none.seg.Flags.Has(craft.SYN):
		j.Verdict, j.Why = "inconclusive", "the port answered RST: it must be listening"
		return j
	}
	ao, no := all.seg.Options, none.seg.Options
	j.Lines = append(j.Lines,
		fmt.Sprintf("to a SYN offering everything the SYN-ACK carried %s", orNone(ao.String())),
		fmt.Sprintf("to a SYN offering nothing the SYN-ACK carried %s", orNone(no.String())))
	_, hasWS := no.WindowScale()
	_, _, hasTS := no.Timestamps()
	var bad []string
	if hasWS {
		bad = append(bad, "window scale (RFC 7323 §2.2: only if the SYN carried it)")
	}
	if hasTS {
		bad = append(bad, "timestamps (RFC 7323 §3.2: only if the SYN carried it)")
	}
	var took []string
	if _, ok := ao.MSS(); ok {
		took = append(took, "MSS")
	}
	if ao.SACKPermitted() {
		took = append(took, "SACK")
	}
	if _, _, ok := ao.Timestamps(); ok {
		took = append(took, "timestamps")
	}
	if _, ok := ao.WindowScale(); ok {
		took = append(took, "window scale")
	}
	j.Lines = append(j.Lines, fmt.Sprintf("offered everything, it takes up: %s", orNone(strings.Join(took, ", "))))
	if no.SACKPermitted() {
		j.Lines = append(j.Lines, "it sends SACK-permitted to a SYN without it: harmless, SACK is used only when both sides sent it (RFC 2018 §2)")
	}
	if _, ok := ao.MSS(); !ok {
		def := 536
		if v6 {
			def = 1220
		}
		j.Lines = append(j.Lines, fmt.Sprintf("no MSS in its SYN-ACK: we must assume %d (RFC 9293 §3.7.1; SHLD-5 asks for the option when its MSS differs)", def))
	}
	if len(bad) > 0 {
		j.Verdict, j.Level = "deviates", "MAY"
		j.Why = "to a SYN without options its SYN-ACK still carried " + strings.Join(bad, " and ")
		return j
	}
	j.Verdict = "conforms"
	j.Why = "its SYN-ACK carries window scale and timestamps only when our SYN did"
	return j
}

func orNone(s string) string {
	if s == "" || s == "[]" {
		return "no options"
	}
	return s
}

// isn gathers ISNs on one 4-tuple and on fresh ones, and classifies them.
func (p *profiler) isn(ctx context.Context) (event.Profile, error) {
	ev := event.Profile{
		Title:    fmt.Sprintf("initial sequence numbers: %d connections from one source port, %d from as many different ones", p.cfg.ISNCount, p.cfg.ISNCount),
		RFC:      "RFC 6528 §3; RFC 9293 §3.4.1",
		Rule:     "ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a clock (MUST-8), F a keyed hash (SHLD-1)",
		Strength: "MUST",
	}
	gap := max(p.cfg.ISNGap, 10*p.rtt)
	gap = min(gap, time.Second)
	port := p.cfg.Session.Remote.Port()
	t0 := p.env.Now()
	sample := func(local netip.AddrPort) (*ISNSample, error) {
		ours := p.env.Rand()
		a, err := p.syn(ctx, local, port, craft.Seq(ours), nil)
		if err != nil || a == nil || !a.seg.Flags.Has(craft.SYN) {
			return nil, err
		}
		return &ISNSample{SPort: local.Port(), OurISN: ours, ISN: uint32(a.seg.Seq), At: a.mid().Sub(t0), RTT: a.rtt()}, nil
	}
	var same, diff []ISNSample
	missed := 0
	local, release, err := p.tuple(0, port)
	if err != nil {
		return ev, err
	}
	for i := 0; i < p.cfg.ISNCount && ctx.Err() == nil; i++ {
		if i > 0 {
			sleepFor(ctx, gap)
		}
		s, err := sample(local)
		if err != nil {
			release()
			return inconclusiveProfile(ev, err.Error()), nil
		}
		if s == nil {
			missed++
			continue
		}
		same = append(same, *s)
	}
	release()
	for i := 0; i < p.cfg.ISNCount && ctx.Err() == nil; i++ {
		sleepFor(ctx, gap)
		local, release, err := p.tuple(0, port)
		if err != nil {
			return ev, err
		}
		s, err := sample(local)
		release()
		if err != nil {
			return inconclusiveProfile(ev, err.Error()), nil
		}
		if s == nil {
			missed++
			continue
		}
		diff = append(diff, *s)
	}
	r := ClassifyISN(same, diff)
	ev.Samples = append(isnSamples(same, "same 4-tuple"), isnSamples(diff, "new source port")...)
	ev.Verdict, ev.Level, ev.Why = r.Verdict, r.Level, r.Why
	ev.Explain = append(ev.Explain, r.Lines...)
	ev.Explain = append(ev.Explain,
		"same 4-tuple deltas: "+joinInts(r.SameDeltas),
		"different 4-tuple deltas: "+joinInts(r.DiffDeltas))
	if missed > 0 {
		ev.Explain = append(ev.Explain, fmt.Sprintf("%d SYN(s) got no SYN-ACK within %v", missed, p.cfg.Wait))
	}
	ev.Class = r.Class
	ev.Figures = []event.Figure{
		{Name: "difficulty", Value: r.Bits, Unit: "bits", Text: "TCP Sequence Prediction: Difficulty: " + r.Difficulty},
		{Name: "clock rate", Value: r.RatePerUs, Unit: "per µs", Text: "how fast the ISN of one 4-tuple advances (0: no clock)"},
		{Name: "gap", Value: ms(gap), Unit: "ms", Text: "between connections"},
	}
	if r.Clock {
		ev.Figures = append(ev.Figures, event.Figure{Name: "clock tick", Value: r.TickNs, Unit: "ns", Text: "time per increment (RFC 793 suggested 4000 ns)"})
	}
	if r.Predictor == "step" && r.Bits < 1 {
		ev.Figures = append(ev.Figures, event.Figure{Name: "step", Value: float64(r.Step), Unit: "", Text: "the ISN's increase from one connection to the next"})
	}
	return ev, nil
}

func isnSamples(s []ISNSample, note string) []event.ProfileSample {
	var out []event.ProfileSample
	for i, x := range s {
		isn, ours := x.ISN, x.OurISN
		rtt := ms(x.RTT)
		ps := event.ProfileSample{TimeMs: ms(x.At), SPort: x.SPort, Flags: "S.", Seq: &isn, OurISN: &ours, RTTMs: &rtt, Note: note}
		if i > 0 {
			d := ms(x.At - s[i-1].At)
			ps.DeltaMs = &d
		}
		out = append(out, ps)
	}
	return out
}

func joinInts(v []int64) string {
	if len(v) == 0 {
		return "none"
	}
	var p []string
	for _, x := range v {
		p = append(p, fmt.Sprintf("%+d", x))
	}
	return strings.Join(p, " ")
}

// sleepFor waits d or until ctx is done.
func sleepFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// synAckSchedule sends one SYN, never answers the SYN-ACK, and records
// every retransmission of it until the peer gives up, the asked count or
// the bound; then resets the half-open connection.
func (p *profiler) synAckSchedule(ctx context.Context) (event.Profile, error) {
	ev := event.Profile{
		Title:    "the SYN-ACK retransmission schedule: one SYN, never answered",
		RFC:      "RFC 6298 §2.1, §5.5; RFC 9293 §3.8.1",
		Rule:     "the first timeout 1 s (§2.1, SHOULD); after each expiry RTO = RTO · 2 (§5.5, MUST)",
		Strength: "MUST",
	}
	if p.env.Guard == nil {
		j := JudgeSchedule(Schedule{Guarded: false})
		ev.Verdict, ev.Why = j.Verdict, j.Why
		return ev, nil
	}
	port := p.cfg.Session.Remote.Port()
	local, release, err := p.tuple(0, port)
	if err != nil {
		return ev, err
	}
	defer release()
	key := capture.Key{Local: local, Remote: netip.AddrPortFrom(p.cfg.Session.Remote.Addr(), port)}
	st, err := p.env.Matcher.Stream(key, 64)
	if err != nil {
		return ev, err
	}
	defer p.env.Matcher.CloseStream(st)
	iss := craft.Seq(p.env.Rand())
	seg := craft.Segment{Src: key.Local, Dst: key.Remote, Seq: iss, Flags: craft.SYN, Window: p.window(), TTL: p.cfg.Session.TTL,
		ID: uint16(p.env.Rand()), Options: craft.SYNOptions(craft.SYNOptionSet{MSS: max(p.cfg.Session.SYN.MSS, 536), WScale: -1})}
	pkt, err := seg.Marshal()
	if err != nil {
		return ev, fmt.Errorf("profile: build SYN: %w", err)
	}
	sched := Schedule{Guarded: p.env.Guard != nil}
	sentAt := p.env.Now()
	if err := p.env.Sender.Send(pkt, key.Remote.Addr()); err != nil {
		return ev, fmt.Errorf("profile: send SYN: %w", err)
	}
	var first time.Time
	var wireSent time.Time
	deadline := sentAt.Add(p.cfg.Wait) // for the first SYN-ACK; then the bound counts from it
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	sched.End = EndBound
loop:
	for {
		// Silence: nothing for 2.5 × the last interval (at least 3 s) after the last SYN-ACK.
		if n := len(sched.Arrivals); n >= 2 {
			last := sched.Arrivals[n-1] - sched.Arrivals[n-2]
			quiet := first.Add(sched.Arrivals[n-1] + max(last*5/2, 3*time.Second))
			timer.Reset(time.Until(minTime(quiet, deadline)))
		}
		select {
		case <-ctx.Done():
			break loop
		case <-st.Dead():
			return ev, fmt.Errorf("profile: capture stopped: %w", st.Err())
		case <-timer.C:
			if !first.IsZero() && p.env.Now().Before(deadline) && len(sched.Arrivals) >= 2 {
				sched.End = EndSilence
			}
			break loop
		case rep := <-st.C():
			if rep.Packet.Kind != craft.KindTCP {
				continue
			}
			sg := &rep.Packet.Seg
			at := rep.Time
			if at.IsZero() {
				at = p.env.Now()
			}
			if rep.Outgoing {
				if sg.Flags == craft.SYN && sg.Seq == iss && wireSent.IsZero() {
					wireSent = at
				}
				continue
			}
			switch {
			case sg.Flags.Has(craft.RST):
				sched.End = EndReset
				ev.Samples = append(ev.Samples, event.ProfileSample{TimeMs: ms(at.Sub(sentAt)), SPort: local.Port(), Flags: sg.Flags.String(), Note: "the peer reset the half-open connection"})
				break loop
			case sg.Flags.Has(craft.SYN|craft.ACK) && sg.Ack == iss.Add(1):
				if first.IsZero() {
					first = at
					// From here the bound counts from the first SYN-ACK.
					deadline = first.Add(p.cfg.SynAckWait)
					timer.Reset(time.Until(deadline))
				}
				sched.Arrivals = append(sched.Arrivals, at.Sub(first))
				isn := uint32(sg.Seq)
				s := event.ProfileSample{TimeMs: ms(at.Sub(first)), SPort: local.Port(), Flags: sg.Flags.String(), Seq: &isn, Options: sg.Options.String()}
				if n := len(sched.Arrivals); n > 1 {
					d := ms(sched.Arrivals[n-1] - sched.Arrivals[n-2])
					s.DeltaMs = &d
					s.Note = fmt.Sprintf("retransmission %d", n-1)
				} else {
					s.Note = "the first SYN-ACK"
				}
				ev.Samples = append(ev.Samples, s)
				if p.cfg.SynAckRetrans > 0 && len(sched.Arrivals)-1 >= p.cfg.SynAckRetrans {
					sched.End = EndCount
					break loop
				}
			}
		}
	}
	if !first.IsZero() {
		sched.Waited = p.env.Now().Sub(first)
	}
	if !first.IsZero() && sched.End != EndReset {
		// Nothing stays half-open: the SYN-ACK's ack is the seq the peer accepts.
		if err := p.reset(key.Local, key.Remote, iss.Add(1)); err != nil {
			return ev, err
		}
		ev.Explain = append(ev.Explain, fmt.Sprintf("then we sent RST seq %d (the SYN-ACK's ack): nothing stays half-open", uint32(iss.Add(1))))
	}
	j := JudgeSchedule(sched)
	ev.Verdict, ev.Level, ev.Why = j.Verdict, j.Level, j.Why
	ev.Explain = append(j.Lines, ev.Explain...)
	if !first.IsZero() {
		base := sentAt
		if !wireSent.IsZero() {
			base = wireSent
		}
		ev.Figures = append(ev.Figures, event.Figure{Name: "first SYN-ACK", Value: ms(first.Sub(base)), Unit: "ms", Text: "after our SYN: the round trip"})
	}
	for i, d := range sched.Intervals() {
		ev.Figures = append(ev.Figures, event.Figure{Name: fmt.Sprintf("timeout %d", i+1), Value: d.Seconds(), Unit: "s", Text: fmt.Sprintf("the peer's RTO before retransmission %d", i+1)})
	}
	ev.Figures = append(ev.Figures,
		event.Figure{Name: "retransmissions", Value: float64(max(len(sched.Arrivals)-1, 0)), Unit: "", Text: "SYN-ACKs after the first"},
		event.Figure{Name: "listened", Value: sched.Waited.Seconds(), Unit: "s", Text: fmt.Sprintf("after the first SYN-ACK (bound %v)", p.cfg.SynAckWait)})
	return ev, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// quietEnv is env with a sink that keeps only warnings: the profile's
// helper sessions are not the story, their measurements are.
func quietEnv(env SessionEnv) SessionEnv {
	next := env.Sink
	env.Sink = event.SinkFunc(func(e event.Event) {
		if w, ok := e.(event.Warning); ok {
			next.Emit(w)
		}
	})
	env.Observer = nil
	return env
}

// session prepares a quiet session from local to the peer's port.
func (p *profiler) session(local netip.AddrPort, rport uint16) *Session {
	cfg := p.cfg.Session
	cfg.Local = local
	cfg.Remote = netip.AddrPortFrom(cfg.Remote.Addr(), rport)
	return NewSession(cfg, quietEnv(p.env))
}

// challengeACK sends in-window RSTs on an established connection, first back
// to back, then paced, and counts the challenge ACKs.
func (p *profiler) challengeACK(ctx context.Context) (event.Profile, error) {
	ev := event.Profile{
		Title:    fmt.Sprintf("the challenge-ACK limit: %d in-window RSTs back to back, then %d one every %v", p.cfg.Burst, p.cfg.Paced, p.cfg.PacedEvery),
		RFC:      "RFC 5961 §3.2, §7",
		Rule:     "an in-window RST that is not exact draws a challenge ACK (§3.2, MUST); challenge ACKs are rate-limited (§7, SHOULD; example: 10 in any 5 s)",
		Strength: "MUST",
	}
	port := p.cfg.Session.Remote.Port()
	local, release, err := p.tuple(0, port)
	if err != nil {
		return ev, err
	}
	defer release()
	s := p.session(local, port)
	defer s.Abort(nil)
	if err := s.Begin("rst --profile"); err != nil {
		return ev, err
	}
	if err := establishQuiet(ctx, s); err != nil {
		return inconclusiveProfile(ev, err.Error()), nil
	}
	t0 := p.env.Now()
	// The burst: every RST at once, then a second for the answers.
	burst := ChallengeCount{Sent: 0}
	for i := 1; i <= p.cfg.Burst; i++ {
		seq := s.SndNxt().Add(uint32(i))
		if _, err := s.Craft(ctx, Crafted{Flags: craft.RST, Seq: &seq}); err != nil {
			return inconclusiveProfile(ev, err.Error()), nil
		}
		burst.Sent++
	}
	burst.Span = p.env.Now().Sub(t0)
	burst.Challenges = p.challenges(ctx, s, t0, t0.Add(time.Second))
	// Let any per-connection limit refill before the paced run.
	if _, err := s.Collect(ctx, 600*time.Millisecond, 0); err != nil {
		return inconclusiveProfile(ev, err.Error()), nil
	}
	paced := ChallengeCount{Every: p.cfg.PacedEvery}
	t1 := p.env.Now()
	for i := 0; i < p.cfg.Paced && ctx.Err() == nil; i++ {
		seq := s.SndNxt().Add(uint32(i%8 + 1))
		if _, err := s.Craft(ctx, Crafted{Flags: craft.RST, Seq: &seq}); err != nil {
			return inconclusiveProfile(ev, err.Error()), nil
		}
		paced.Sent++
		paced.Span = p.env.Now().Sub(t1)
		paced.Challenges = append(paced.Challenges, p.challenges(ctx, s, t1, t1.Add(time.Duration(i+1)*p.cfg.PacedEvery))...)
	}
	paced.Challenges = append(paced.Challenges, p.challenges(ctx, s, t1, p.env.Now().Add(p.cfg.Wait))...)
	alive, how := aliveByData(ctx, s, p.cfg.Wait)
	burst.Checked, paced.Checked, burst.Alive, paced.Alive = true, true, alive, alive
	j := JudgeChallenge(burst, paced)
	ev.Verdict, ev.Level, ev.Why = j.Verdict, j.Level, j.Why
	ev.Explain = append(j.Lines, "afterwards "+how)
	for i, c := range burst.Challenges {
		ev.Samples = append(ev.Samples, event.ProfileSample{TimeMs: ms(c), SPort: local.Port(), Flags: ".", Note: fmt.Sprintf("burst: challenge ACK %d", i+1)})
	}
	for i, c := range paced.Challenges {
		ev.Samples = append(ev.Samples, event.ProfileSample{TimeMs: ms(c), SPort: local.Port(), Flags: ".", Note: fmt.Sprintf("paced: challenge ACK %d", i+1)})
	}
	ev.Figures = []event.Figure{
		{Name: "burst sent", Value: float64(burst.Sent), Unit: "RSTs", Text: fmt.Sprintf("back to back, within %s", ms3(burst.Span))},
		{Name: "burst answered", Value: float64(len(burst.Challenges)), Unit: "challenge ACKs", Text: "in the second after"},
		{Name: "paced sent", Value: float64(paced.Sent), Unit: "RSTs", Text: fmt.Sprintf("one every %v over %s", p.cfg.PacedEvery, secs(paced.Span))},
		{Name: "paced answered", Value: float64(len(paced.Challenges)), Unit: "challenge ACKs", Text: ""},
	}
	if sp := paced.MinSpacing(); sp > 0 {
		text := "between two challenge ACKs: the limit's period"
		if sp < p.cfg.PacedEvery*3/2 {
			text = "between two challenge ACKs: no more than the RSTs' own spacing, so no period of a limit shows"
		}
		ev.Figures = append(ev.Figures, event.Figure{Name: "min spacing", Value: ms(sp), Unit: "ms", Text: text})
	}
	// The connection is reset by the deferred Abort (RST at the peer's RCV.NXT).
	return ev, nil
}

// challenges runs the session until until, and returns when each challenge
// ACK (a bare ACK of our SND.NXT) arrived, counted from t0.
func (p *profiler) challenges(ctx context.Context, s *Session, t0, until time.Time) []time.Duration {
	var out []time.Duration
	for {
		left := until.Sub(p.env.Now())
		if left <= 0 || ctx.Err() != nil {
			return out
		}
		got, err := s.Collect(ctx, left, 1)
		if err != nil {
			return out
		}
		at := p.env.Now()
		for i := range got {
			if isChallengeACK(&got[i], s.SndNxt()) {
				out = append(out, at.Sub(t0))
			}
		}
	}
}

// establishQuiet performs the handshake of a helper session.
func establishQuiet(ctx context.Context, s *Session) error {
	if err := s.SYN(ctx); err != nil {
		return err
	}
	if err := s.WaitOpenWithin(ctx, 3*time.Second); err != nil {
		return err
	}
	if s.State() != tcpstate.Established {
		return fmt.Errorf("no connection to port %d (we are in %s): the measurement needs a listening port", s.cfg.Remote.Port(), s.State())
	}
	if err := s.ACK(ctx); err != nil {
		return err
	}
	// Let the final ACK arrive before the test segments.
	_, err := s.Collect(ctx, 20*time.Millisecond, 0)
	return err
}

// isChallengeACK: a challenge ACK is <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
// from the peer (RFC 5961 §3.2): a bare ACK whose ack is our SND.NXT.
func isChallengeACK(sg *craft.Segment, sndNxt craft.Seq) bool {
	return sg.Flags == craft.ACK && sg.Ack == sndNxt && len(sg.Payload) == 0
}

// aliveByData checks that the connection survived: one byte of data must
// be acknowledged.
func aliveByData(ctx context.Context, s *Session, wait time.Duration) (bool, string) {
	want := s.SndNxt().Add(1)
	if err := s.Write(ctx, []byte{'.'}); err != nil {
		return false, "the connection is gone: " + err.Error()
	}
	got, _ := s.Collect(ctx, wait, 0)
	for _, seg := range got {
		if seg.Flags.Has(craft.RST) {
			return false, "one byte of data drew a RST: the connection is gone"
		}
	}
	if want.LessThanEq(s.me.SndUna) {
		return true, fmt.Sprintf("one byte of data was acknowledged (ack %d): the connection survived", uint32(want))
	}
	return false, "one byte of data was not acknowledged"
}

// timeWait makes the peer close first (a server that answers and closes),
// then probes the 4-tuple with SYNs until its TIME-WAIT ends or the bound.
func (p *profiler) timeWait(ctx context.Context) (event.Profile, error) {
	ev := event.Profile{
		Title:    fmt.Sprintf("the TIME-WAIT duration: the peer closes first (port %d), then a SYN every %v on the same 4-tuple", p.cfg.TimeWaitPort, p.cfg.TimeWaitEvery),
		RFC:      "RFC 9293 §3.6.1 (MUST-13), §3.4.2",
		Rule:     "the side that closes first lingers in TIME-WAIT for 2·MSL, MSL \"arbitrarily defined to be 2 minutes\"",
		Strength: "MUST",
	}
	port := p.cfg.TimeWaitPort
	local, release, err := p.tuple(0, port)
	if err != nil {
		return ev, err
	}
	defer release()
	s := p.session(local, port)
	tw := TimeWait{Bound: p.cfg.TimeWaitMax, Every: p.cfg.TimeWaitEvery}
	err = func() error {
		defer s.Abort(nil)
		if err := s.Open(ctx); err != nil {
			return err
		}
		if err := s.Send(ctx, p.cfg.TimeWaitRequest); err != nil {
			return err
		}
		return s.Close(ctx, CloseWait)
	}()
	if err != nil {
		return inconclusiveProfile(ev, fmt.Sprintf("the connection to port %d did not close as needed: %v", port, err)), nil
	}
	tw.PeerClosedFirst = s.PeerState() == tcpstate.TimeWait
	closedAt := p.env.Now()
	ev.Explain = append(ev.Explain, fmt.Sprintf("the peer closed first (%d bytes of answer); after our FIN and its ACK it is in TIME-WAIT", len(s.Received())))
	if !tw.PeerClosedFirst {
		j := JudgeTimeWait(tw)
		ev.Verdict, ev.Why = j.Verdict, j.Why
		return ev, nil
	}
	key := capture.Key{Local: local, Remote: netip.AddrPortFrom(p.cfg.Session.Remote.Addr(), port)}
	st, err := p.env.Matcher.Stream(key, 64)
	if err != nil {
		return ev, err
	}
	defer p.env.Matcher.CloseStream(st)
	// An old sequence number: TIME-WAIT must not take it for a new
	// incarnation (RFC 9293 §3.10.7.4, RFC 1122 §4.2.2.13), a listener
	// answers it with SYN-ACK.
	old := s.ISS()
	end := closedAt.Add(p.cfg.TimeWaitMax)
	for n := 0; ctx.Err() == nil && p.env.Now().Before(end); n++ {
		next := closedAt.Add(time.Duration(n) * p.cfg.TimeWaitEvery)
		sleepFor(ctx, next.Sub(p.env.Now()))
		syn := craft.Segment{Src: key.Local, Dst: key.Remote, Seq: old, Flags: craft.SYN, Window: p.window(), TTL: p.cfg.Session.TTL, ID: uint16(p.env.Rand())}
		pkt, err := syn.Marshal()
		if err != nil {
			return ev, fmt.Errorf("profile: build SYN: %w", err)
		}
		at := p.env.Now()
		if err := p.env.Sender.Send(pkt, key.Remote.Addr()); err != nil {
			return ev, fmt.Errorf("profile: send SYN: %w", err)
		}
		ans, seg := p.twAnswer(ctx, st, old, at.Add(min(p.cfg.Wait, p.cfg.TimeWaitEvery*9/10)))
		pr := TWProbe{At: at.Sub(closedAt), Answer: ans}
		tw.Probes = append(tw.Probes, pr)
		if ans == "syn-ack" {
			if err := p.reset(key.Local, key.Remote, seg.Ack); err != nil {
				return ev, err
			}
			ev.Explain = append(ev.Explain, fmt.Sprintf("a listener answered %s after the close; we reset that half-open connection", secs(pr.At)))
			break
		}
	}
	j := JudgeTimeWait(tw)
	ev.Verdict, ev.Level, ev.Why = j.Verdict, j.Level, j.Why
	ev.Explain = append(ev.Explain, j.Lines...)
	counts := map[string]int{}
	for _, pr := range tw.Probes {
		counts[pr.Answer]++
	}
	ev.Explain = append(ev.Explain, fmt.Sprintf("%d probes: %d answered by TIME-WAIT with ACK, %d with RST, %d unanswered (a TIME-WAIT may rate-limit its ACKs), %d by a listener",
		len(tw.Probes), counts["ack"], counts["rst"], counts[""], counts["syn-ack"]))
	if d, res, ok := tw.Duration(); ok {
		ev.Figures = append(ev.Figures,
			event.Figure{Name: "time-wait", Value: d.Seconds(), Unit: "s", Text: "from the close to the first SYN a listener answered (midpoint)"},
			event.Figure{Name: "resolution", Value: res.Seconds(), Unit: "s", Text: "± half the probing period"},
			event.Figure{Name: "msl", Value: d.Seconds() / 2, Unit: "s", Text: "the MSL this implies (TIME-WAIT = 2·MSL)"})
	}
	ev.Figures = append(ev.Figures, event.Figure{Name: "probes", Value: float64(len(tw.Probes)), Unit: "SYNs", Text: fmt.Sprintf("bound %v", p.cfg.TimeWaitMax)})
	for _, pr := range tw.Probes {
		ev.Samples = append(ev.Samples, event.ProfileSample{TimeMs: ms(pr.At), SPort: local.Port(), Flags: twFlags(pr.Answer), Note: twNote(pr.Answer)})
	}
	return ev, nil
}

// twAnswer waits until deadline for the peer's answer to our probe SYN.
func (p *profiler) twAnswer(ctx context.Context, st *capture.Stream, seq craft.Seq, deadline time.Time) (string, craft.Segment) {
	timer := time.NewTimer(max(deadline.Sub(p.env.Now()), 0))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", craft.Segment{}
		case <-st.Dead():
			return "", craft.Segment{}
		case <-timer.C:
			return "", craft.Segment{}
		case rep := <-st.C():
			if rep.Outgoing || rep.Packet.Kind != craft.KindTCP {
				continue
			}
			sg := rep.Packet.Seg
			switch {
			case sg.Flags.Has(craft.SYN|craft.ACK) && sg.Ack == seq.Add(1):
				return "syn-ack", sg
			case sg.Flags.Has(craft.RST):
				return "rst", sg
			case sg.Flags.Has(craft.ACK):
				return "ack", sg
			}
		}
	}
}

func twFlags(a string) string {
	switch a {
	case "syn-ack":
		return "S."
	case "rst":
		return "R"
	case "ack":
		return "."
	}
	return ""
}

func twNote(a string) string {
	switch a {
	case "syn-ack":
		return "a listener answered: TIME-WAIT is over"
	case "rst":
		return "TIME-WAIT refused the SYN"
	case "ack":
		return "TIME-WAIT answered with an ACK of the old connection"
	}
	return "no answer"
}
