package probe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// The server's end of a session: the same engine (loop, sender, receiver,
// explainer, close), with our end starting in LISTEN and the model of the
// client in CLOSED. A Listener (listen.go) creates one per client, from its
// first SYN.

// Teaching are listen's switches that change the server on purpose, so the
// client's TCP shows what it does about it.
type Teaching struct {
	DropSYN int        // ignore the client's first N SYNs (--drop-syn): its kernel retransmits them
	NoAck   int        // leave its first N data segments unacknowledged (--no-ack): it retransmits them
	Cookies *CookieJar // answer SYNs with SYN cookies and keep no state until the ACK (--syn-cookie)
	Manual  bool       // the SYN-ACK waits for SynAck (shell --listen)
}

// teaching is the session's use of Teaching.
type teaching struct {
	cookies   *CookieJar
	manual    bool
	beginErr  error              // how AcceptSYN ended (the listener's begin)
	stream    chan capture.Reply // a stream buffer the listener made beforehand (nil: Begin makes one)
	synAck    *craft.Segment     // shell --listen: the SYN-ACK SynAck will send, and its words
	synAckWhy []string
	dropSYN   int       // SYNs still to ignore (--drop-syn): the client's kernel retransmits them
	noAck     int       // data segments still to leave unacknowledged (--no-ack): the client retransmits
	lastSYN   time.Time // the kernel time of the last SYN ignored, for the backoff
	synsSeen  int
	// backoff is how long the client's kernel takes to send the SYNs we
	// ignore (1 s, 2 s, 4 s…): the wait for the handshake is longer by it.
	backoff time.Duration
	// first is the SYN the listener handed to Accept (its kernel time and
	// seq): the matcher may deliver the same frame to the stream too, when
	// the stream was registered before it dispatched it.
	first    time.Time
	firstSeq craft.Seq
}

// NewPassiveSession prepares the server end of the connection cfg names
// (Local is our address and listening port, Remote the client): nothing is
// sent until Accept hands it the client's SYN. t are the teaching switches.
func NewPassiveSession(cfg SessionConfig, env SessionEnv, t Teaching) *Session {
	s := NewSession(cfg, env)
	s.passive = true
	s.me = tcpstate.NewListener()
	s.me.ModelWindow, s.me.KeepData = true, true
	s.peer = tcpstate.NewActive()
	s.peer.ModelWindow = true
	s.teach = teaching{dropSYN: t.DropSYN, noAck: t.NoAck, cookies: t.Cookies, manual: t.Manual, backoff: time.Duration(1<<min(t.DropSYN, 16)-1) * time.Second}
	return s
}

// Passive reports whether we play the server.
func (s *Session) Passive() bool { return s.passive }

// Accept begins the session with the client's first SYN (as the listener
// read it) and runs the passive open: SYN received, our SYN-ACK, the
// client's ACK. It returns once the connection is established, or with why
// not (the client reset it, went silent, or the timeout passed).
func (s *Session) Accept(ctx context.Context, syn capture.Reply) error {
	if err := s.AcceptSYN(syn); err != nil {
		return err
	}
	return s.Established(ctx)
}

// AcceptSYN is the first half of Accept, which never waits: it begins the
// session and answers the client's SYN (our SYN-ACK is out when it
// returns, unless a teaching switch or the shell holds it back). The
// listener calls it in its own goroutine, the rest (Established) in the
// connection's: the SYN-ACK waits for no goroutine to be scheduled.
func (s *Session) AcceptSYN(syn capture.Reply) error {
	if s.start.IsZero() {
		s.SetEpoch(syn.Time)
	}
	// Nothing is rendered on the way to our SYN-ACK: the events wait at a
	// gate until it is out, then go in their order.
	g := &gate{next: s.env.Sink}
	s.env.Sink = g
	if err := s.Begin("listen"); err != nil {
		g.open()
		return err
	}
	s.handle(syn)
	g.open()
	s.teach.first, s.teach.firstSeq = syn.Time, syn.Packet.Seg.Seq
	return nil
}

// Established is the second half of Accept: it holds the connection's own
// guard rule and waits for the client's ACK (in the shell, it returns at
// once: the user answers).
func (s *Session) Established(ctx context.Context) error {
	if s.teach.manual {
		if s.env.Guard != nil {
			return s.holdGuard()
		}
		return nil // the user answers (SynAck)
	}
	if s.teach.synAck != nil { // --step: the SYN-ACK waits for Enter
		if err := s.SynAck(ctx); err != nil {
			return err
		}
	}
	if s.env.Guard != nil {
		// The port's guard holds our kernel's RSTs back meanwhile: the
		// SYN-ACK does not wait for the 4-tuple's rule (a netlink round
		// trip, about a millisecond).
		if err := s.holdGuard(); err != nil {
			return err
		}
	}
	return s.WaitEstablished(ctx)
}

// WaitEstablished waits (bounded by the timeout) until the client's ACK
// completes the handshake.
func (s *Session) WaitEstablished(ctx context.Context) error {
	open := func() bool { return s.me.State != tcpstate.Listen && s.me.State != tcpstate.SynReceived }
	err := s.run(ctx, until{done: open, deadline: s.env.Now().Add(s.cfg.Timeout + s.teach.backoff)})
	switch {
	case errors.Is(err, errDeadline):
		what := "the client's SYN"
		switch {
		case s.me.State == tcpstate.SynReceived:
			what = "the ACK of our SYN-ACK"
		case s.teach.cookies != nil && s.teach.synsSeen > 0:
			what = "the ACK of our SYN cookie (we kept nothing, so nothing is to clear)"
		}
		err = fmt.Errorf("%w: %s did not come within %v", ErrNoAnswer, what, s.cfg.Timeout+s.teach.backoff)
		if s.me.State == tcpstate.SynReceived {
			s.sendResets([]string{fmt.Sprintf("RST: %v; we drop the half-open connection", err)})
		}
		s.ended = err
		return err
	case err != nil:
		return err
	case s.me.State == tcpstate.Closed || s.me.State == tcpstate.Listen:
		if s.ended == nil {
			s.ended = ErrReset
		}
		return s.ended
	}
	return nil
}

// streamBuffer is how many packets the session's stream holds: 4096 for a
// client (a burst of a large window), and for a server four times as many
// segments as the window it advertises can bring (its own copies too), at
// least 128: the stream is made after the client's SYN arrived, and its
// buffer (440 bytes a packet) is allocated on the way to our SYN-ACK (512
// entries cost about 70 µs there).
func (s *Session) streamBuffer() int {
	if !s.passive || s.cfg.SYN.WScale >= 0 {
		return 4096
	}
	mss := max(int(s.cfg.SYN.MSS), 536)
	return max(128, min(4096, 4*int(s.cfg.Window)/mss))
}

// openStream registers the session's stream, on the buffer its listener
// made beforehand when that is large enough (Matcher.StreamOn), so the
// buffer's allocation is not on the way to our SYN-ACK.
func (s *Session) openStream() (*capture.Stream, error) {
	n := s.streamBuffer()
	if c := s.teach.stream; c != nil && cap(c) >= n {
		s.teach.stream = nil
		return s.env.Matcher.StreamOn(s.key, c)
	}
	return s.env.Matcher.Stream(s.key, n)
}

// gate holds events until it is opened, then passes them on in order
// (Accept: the SYN-ACK does not wait for the renderer).
type gate struct {
	next   event.Sink
	mu     sync.Mutex
	held   []event.Event
	opened bool
}

func (g *gate) Emit(e event.Event) {
	g.mu.Lock()
	if !g.opened {
		g.held = append(g.held, e)
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.next.Emit(e)
}

func (g *gate) open() {
	g.mu.Lock()
	held := g.held
	g.held, g.opened = nil, true
	for _, e := range held {
		g.next.Emit(e)
	}
	g.mu.Unlock()
}

// sameFirstSYN reports whether rep is the very frame Accept began with,
// delivered a second time by the stream.
func (s *Session) sameFirstSYN(rep capture.Reply) bool {
	seg := &rep.Packet.Seg
	return !s.teach.first.IsZero() && rep.Time.Equal(s.teach.first) && seg.Seq == s.teach.firstSeq && seg.Flags.Has(craft.SYN)
}

// startFlags is the Start event's flags: what our first segment carries.
func (s *Session) startFlags() string {
	if s.passive {
		return "S."
	}
	return "S"
}

// passiveNote is where the story of a passive open starts.
func (s *Session) passiveNote() string {
	guard := "our kernel's RSTs for the port are held back by the guard (it has no socket listening there, so it would refuse the client)"
	if s.env.Guard == nil {
		guard = "no guard: our kernel has no socket on the port and will refuse the client with RST"
	}
	return fmt.Sprintf("we listen on port %d from raw sockets: LISTEN (passive open, RFC 9293 §3.5); %s", s.cfg.Local.Port(), guard)
}

// receivePassive handles what only the server sees: the client's SYN in
// LISTEN, its repeated SYN in SYN-RECEIVED, and the teaching switches. It
// reports whether it took the segment.
func (s *Session) receivePassive(rep capture.Reply, seg *craft.Segment) bool {
	f := seg.Flags
	syn := f.Has(craft.SYN) && !f.Has(craft.ACK) && !f.Has(craft.RST)
	cookieACK := f.Has(craft.ACK) && !f.Has(craft.SYN) && !f.Has(craft.RST)
	switch {
	case s.me.State == tcpstate.Listen && syn && s.teach.dropSYN > 0:
		s.teach.dropSYN--
		s.dropSYN(rep, seg)
		return true
	case s.me.State == tcpstate.Listen && syn && s.teach.cookies != nil:
		s.teach.synsSeen++
		s.cookieSYN(rep, seg)
		return true
	case s.me.State == tcpstate.Listen && cookieACK && s.teach.cookies != nil:
		return s.cookieACK(rep, seg)
	case s.me.State == tcpstate.Listen && !syn:
		// RFC 9293 §3.10.7.2: a listener ignores an RST and refuses an
		// ACK; the listener (listen.go) only hands us SYNs, so this is a
		// stray segment of the 4-tuple.
		s.ignored["not-a-syn"]++
		s.show(rep, seg, []string{"in LISTEN only a SYN opens a connection (RFC 9293 §3.10.7.2): ignored"}, tcpstate.Change{}, tcpstate.Change{}, true)
		return true
	case s.me.State == tcpstate.Listen:
		s.acceptSYN(rep, seg)
		return true
	case s.me.State == tcpstate.SynReceived && syn && seg.Seq == s.me.IRS:
		s.repeatedSYN(rep, seg)
		return true
	case s.teach.noAck > 0 && len(seg.Payload) > 0 && s.me.State.Synchronized() && seg.Seq == s.me.RcvNxt:
		s.teach.noAck--
		s.ignored["no-ack"]++
		why := []string{
			fmt.Sprintf("%s at seq %d: --no-ack, we take nothing and acknowledge nothing, as if it were lost on the way", plural(len(seg.Payload), "byte"), uint32(seg.Seq)),
			"the client's kernel keeps the data until an ACK covers it and sends it again when its retransmission timer expires (RTO, RFC 6298; at least 200 ms on Linux): positive acknowledgment with retransmission",
		}
		s.show(rep, seg, why, tcpstate.Change{}, tcpstate.Change{}, true)
		return true
	}
	return false
}

// dropSYN ignores a SYN on purpose (--drop-syn) and says when the client's
// kernel sent it, relative to the one before.
func (s *Session) dropSYN(rep capture.Reply, seg *craft.Segment) {
	s.teach.synsSeen++
	s.ignored["drop-syn"]++
	why := []string{fmt.Sprintf("SYN %d from the client (seq %d): ignored on purpose (--drop-syn), no SYN-ACK goes back", s.teach.synsSeen, uint32(seg.Seq))}
	if !s.teach.lastSYN.IsZero() {
		gap := rep.Time.Sub(s.teach.lastSYN)
		why = append(why, fmt.Sprintf("%.3f s after the previous SYN: the client's retransmission timer, doubled after each expiry (RFC 6298 §5.5; Linux starts at 1 s, RFC 6298 §2.1)", gap.Seconds()))
	} else {
		why = append(why, "the client's kernel will send it again when its retransmission timer expires: after 1 s, then 2 s, 4 s… (RFC 6298 §2.1, §5.5)")
	}
	s.teach.lastSYN = rep.Time
	s.show(rep, seg, why, tcpstate.Change{}, tcpstate.Change{}, true)
}

// acceptSYN is the passive open: LISTEN → SYN-RECEIVED on the client's SYN,
// then our SYN-ACK.
func (s *Session) acceptSYN(rep capture.Reply, seg *craft.Segment) {
	s.teach.synsSeen++
	opts := s.negotiateSYN(seg)
	rx := s.me.Input(seg)
	pchg := s.peer.Send(seg)
	why := []string{fmt.Sprintf("SYN: the client opens with ISN %d (relative 0); a SYN takes one sequence number, so we expect %d next", uint32(seg.Seq), uint32(seg.Seq)+1)}
	if s.teach.synsSeen > 1 {
		why = append(why, fmt.Sprintf("this is the client's SYN number %d: %d earlier ones were ignored (--drop-syn)", s.teach.synsSeen, s.teach.synsSeen-1))
		if !s.teach.lastSYN.IsZero() {
			why = append(why, fmt.Sprintf("%.3f s after the previous SYN (the client's doubled retransmission timer)", rep.Time.Sub(s.teach.lastSYN).Seconds()))
		}
	}
	why = append(why, s.optWhy...)
	s.show(rep, seg, why, rx.Change, pchg, false)

	synAck := s.segment(craft.SYN|craft.ACK, nil)
	synAck.Seq, synAck.Window = s.me.ISS, s.cfg.Window
	synAck.Options = craft.SYNOptions(opts)
	lines := []string{fmt.Sprintf("SYN-ACK: our ISN is %d (relative 0); ack %d = the client's seq %d + 1: its SYN takes one sequence number", uint32(s.me.ISS), uint32(s.me.RcvNxt), uint32(seg.Seq))}
	if opts.MSS != 0 {
		lines = append(lines, fmt.Sprintf("we offer MSS %d: the most data we accept in one segment", opts.MSS))
	}
	if s.teach.manual || s.env.Stepper != nil {
		synAck.Options = append(craft.Options(nil), synAck.Options...)
		s.teach.synAck = &synAck
		s.teach.synAckWhy = lines
		if s.teach.manual {
			s.note("your turn: `synack` answers the client's SYN (its kernel waits in SYN-SENT and will repeat its SYN after 1 s)")
		}
		return
	}
	s.transmit(synAck, lines)
}

// SynAckPending reports whether the client's SYN waits for the user's
// `synack` (shell --listen).
func (s *Session) SynAckPending() bool { return s.teach.synAck != nil }

// SynAck sends our SYN-ACK by hand (shell --listen) without waiting; the
// shell then waits for its ACK (WaitAcked).
func (s *Session) SynAck(ctx context.Context) error {
	if s.teach.synAck == nil {
		switch {
		case s.ended != nil:
			return s.gone("synack")
		case s.me.State == tcpstate.SynReceived:
			return fmt.Errorf("our SYN-ACK is out already: we are in SYN-RECEIVED, waiting for the client's ACK")
		}
		return fmt.Errorf("a SYN-ACK answers a client's SYN: we are in %s", s.me.State)
	}
	synAck, why := *s.teach.synAck, s.teach.synAckWhy
	synAck.Ack = s.me.RcvNxt
	if err := s.ask(ctx, synAck, why); err != nil {
		return err
	}
	s.teach.synAck, s.teach.synAckWhy = nil, nil
	if !s.transmit(synAck, why) {
		return s.ended
	}
	return nil
}

// repeatedSYN answers the client's SYN again while we wait for its ACK: its
// timer fired before our SYN-ACK arrived, or our SYN-ACK was lost.
func (s *Session) repeatedSYN(rep capture.Reply, seg *craft.Segment) {
	why := []string{"the client repeats its SYN: its retransmission timer fired before our SYN-ACK reached it (or the SYN-ACK was lost); we answer with our SYN-ACK again"}
	if s.teach.synAck != nil {
		why = []string{"the client repeats its SYN: its retransmission timer fired, and our SYN-ACK has not gone out (type `synack`)"}
	}
	s.show(rep, seg, why, tcpstate.Change{}, tcpstate.Change{}, false)
	if len(s.snd.queue) == 0 || !s.snd.queue[0].seg.Flags.Has(craft.SYN) {
		return
	}
	synAck := s.snd.queue[0].seg
	synAck.Ack = s.me.RcvNxt
	s.snd.retransmitted(s.env.Now())
	s.sendSeg(synAck, []string{"SYN-ACK again, the same ISN: a repeated SYN is answered, not a new connection opened"}, sendRetrans)
}

// negotiateSYN reads the client's SYN options and chooses our SYN-ACK's:
// a server may answer only the options the SYN offered (window scale RFC
// 7323 §1.3, timestamps §3.2, SACK RFC 2018 §2), and MSS always.
func (s *Session) negotiateSYN(seg *craft.Segment) craft.SYNOptionSet {
	s.optWhy = nil
	v6 := s.cfg.Remote.Addr().Is6()
	def := uint16(craft.DefaultMSSv4)
	if v6 {
		def = craft.DefaultMSSv6
	}
	theirs, said := seg.Options.MSS()
	if !said {
		theirs = def
	}
	ours := s.cfg.SYN.MSS
	if ours == 0 {
		ours = def
	}
	s.opt.peerMSS, s.opt.mss = theirs, min(theirs, ours)
	if said {
		s.optWhy = append(s.optWhy, fmt.Sprintf("the client offers MSS %d, we %d: segments carry at most min(%d, %d) = %d bytes", theirs, ours, theirs, ours, s.opt.mss))
	} else {
		s.optWhy = append(s.optWhy, fmt.Sprintf("no MSS option from the client: the default %d applies to what we send (RFC 9293 §3.7.1)", def))
	}
	out := craft.SYNOptionSet{MSS: s.cfg.SYN.MSS, WScale: -1}
	var offered, unused []string
	ws, hasWS := seg.Options.WindowScale()
	switch {
	case hasWS && s.cfg.SYN.WScale >= 0:
		ws = min(ws, 14) // RFC 7323 §2.3
		mine := uint8(min(s.cfg.SYN.WScale, 14))
		s.opt.wscale = true
		s.me.SndShift, s.me.RcvShift = ws, mine
		s.peer.SndShift, s.peer.RcvShift = mine, ws
		out.WScale = int(mine)
		s.optWhy = append(s.optWhy, fmt.Sprintf("window scale: the client's windows count in units of 2^%d, ours of 2^%d (RFC 7323); after the handshake our --window %d goes out as %d", ws, mine, s.cfg.Window, uint32(s.cfg.Window)>>mine))
	case hasWS:
		offered = append(offered, fmt.Sprintf("window scale %d", ws))
	case s.cfg.SYN.WScale >= 0:
		unused = append(unused, "window scale (RFC 7323 §1.3)")
	}
	switch sack := seg.Options.SACKPermitted(); {
	case sack && s.cfg.SYN.SACKOK:
		s.opt.sack, out.SACKOK = true, true
		s.optWhy = append(s.optWhy, "SACK permitted both ways (RFC 2018): our ACKs name the out-of-order blocks we hold")
	case sack:
		offered = append(offered, "SACK")
	case s.cfg.SYN.SACKOK:
		unused = append(unused, "SACK (RFC 2018 §2)")
	}
	switch val, _, ts := seg.Options.Timestamps(); {
	case ts && s.cfg.SYN.Timestamp:
		s.opt.ts, s.opt.tsRecent = true, val
		out.Timestamp, out.TSVal, out.TSEcr = true, s.tsVal(), val
		s.optWhy = append(s.optWhy, fmt.Sprintf("timestamps both ways (RFC 7323): our SYN-ACK echoes the client's TSval %d", val))
	case ts:
		offered = append(offered, "timestamps")
	case s.cfg.SYN.Timestamp:
		unused = append(unused, "timestamps (RFC 7323 §3.2)")
	}
	if len(offered) > 0 {
		s.optWhy = append(s.optWhy, fmt.Sprintf("the client also offers %s; we do not answer them (no --wscale/--sackok/--timestamp), so the connection goes without", joinWords(offered)))
	}
	if len(unused) > 0 {
		s.optWhy = append(s.optWhy, fmt.Sprintf("the client's SYN did not offer %s, so our SYN-ACK may not carry it", joinWords(unused)))
	}
	if seg.Flags.Has(craft.ECE) && seg.Flags.Has(craft.CWR) {
		s.optWhy = append(s.optWhy, "ECE and CWR on the SYN: the client asks for ECN (RFC 3168 §6.1.1); our SYN-ACK carries no ECE, so congestion is signalled by loss only")
	}
	s.snd.setMSS(uint32(s.maxSegment()))
	return out
}

func joinWords(w []string) string {
	switch len(w) {
	case 0:
		return ""
	case 1:
		return w[0]
	}
	out := ""
	for i, x := range w {
		switch {
		case i == len(w)-1:
			out += " and " + x
		case i > 0:
			out += ", " + x
		default:
			out = x
		}
	}
	return out
}

// explainHandshakeACK words the client's ACK of our SYN-ACK.
func (s *Session) explainHandshakeACK(seg *craft.Segment) []string {
	why := []string{
		fmt.Sprintf("ACK: ack %d = our ISN %d + 1 (our SYN takes one sequence number); seq %d = the client's ISN + 1", uint32(seg.Ack), uint32(s.me.ISS), uint32(seg.Seq)),
		"the three-way handshake is complete",
	}
	if s.opt.wscale {
		why = append(why, fmt.Sprintf("the client's window from here on is scaled: win %d × 2^%d = %d bytes", seg.Window, s.me.SndShift, uint32(seg.Window)<<s.me.SndShift))
	}
	return why
}

// giveUpSynAck ends a passive open whose SYN-ACK was never acknowledged.
func (s *Session) giveUpSynAck(retrans int, now time.Time) {
	err := fmt.Errorf("%w: our SYN-ACK was sent %d times over %v and never acknowledged: the client went away", ErrNoAnswer, retrans+1, now.Sub(s.start).Round(time.Millisecond))
	s.sendResets([]string{fmt.Sprintf("we give up: %v; the RST clears the connection on the client too, if it still hears us", err)})
	s.me.GiveUp("we gave up on the half-open connection")
	s.ended = err
}
