package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// SessionConfig describes one connection tcpshake plays by hand.
type SessionConfig struct {
	Host   string         // as the user wrote it, for display
	Local  netip.AddrPort // our end
	Remote netip.AddrPort // the peer
	ISN    *craft.Seq     // nil: random (crypto/rand)
	Window uint16         // our receive window in bytes (scaled down in the field when we scale)
	TTL    uint8
	SYN    craft.SYNOptionSet
	// MTU is the route's MTU; our segments never exceed it (0: 1500).
	MTU int
	// ECN sends an ECN-setup SYN (ECE and CWR, RFC 3168 §6.1.1).
	ECN bool
	// NoGSO sends data one MSS-sized segment at a time even when
	// SessionEnv.GSO could hand the kernel larger ones to cut.
	NoGSO bool

	RTO      time.Duration // initial retransmission timeout (RFC 6298 §2.1: 1 s)
	MaxRTO   time.Duration // the cap of the doubling (0: 60 s; below 60 s is not RFC 6298 §2.5)
	Retries  int           // retransmissions of one segment before giving up
	TimeWait time.Duration // how long TIME-WAIT lasts here (RFC 9293: 2·MSL = 4 min); NoTimeWait skips it
	Timeout  time.Duration // how long to wait for the peer to send, acknowledge or close
}

// NoTimeWait as SessionConfig.TimeWait skips TIME-WAIT (--time-wait 0).
const NoTimeWait time.Duration = -1

// Defaults for a session.
const (
	DefaultRTO      = time.Second
	DefaultRetries  = 6
	DefaultTimeWait = 2 * time.Second
	DefaultTimeout  = 10 * time.Second
)

// A Guard keeps the local kernel from resetting the connection tcpshake owns.
type Guard interface {
	Hold(local, remote netip.AddrPort) (release func() error, err error)
}

// An Observer reads the peer's sockets from its kernel. It is a source of
// readings, never a wait inside the session's loop: Watch returns a sink
// that annotates the steps emitted into it with what the peer's kernel
// said, in its own goroutine, and forwards them in time order.
type Observer interface {
	// Listening reports whether a socket of the address's family listens on
	// local (the peer's address and port).
	Listening(local netip.AddrPort) (bool, error)
	// Watch starts watching the socket local↔remote (named from the peer's
	// side) and returns the sink the session emits into. The kernel's
	// records from before since concern an earlier socket with the same
	// ends (rst's scenarios, a fixed --sport) and are not this one's; zero
	// since keeps them all.
	Watch(local, remote netip.AddrPort, start, since time.Time, next event.Sink) (ObservedSink, error)
}

// An ObservedSink is the observer's end of the event stream.
type ObservedSink interface {
	event.Sink
	// Latest is the last state the peer's kernel reported ("" before any)
	// and when it was read.
	Latest() (string, time.Time)
	// Close flushes what is held and stops watching.
	Close() error
}

// A Stepper asks the user before each segment of the plan (--step). Ask
// shows what will be sent and returns at once; the answer arrives on C, one
// value per Enter, while the session keeps running.
type Stepper interface {
	Ask(next event.Step)
	C() <-chan error
}

// SessionEnv is what a session needs from the outside world.
type SessionEnv struct {
	Env
	Guard    Guard    // nil: no guard (tests with a scripted peer)
	Observer Observer // nil: no observed state
	Stepper  Stepper  // nil: no --step
	// Record, when set, receives every packet of the conversation as it
	// crossed the wire, with the step that explains it (nil: none does, e.g.
	// our kernel's own RST), when both are in hand (for -w).
	Record func(r capture.Reply, step *event.Step)
	// GSO, when set, opens (once, on the first data larger than a segment)
	// a sender that hands the kernel segments of many MSS to cut, as the
	// kernel's own TCP does (TSO/GSO). nil or an error: one MSS at a time.
	GSO func() (Segmenter, error)
}

// A Segmenter sends a TCP segment larger than the MSS as one write, for the
// kernel to cut into segments of mss bytes where the device needs it.
type Segmenter interface {
	SendGSO(pkt []byte, mss int) error
}

// Errors a session ends with; the CLI maps them to exit status 1.
var (
	ErrRefused   = errors.New("connection refused: the peer answered RST (port closed)")
	ErrNoAnswer  = errors.New("no answer from the peer")
	ErrReset     = errors.New("connection reset by the peer")
	ErrPeerStays = errors.New("the peer did not close in time")
	ErrClosed    = errors.New("the connection is closed")
)

// UnreachableError is an ICMP error that quoted one of our segments.
type UnreachableError struct {
	Reason string
	From   netip.Addr
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("ICMP %s from %v: the connection was rejected on the way (filtered)", e.Reason, e.From)
}

// CloseMode is how a session ends.
type CloseMode string

// The ways to end a session.
const (
	CloseFIN  CloseMode = "fin"  // active close: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT
	CloseWait CloseMode = "wait" // passive close: wait for the peer's FIN, CLOSE-WAIT, LAST-ACK
	CloseHalf CloseMode = "half" // send FIN, keep receiving until the peer closes
	CloseRST  CloseMode = "rst"  // abort with RST
	CloseNone CloseMode = "none" // leave it established
)

// ParseCloseMode checks a --close value.
func ParseCloseMode(s string) (CloseMode, error) {
	switch m := CloseMode(s); m {
	case CloseFIN, CloseWait, CloseHalf, CloseRST, CloseNone:
		return m, nil
	}
	return "", fmt.Errorf("unknown close %q: want fin, wait, half, rst or none", s)
}

// A Session is one TCP connection whose client end tcpshake plays from raw
// sockets: it sends every segment itself, acknowledges what the peer sends,
// retransmits what is not acknowledged, and explains each step.
//
// One goroutine — the caller's — runs it: every method that waits runs the
// session's loop (loop.go), which alone reads the stream, fires the one
// timer and sends; nothing else blocks. The TCBs are me and peer
// (tcpstate): ours, and the model of the peer; the session keeps no copies
// of their numbers. Resources (stream, guard, timer, observer) are taken in
// Begin and given back in End, on every path, and by nothing else.
type Session struct {
	cfg     SessionConfig
	env     SessionEnv
	key     capture.Key
	start   time.Time
	command string

	me, peer *tcpstate.Endpoint
	snd      sender
	opt      negotiated
	optWhy   []string // what the SYN exchange agreed, in words

	// Lifetime: set in Begin, released in End.
	stream  *capture.Stream
	release func() error
	timer   *time.Timer
	obs     ObservedSink
	sink    event.Sink
	begun   bool

	ended     error     // how the connection ended (refused, reset, unreachable, no answer), once it did
	ackDue    int       // segments received that still need our ACK
	ackWhy    []string  // what the ACK that is due will say
	ackNow    bool      // an ACK must go out before anything else is read
	ackSent   bool      // we acknowledged the peer's SYN
	synAckAt  time.Time // the first SYN-ACK's kernel time
	rxAt      time.Time // the kernel time of the segment being received
	manualAck bool      // the shell: the handshake's third step waits for `ack`
	synAt     time.Time
	sndMax    craft.Seq // the highest sequence number we ever sent (crafted segments included)
	peerAck   craft.Seq // the highest ack the peer sent: its RCV.NXT

	emit      emitter
	inbox     inbox
	ignored   map[string]uint64
	challenge rateLimit // our ACKs to unacceptable segments (RFC 5961 §7)
	dropped   uint64    // stream buffer drops already warned about

	sentBytes, retransmits int
	rstSent, rstSeen       int
	writing                bool // Write has more data to send (early retransmit waits for it)
	gso                    Segmenter
	gsoTried               bool
	segs                   segCount

	// passive: we are the server (listen.go): our end starts in LISTEN and
	// the peer's model in CLOSED.
	passive bool
	teach   teaching
}

// negotiated is what the SYN exchange agreed on.
type negotiated struct {
	peerMSS, mss uint16
	wscale       bool
	sack         bool
	ts           bool
	tsRecent     uint32
	ecn          bool
}

// NewSession prepares a session; nothing is sent until Begin.
func NewSession(cfg SessionConfig, env SessionEnv) *Session {
	if cfg.RTO == 0 {
		cfg.RTO = DefaultRTO
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.TimeWait == 0 {
		cfg.TimeWait = DefaultTimeWait
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	snd := newSender(cfg.RTO)
	if cfg.MaxRTO > 0 {
		snd.maxRTO = cfg.MaxRTO
	}
	me := tcpstate.NewActive()
	me.ModelWindow, me.KeepData = true, true
	peer := tcpstate.NewListener()
	peer.ModelWindow = true
	return &Session{
		cfg: cfg, env: env, key: capture.Key{Local: cfg.Local, Remote: cfg.Remote},
		me: me, peer: peer, snd: snd, ignored: map[string]uint64{},
		challenge: rateLimit{per: time.Second, burst: 100},
	}
}

// State is our end's state.
func (s *Session) State() tcpstate.State { return s.me.State }

// PeerState is the peer's state as inferred from the segments.
func (s *Session) PeerState() tcpstate.State { return s.peer.State }

// SndNxt is the next sequence number we send.
func (s *Session) SndNxt() craft.Seq { return s.me.SndNxt }

// RcvNxt is the next sequence number we expect from the peer.
func (s *Session) RcvNxt() craft.Seq { return s.me.RcvNxt }

// ISS is our initial sequence number.
func (s *Session) ISS() craft.Seq { return s.me.ISS }

// Received is the data the peer sent, in order.
func (s *Session) Received() []byte { return s.me.Delivered }

// Ended is how the connection ended (nil while it lives).
func (s *Session) Ended() error { return s.ended }

// Observing reports whether the peer's real state is read.
func (s *Session) Observing() bool { return s.env.Observer != nil }

// Observed is the last state the peer's kernel reported ("" without an
// observer). It never waits.
func (s *Session) Observed() string {
	if s.obs == nil {
		return ""
	}
	st, _ := s.obs.Latest()
	return st
}

// Settle lets the observer catch up: the loop runs (at most 100 ms) until
// the peer's kernel was read after now, so Observed tells what it did with
// everything so far. Without an observer it returns at once.
func (s *Session) Settle(ctx context.Context) {
	if s.obs == nil || !s.begun {
		return
	}
	t0 := time.Now()
	s.run(ctx, until{
		done:     func() bool { _, at := s.obs.Latest(); return at.After(t0) },
		deadline: s.env.Now().Add(100 * time.Millisecond), anyway: true,
	})
}

// SetEpoch makes the steps' times count from t instead of from Begin (rst:
// one clock for the whole run). Call it before Begin.
func (s *Session) SetEpoch(t time.Time) { s.start = t }

// ManualACK makes the handshake's third step wait for ACK (the shell).
func (s *Session) ManualACK() { s.manualAck = true }

// Begin prepares the conversation without sending anything: it registers
// the stream, installs the guard, starts the observer and reports where the
// peer starts. End gives all of it back.
func (s *Session) Begin(command string) error {
	if s.begun {
		return fmt.Errorf("session: already begun")
	}
	s.command = command
	if s.start.IsZero() {
		s.start = s.env.Now()
	}
	st, err := s.openStream()
	if err != nil {
		return err
	}
	s.stream, s.begun = st, true
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	s.sink = s.env.Sink
	if s.env.Guard != nil && !s.passive { // passive: after the SYN-ACK (Accept)
		if err := s.holdGuard(); err != nil {
			s.End()
			return err
		}
	}
	var peerNote, peerRead string
	if s.passive {
		peerNote = s.passiveNote()
	} else {
		peerNote, peerRead = s.initialPeer()
	}
	if s.env.Observer != nil {
		// An active open's peer has no socket for these ends before our
		// SYN; a passive one's client was in SYN-SENT before its SYN
		// reached us, so what the kernel recorded before is kept.
		var since time.Time
		if !s.passive {
			since = s.env.Now()
		}
		o, err := s.env.Observer.Watch(s.cfg.Remote, s.cfg.Local, s.start, since, s.env.Sink)
		if err != nil {
			peerNote += fmt.Sprintf("; its kernel cannot be watched (%v)", err)
		} else {
			s.obs, s.sink = o, o
		}
	}
	s.emit = emitter{s: s}
	s.sink.Emit(event.Start{
		Command: command, Host: s.cfg.Host, Addr: s.cfg.Remote.Addr().String(), Src: s.cfg.Local.String(),
		Ports: []uint16{s.cfg.Remote.Port()}, Flags: s.startFlags(), Count: 1,
	})
	if s.passive {
		s.noteAt(peerNote, s.start) // before the SYN's step, at its time
	} else if peerRead != "" && s.obs != nil {
		// The note tells what was read: it carries that reading, not one
		// of the watcher's (which looks at the 4-tuple, where a listener
		// has no socket: "CLOSED" beside LISTEN, or none before our SYN).
		st := event.Step{Direction: "note", Explain: []string{peerNote}, Observed: peerRead, Agreement: event.Agrees}
		s.states(&st)
		s.emit.later(st, s.env.Now())
	} else {
		s.note(peerNote)
	}
	isn := craft.Seq(s.env.Rand())
	if s.cfg.ISN != nil {
		isn = *s.cfg.ISN
	}
	s.me.ISS, s.me.SndUna, s.me.SndNxt = isn, isn, isn
	s.sndMax = isn
	return nil
}

// initialPeer decides where the peer's model starts: LISTEN is assumed,
// unless its kernel can be asked and has no listener of our address family
// on the port (CLOSED).
// initialPeer says what the peer is before our SYN, and, when its kernel was
// read, the state it showed.
func (s *Session) initialPeer() (note, read string) {
	guard := "our kernel's RSTs for this connection are held back by the guard"
	if s.env.Guard == nil {
		guard = "no guard: our kernel will answer the peer with RST (it knows no such connection)"
	}
	if s.env.Observer == nil {
		return "we assume the peer listens on the port; " + guard, ""
	}
	ok, err := s.env.Observer.Listening(s.cfg.Remote)
	switch {
	case err != nil:
		return "the peer's kernel could not be asked (" + err.Error() + "); we assume it listens; " + guard, ""
	case ok:
		return "the peer's kernel has a socket in LISTEN on the port; " + guard, tcpstate.Listen.String()
	}
	s.peer = tcpstate.NewActive()
	s.peer.ModelWindow = true
	fam := "IPv4"
	if s.cfg.Remote.Addr().Is6() {
		fam = "IPv6"
	}
	return fmt.Sprintf("the peer's kernel has no %s socket listening on port %d (CLOSED): expect a reset; %s", fam, s.cfg.Remote.Port(), guard), tcpstate.Closed.String()
}

// End gives back everything Begin took: it flushes the steps still held,
// stops the observer, removes the guard and the stream. It is safe to call
// more than once, and it is the only place these are released.
func (s *Session) End() {
	if !s.begun {
		return
	}
	s.emit.flushAll()
	s.releaseGuard()
	if s.obs != nil {
		s.obs.Close()
		s.obs = nil
		s.sink = s.env.Sink
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.stream != nil {
		s.env.Matcher.CloseStream(s.stream)
	}
	s.begun = false
}

// holdGuard holds back our kernel's RSTs for the connection's 4-tuple.
func (s *Session) holdGuard() error {
	rel, err := s.env.Guard.Hold(s.cfg.Local, s.cfg.Remote)
	if err != nil {
		return fmt.Errorf("kernel-RST guard: %w", err)
	}
	s.release = rel
	return nil
}

func (s *Session) releaseGuard() {
	if s.release != nil {
		s.release()
		s.release = nil
	}
}

// Abort ends the session after an error or an interrupt: if the connection
// still exists on the peer, it is reset with a sequence number the peer
// accepts, so nothing stays half-open; then End.
func (s *Session) Abort(cause error) (reset bool) {
	if s.begun && s.me.State == tcpstate.TimeWait {
		chg := s.me.Expire()
		chg.Why = "TIME-WAIT cut short: we stop here, nothing is left to acknowledge"
		s.note(fmt.Sprintf("%s; the peer has closed already", chg))
	}
	if s.begun && s.live() {
		reset = true
		why := "RST: we abort the connection so nothing stays half-open on the peer"
		if errors.Is(cause, context.Canceled) {
			why = "RST: interrupted; we abort the connection so nothing stays half-open on the peer"
		}
		s.sendResets([]string{why})
	}
	s.End()
	return reset
}

// live reports whether the peer may hold state for this connection that an
// RST should clear: our SYN went out (in SYN-SENT the peer may be in
// SYN-RECEIVED) and neither end has closed or ended it.
func (s *Session) live() bool {
	return s.ended == nil && s.me.State != tcpstate.Closed && s.me.State != tcpstate.TimeWait && s.me.State != tcpstate.Listen
}

// Summary reports the session's end.
func (s *Session) Summary() event.Summary {
	sum := event.Summary{
		Command: s.command, Host: s.cfg.Host, Elapsed: ms(s.env.Now().Sub(s.start)),
		Local: s.me.State.String(), Remote: s.peer.State.String(), Observed: s.Observed(),
		BytesSent: s.sentBytes, BytesReceived: len(s.me.Delivered), Retransmissions: s.retransmits,
		Sent: s.emit.sent, Received: s.emit.received, Segments: s.segments(),
	}
	if len(s.ignored) > 0 {
		sum.Ignored = map[string]uint64{}
		for k, v := range s.ignored {
			sum.Ignored[k] = v
		}
	}
	if s.snd.est.samples > 0 {
		sum.SRTTMs = ms(s.snd.est.srtt)
	}
	return sum
}
