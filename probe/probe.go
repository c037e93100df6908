package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
)

// Config is what to send in a probe run. The CLI fills it from flags.
type Config struct {
	Host  string     // as the user wrote it, for display
	Addr  netip.Addr // the resolved peer
	Ports []uint16
	Src   netip.Addr // our address (from the route, or -s)
	Iface string     // the interface the probes leave by, for display

	SPort   uint16 // our source port, reserved by the caller (ReservePort); 0: a random one per probe
	Flags   craft.Flags
	Seq     *craft.Seq // nil: a random ISN per probe
	Ack     *craft.Seq // nil: 0, or random when ACK is set
	Window  uint16
	TTL     uint8
	SYN     craft.SYNOptionSet
	Options []craft.Option // raw options appended after the SYN options
	Data    []byte

	Count    int           // probes per port
	Interval time.Duration // between rounds of probes
	Timeout  time.Duration // 0: adaptive (see InitialTimeout)
	Retries  int           // retransmissions of a probe that got no answer
	// NoEcho: do not send an ICMP echo request first. With an adaptive
	// timeout, its reply is a round-trip sample before the first probe is
	// due, as nmap's host discovery gives it one.
	NoEcho bool
}

// Env is what a run needs from the outside world.
type Env struct {
	Sender  capture.Sender
	Matcher *capture.Matcher
	Sink    event.Sink
	Now     func() time.Time
	Rand    func() uint32 // ISNs, source ports, IP IDs
	// Unreachable, when set, is asked at the end of a run that got no
	// answer at all: a non-empty reason (e.g. "link-down", "no-neighbour")
	// and why in words mean our probes never left this host, so the silent
	// ports are undecided, not filtered (see ScanEnv.Unreachable).
	Unreachable func(peer netip.Addr) (reason, why string)
}

// Outcome is what a probe run found.
type Outcome struct {
	Results []event.Result
	Open    int
}

// port is one port's evidence across its probes.
type port struct {
	num      uint16
	sent     int
	received int
	best     int // rank of the best evidence so far
	result   event.Result
}

// flight is one probe in the air.
type flight struct {
	port    *port
	probe   *capture.Probe
	pkt     []byte
	sentAt  time.Time   // when we last handed it to the kernel
	sends   []time.Time // every copy's send, first to last
	real    time.Time   // when we last sent it, on the system clock
	retrans int
	refused bool // our own output firewall refused it (EPERM): it never left
}

// Run probes every port Count times and reports steps, results and a summary.
// When the run ends early (its context is cancelled, a send fails), every
// port that has no answer and whose wait had not run out is reported
// "undecided", with why, never as filtered.
func Run(ctx context.Context, cfg Config, env Env) (Outcome, error) {
	start := env.Now()
	ports := make([]*port, len(cfg.Ports))
	for i, p := range cfg.Ports {
		ports[i] = &port{num: p}
	}
	r := &runner{cfg: cfg, env: env, start: start, echoC: make(chan capture.Reply, 1)}
	r.emitStart()
	if cfg.Timeout == 0 && !cfg.NoEcho {
		if err := r.sendEcho(); err != nil {
			return r.finish(ports, err), err
		}
		defer env.Matcher.ForgetEcho(cfg.Addr, r.echoID, 1)
	}
	if err := r.rounds(ctx, ports); err != nil {
		return r.finish(ports, err), err
	}
	return r.finish(ports, nil), nil
}

type runner struct {
	cfg      Config
	env      Env
	start    time.Time
	echoC    chan capture.Reply
	echoID   uint16
	echoAt   time.Time
	est      rttEstimator
	stats    rttStats
	sent     int
	recv     int
	refusals int          // probes our own firewall refused
	steps    int          // steps emitted so far
	pending  []event.Step // steps of this round, not yet emitted (flush)
}

func (r *runner) emitStart() {
	probe := r.segment(0, 0)
	b, _ := probe.Marshal()
	r.env.Sink.Emit(event.Start{
		Command: "probe", Host: r.cfg.Host, Addr: r.cfg.Addr.String(), Src: r.cfg.Src.String(),
		Interface: r.cfg.Iface, Ports: r.cfg.Ports, Flags: r.cfg.Flags.String(), Count: r.cfg.Count,
		HeaderLen: len(b) - len(r.cfg.Data), DataLen: len(r.cfg.Data),
	})
}

// segment builds the probe for dport from sport with sequence number isn.
func (r *runner) segment(sport uint16, isn uint32) craft.Segment {
	c := r.cfg
	seg := craft.Segment{
		Src:     netip.AddrPortFrom(c.Src, sport),
		Dst:     netip.AddrPortFrom(c.Addr, 0),
		Seq:     craft.Seq(isn),
		Flags:   c.Flags,
		Window:  c.Window,
		TTL:     c.TTL,
		ID:      uint16(r.env.Rand()),
		Payload: c.Data,
	}
	if c.Seq != nil {
		seg.Seq = *c.Seq
	}
	switch {
	case c.Ack != nil:
		seg.Ack = *c.Ack
	case c.Flags.Has(craft.ACK):
		seg.Ack = craft.Seq(r.env.Rand())
	}
	if c.Flags.Has(craft.SYN) {
		seg.Options = craft.SYNOptions(c.SYN)
	}
	seg.Options = append(seg.Options, c.Options...)
	return seg
}

func (r *runner) sport() uint16 {
	if r.cfg.SPort != 0 {
		return r.cfg.SPort
	}
	return uint16(32768 + r.env.Rand()%(61000-32768))
}

// maxInFlight bounds the probes waiting at once (rounds of -c overlap
// when -i is shorter than the wait): each may get one reply, and the
// channel has room for all of them, so the matcher never drops one.
const maxInFlight = 4096

// rounds sends round k at start + k·Interval, whatever the earlier rounds
// still wait for (a silent port does not hold the next round back, as in
// ping), and waits for every probe's answer or its own timeout, with
// retransmissions. Steps are emitted in time order once no step can come
// before them any more.
func (r *runner) rounds(ctx context.Context, ports []*port) error {
	defer r.flush()
	replies := make(chan capture.Reply, min(len(ports)*r.cfg.Count, maxInFlight))
	inflight := make(map[*capture.Probe]*flight, len(ports))
	defer func() {
		for p := range inflight {
			r.env.Matcher.Forget(p)
		}
	}()
	// Waits are scheduled on the system clock (env.Now only stamps the
	// steps, and a test may freeze it).
	sched := time.Now()
	next := 0 // the next round to send
	for next < r.cfg.Count || len(inflight) > 0 {
		now := time.Now()
		due := sched.Add(time.Duration(next) * r.cfg.Interval)
		// A fixed --seq makes every round's probe to a port the same
		// segment: its answer could not be told from the one before, so
		// that round waits until nothing is in the air.
		room := len(inflight)+len(ports) <= cap(replies) && (r.cfg.Seq == nil || len(inflight) == 0)
		if next < r.cfg.Count && !now.Before(due) && room {
			if err := r.sendRound(ports, replies, inflight); err != nil {
				return err
			}
			next++
			continue
		}
		wake, any := time.Time{}, false
		if next < r.cfg.Count {
			wake, any = due, true
		}
		// The adaptive timeout shrinks with the first round trip measured
		// (the echo's), so every wait is computed anew.
		timeout := r.timeout()
		for _, f := range inflight {
			if d := f.real.Add(timeout); !any || d.Before(wake) {
				wake, any = d, true
			}
		}
		timer := time.NewTimer(max(wake.Sub(now), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case rep := <-r.echoC:
			timer.Stop()
			r.echoed(rep)
		case rep := <-replies:
			timer.Stop()
			if f := inflight[rep.Probe]; f != nil {
				delete(inflight, rep.Probe)
				if err := r.answered(f, rep); err != nil {
					return err
				}
			}
		case <-timer.C:
			if err := r.expire(inflight); err != nil {
				return err
			}
		}
		if len(inflight) == 0 {
			r.flush()
		} else {
			r.flushBefore(r.env.Now().Add(-settle))
		}
	}
	return nil
}

// settle is how long after a step nothing handled later can still come
// before it: a received step carries the kernel's arrival time, which may
// precede the handling of sends we stamped meanwhile.
const settle = 200 * time.Millisecond

func (r *runner) timeout() time.Duration {
	if r.cfg.Timeout != 0 {
		return r.cfg.Timeout
	}
	return r.est.timeout()
}

// sendRound registers and sends one probe to every port.
func (r *runner) sendRound(ports []*port, replies chan capture.Reply, inflight map[*capture.Probe]*flight) error {
	for _, pt := range ports {
		seg := r.segment(r.sport(), r.env.Rand())
		seg.Dst = netip.AddrPortFrom(r.cfg.Addr, pt.num)
		pkt, err := seg.Marshal()
		if err != nil {
			return fmt.Errorf("probe: build segment: %w", err)
		}
		p, err := r.env.Matcher.Expect(seg, replies)
		if err != nil {
			return err
		}
		f := &flight{port: pt, probe: p, pkt: pkt}
		inflight[p] = f
		if err := r.send(f, false); err != nil {
			return err
		}
		if f.refused {
			delete(inflight, p)
		}
	}
	return nil
}

// expire retransmits the probes whose wait ran out, or gives them up as
// silent after the last retransmission.
func (r *runner) expire(inflight map[*capture.Probe]*flight) error {
	now, timeout := time.Now(), r.timeout()
	for p, f := range inflight {
		if now.Before(f.real.Add(timeout)) {
			continue
		}
		if f.retrans < r.cfg.Retries {
			if err := r.send(f, true); err != nil {
				return err
			}
			if f.refused {
				delete(inflight, p)
			}
			continue
		}
		r.env.Matcher.Forget(p)
		delete(inflight, p)
		r.evidence(f.port, rankNone, r.noAnswer(f.port))
	}
	return nil
}

// sendEcho sends one ICMP echo request to the peer before the probes.
func (r *runner) sendEcho() error {
	r.echoID = uint16(r.env.Rand())
	pkt, err := craft.EchoRequest(r.cfg.Src, r.cfg.Addr, r.echoID, 1)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	r.env.Matcher.ExpectEcho(r.cfg.Addr, r.echoID, 1, r.echoC)
	r.echoAt = r.env.Now()
	return r.env.Sender.Send(pkt, r.cfg.Addr)
}

// echoed takes the echo reply's round trip as the first RTT sample, so the
// first timeout adapts before any probe is answered.
func (r *runner) echoed(rep capture.Reply) {
	d := rep.Time.Sub(rep.Sent)
	if rep.Sent.IsZero() || rep.Time.IsZero() {
		d = r.env.Now().Sub(r.echoAt)
	}
	r.est.sample(d)
	rtt := ms(d)
	r.emitStep(event.Step{
		TimeMs: ms(rep.Time.Sub(r.start)), Direction: "received", Src: rep.Packet.Echo.Src.String(),
		Dst: rep.Packet.Echo.Dst.String(), ICMP: "echo-reply", RTTMs: &rtt, Probe: true,
		Explain: []string{fmt.Sprintf("ICMP echo reply: a round trip of %s before any probe was answered, so the probes wait %v instead of %v (RFC 6298 estimate, at least %v)",
			fmtDur(d), r.est.timeout(), InitialTimeout, MinTimeout)},
	})
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.3f ms", ms(d)) }

func (r *runner) send(f *flight, retrans bool) error {
	f.sentAt = r.env.Now()
	f.sends = append(f.sends, f.sentAt)
	f.real = time.Now()
	if err := r.env.Sender.Send(f.pkt, r.cfg.Addr); err != nil {
		if !isRefused(err) {
			return err
		}
		r.refused(f, err)
		return nil
	}
	if retrans {
		f.retrans++
	}
	f.port.sent++
	r.sent++
	st := r.step("sent", &f.probe.Sent, f.sentAt)
	st.Retrans = retrans
	st.Probe = true
	if retrans {
		st.Explain = []string{fmt.Sprintf("no answer within the timeout: the same segment again (retransmission %d of %d)", f.retrans, r.cfg.Retries)}
	}
	r.emitStep(st)
	return nil
}

// refused settles a probe that our own output firewall refused (EPERM from
// the netfilter output hook): it never left, so its port is undecided
// (our-firewall), never filtered, and the other ports are still probed, as
// a scan does. The caller takes the flight out of the ones in the air.
func (r *runner) refused(f *flight, err error) {
	f.refused = true
	r.env.Matcher.Forget(f.probe)
	r.refusals++
	res := r.baseResult(f.port)
	res.State, res.Reason = "undecided", "our-firewall"
	r.evidence(f.port, rankRefused, res)
	if r.refusals == 1 {
		r.env.Sink.Emit(event.Warning{Message: fmt.Sprintf("%v: our own firewall refused a probe to port %d (%v: the netfilter output hook dropped it before it left); see nft list ruleset. The port is undecided, the others are still probed",
			r.cfg.Addr, f.port.num, err)})
	}
}

// rtt is the round trip of an answer: from the kernel timestamps of the
// probe leaving and the answer arriving when both are known (the wire time
// tcpdump would show), else from our own clock at send time. After a
// retransmission the answer may belong to any copy sent before it arrived
// (Karn), so it is timed from the last of those, never from a copy sent
// after it arrived (which gave negative round trips), and not used to
// adapt the timeout.
func (r *runner) rtt(f *flight, rep capture.Reply) (time.Duration, bool) {
	if f.retrans == 0 && !rep.Sent.IsZero() && !rep.Time.IsZero() {
		return rep.Time.Sub(rep.Sent), true
	}
	at := rep.Time
	if at.IsZero() {
		at = r.env.Now()
	}
	from := f.sends[0]
	for _, t := range f.sends[1:] {
		if !t.After(at) {
			from = t
		}
	}
	return max(at.Sub(from), 0), f.retrans == 0
}

func (r *runner) answered(f *flight, rep capture.Reply) error {
	d, fresh := r.rtt(f, rep)
	if fresh {
		r.est.sample(d)
	}
	r.stats.add(ms(d))
	f.port.received++
	r.recv++
	rtt := ms(d)
	sent := &f.probe.Sent
	pt := f.port

	if rep.Packet.Kind == craft.KindICMP {
		ic := &rep.Packet.ICMP
		st := event.Step{
			TimeMs: ms(rep.Time.Sub(r.start)), Direction: "received",
			Src: ic.From.String(), Dst: r.cfg.Src.String(), ICMP: ic.Reason(), RTTMs: &rtt, Probe: true,
			Explain: []string{fmt.Sprintf("ICMP %s from %v quoting our segment to port %d (seq %d): something on the way rejected it, so the port is filtered", ic.Reason(), ic.From, pt.num, uint32(sent.Seq))},
		}
		r.emitStep(st)
		res := r.baseResult(pt)
		res.State, res.Reason, res.RTTMs = "filtered", ic.Reason(), &rtt
		res.From = ic.From.String()
		r.evidence(pt, rankICMP, res)
		return nil
	}

	got := &rep.Packet.Seg
	state, reason, why := classify(sent, got)
	st := r.step("received", got, rep.Time)
	st.RTTMs = &rtt
	st.Probe = true
	st.Explain = why
	st.RelSeq, st.RelAck = 0, uint32(got.Ack-sent.Seq)
	r.emitStep(st)

	res := r.baseResult(pt)
	res.State, res.Reason, res.RTTMs = state, reason, &rtt
	ttl, win := got.TTL, got.Window
	res.TTL, res.Window = &ttl, &win
	rank := rankRST
	if got.Flags.Has(craft.SYN) {
		rank = rankSYNACK
		if err := r.reset(got, rep.Time); err != nil {
			return err
		}
	}
	r.evidence(pt, rank, res)
	return nil
}

// reset tears down the half-open connection a SYN-ACK created, so the peer
// leaves SYN-RECEIVED at once instead of retransmitting its SYN-ACK: the
// reset for a segment with ACK set is <SEQ=SEG.ACK><CTL=RST> (RFC 9293
// §3.10.7.1).
func (r *runner) reset(synack *craft.Segment, at time.Time) error {
	rst := craft.Segment{
		Src: synack.Dst, Dst: synack.Src, Seq: synack.Ack, Flags: craft.RST,
		TTL: r.cfg.TTL, ID: uint16(r.env.Rand()),
	}
	pkt, err := rst.Marshal()
	if err != nil {
		return fmt.Errorf("probe: build reset: %w", err)
	}
	now := r.env.Now()
	if err := r.env.Sender.Send(pkt, r.cfg.Addr); err != nil {
		return err
	}
	if now.Before(at) {
		now = at // never before the SYN-ACK it answers (only a frozen test clock says so)
	}
	st := r.step("sent", &rst, now)
	st.Probe = true
	st.Explain = []string{fmt.Sprintf("RST seq %d = the SYN-ACK's ack: we never meant to connect, so the peer drops its half-open connection (leaves SYN-RECEIVED)", uint32(rst.Seq))}
	r.emitStep(st)
	return nil
}

// Evidence ranks: a port's state is decided by its strongest answer.
const (
	rankUnset   = iota
	rankRefused // our own firewall refused every probe sent so far
	rankNone
	rankICMP
	rankRST
	rankSYNACK
)

func (r *runner) evidence(pt *port, rank int, res event.Result) {
	if rank > pt.best {
		pt.best, pt.result = rank, res
	}
}

func (r *runner) baseResult(pt *port) event.Result {
	return event.Result{Host: r.cfg.Host, Addr: r.cfg.Addr.String(), Port: pt.num}
}

// noAnswer is the verdict for silence, which depends on what was sent, as in
// nmap: a SYN that gets nothing back was filtered; a FIN, NULL or Xmas probe
// that gets nothing may have reached an open port (RFC 9293 drops them
// there) or been filtered; an ACK probe that gets nothing was filtered.
func (r *runner) noAnswer(pt *port) event.Result {
	res := r.baseResult(pt)
	res.Reason = "no-response"
	switch f := r.cfg.Flags; {
	case f.Has(craft.SYN), f.Has(craft.ACK):
		res.State = "filtered"
	default:
		res.State = "open|filtered"
	}
	return res
}

// undecided is the verdict for a port whose probe got no answer before the
// run ended early, for the reason err: its wait had not run out (or its
// probe never left), so silence says nothing yet.
func (r *runner) undecided(pt *port, err error) event.Result {
	res := r.baseResult(pt)
	res.State, res.Reason = "undecided", "error"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		res.Reason = "interrupted"
	}
	return res
}

// classify turns an accepted TCP answer into a port state, nmap's reason
// word and the explanation in words.
func classify(sent, got *craft.Segment) (state, reason string, why []string) {
	isn := uint32(sent.Seq)
	// What the ack adds to our seq: one for the SYN, and the data on it.
	plus, plusRST := "1 (a SYN takes one sequence number)", "1"
	if n := len(sent.Payload); n > 0 && sent.Flags.Has(craft.SYN) {
		plus = fmt.Sprintf("%d bytes + 1 (the data on our SYN, and the SYN itself)", n)
		if got.Ack == sent.Seq.Add(1) {
			plus = "1: the SYN only; the data on our SYN was not acknowledged (not taken before the handshake completes)"
		}
		plusRST = plus
	}
	switch {
	case got.Flags.Has(craft.SYN):
		return "open", "syn-ack", []string{
			fmt.Sprintf("SYN-ACK: ack %d = our seq %d + %s; the peer's ISN is %d", uint32(got.Ack), isn, plus, uint32(got.Seq)),
			"a listening socket answered: the port is open, and the peer is now in SYN-RECEIVED",
		}
	case sent.Flags.Has(craft.SYN) && !sent.Flags.Has(craft.ACK):
		return "closed", "reset", []string{
			fmt.Sprintf("RST,ACK: ack %d = our seq %d + %s, seq %d: the reset names our SYN (RFC 9293 §3.10.7.1)", uint32(got.Ack), isn, plusRST, uint32(got.Seq)),
			"nothing listens on the port: the peer's kernel refused the connection (closed)",
		}
	case sent.Flags.Has(craft.ACK):
		return "unfiltered", "reset", []string{
			fmt.Sprintf("RST seq %d = our ack: an unexpected ACK is answered with <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.1)", uint32(got.Seq)),
			"the probe reached the host (unfiltered); an ACK probe cannot tell open from closed",
		}
	default:
		return "closed", "reset", []string{
			fmt.Sprintf("RST,ACK: ack %d = our seq %d + %d: a segment without ACK is answered with <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> (RFC 9293 §3.10.7.1)", uint32(got.Ack), isn, sent.Len()),
			"only a port with no listener answers this probe: closed",
		}
	}
}

// emitStep keeps a step of the current round for flush. Sent steps carry our
// clock at the send and received ones the kernel's arrival timestamp, so in
// the order they are handled an answer to the first probe can come after the
// send of a later one it preceded.
func (r *runner) emitStep(st event.Step) {
	r.pending = append(r.pending, st)
}

// flush emits the kept steps in time order, numbering them as it goes, so
// that the output and its t_ms read in the order things happened.
func (r *runner) flush() { r.flushUpTo(math.Inf(1)) }

// flushBefore emits, in time order, the kept steps older than t.
func (r *runner) flushBefore(t time.Time) { r.flushUpTo(ms(t.Sub(r.start))) }

func (r *runner) flushUpTo(tms float64) {
	slices.SortStableFunc(r.pending, func(a, b event.Step) int { return cmp.Compare(a.TimeMs, b.TimeMs) })
	n := 0
	for _, st := range r.pending {
		if st.TimeMs >= tms {
			break
		}
		r.steps++
		st.N = r.steps
		r.env.Sink.Emit(st)
		n++
	}
	r.pending = append(r.pending[:0], r.pending[n:]...)
}

// step describes seg as an event; relative numbers are left for the caller.
func (r *runner) step(dir string, seg *craft.Segment, at time.Time) event.Step {
	if at.IsZero() {
		at = r.env.Now()
	}
	return event.StepOf(0, at.Sub(r.start), dir, seg)
}

// finish reports every port's result and the summary. err is why the run
// ended early, or nil.
func (r *runner) finish(ports []*port, err error) Outcome {
	var out Outcome
	reason, why := "", ""
	if r.recv == 0 && r.sent > 0 && r.env.Unreachable != nil {
		if reason, why = r.env.Unreachable(r.cfg.Addr); reason != "" {
			r.env.Sink.Emit(event.Warning{Message: fmt.Sprintf("%v: %s", r.cfg.Addr, why)})
		}
	}
	for _, pt := range ports {
		res := pt.result
		if pt.best == rankUnset {
			res = r.noAnswer(pt)
			if err != nil {
				res = r.undecided(pt, err)
			}
		}
		if reason != "" && pt.best <= rankNone {
			res = r.baseResult(pt)
			res.State, res.Reason = "undecided", reason
		}
		res.Sent, res.Received = pt.sent, pt.received
		if res.State == "open" {
			out.Open++
		}
		out.Results = append(out.Results, res)
		r.env.Sink.Emit(res)
	}
	sum := event.Summary{
		Command: "probe", Host: r.cfg.Host, Sent: r.sent, Received: r.recv,
		RTT: r.stats.result(), Open: out.Open, Elapsed: ms(r.env.Now().Sub(r.start)),
	}
	if r.sent > 0 {
		sum.LossPct = 100 * float64(r.sent-r.recv) / float64(r.sent)
	}
	if ig := r.env.Matcher.Ignored(); len(ig) > 0 {
		sum.Ignored = ig
	}
	r.env.Sink.Emit(sum)
	return out
}
