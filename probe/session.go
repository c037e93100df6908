package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

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
	Window uint16
	TTL    uint8
	SYN    craft.SYNOptionSet

	RTO      time.Duration // initial retransmission timeout (RFC 6298 §2.1: 1 s)
	Retries  int           // retransmissions of one segment before giving up
	TimeWait time.Duration // how long TIME-WAIT lasts here (RFC 9293: 2·MSL = 4 min)
	Timeout  time.Duration // how long to wait for the peer to send or close
}

// Defaults for a session.
const (
	DefaultRTO      = time.Second
	DefaultRetries  = 6
	DefaultTimeWait = 2 * time.Second
	DefaultTimeout  = 10 * time.Second
	minRTO          = 200 * time.Millisecond // Linux's TCP_RTO_MIN; RFC 6298 suggests 1 s
	maxRTO          = 60 * time.Second
)

// A Guard keeps the local kernel from resetting the connection tcpshake owns.
type Guard interface {
	Hold(local, remote netip.AddrPort) (release func() error, err error)
}

// An Observer reads a socket's real state from the peer's kernel, the
// socket named from the peer's side (its local end first).
type Observer interface {
	State(local, remote netip.AddrPort) (string, error)
	Listening(local netip.AddrPort) (bool, error)
}

// SessionEnv is what a session needs from the outside world.
type SessionEnv struct {
	Env
	Guard    Guard    // nil: no guard (tests with a scripted peer)
	Observer Observer // nil: no observed state
	// Pause, when set, is called with each new segment before it is sent
	// (--step); an error stops the session.
	Pause func(ctx context.Context, next event.Step) error
	// Record, when set, receives every packet of the conversation as it
	// crossed the wire, with the step that explains it (for -w).
	Record func(r capture.Reply, step *event.Step)
}

// Errors a session ends with; the CLI maps them to exit status 1.
var (
	ErrRefused   = errors.New("connection refused: the peer answered RST (port closed)")
	ErrNoAnswer  = errors.New("no answer from the peer")
	ErrReset     = errors.New("connection reset by the peer")
	ErrPeerStays = errors.New("the peer did not close in time")
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

// inflight is a segment that occupies sequence space and waits for its ACK.
type inflight struct {
	seg     craft.Segment
	sentAt  time.Time // our clock when handed to the kernel
	wire    time.Time // kernel timestamp of its first copy on the wire
	retrans int
}

// A Session is one TCP connection whose client end tcpshake plays from raw
// sockets: it sends every segment itself, acknowledges what the peer sends,
// retransmits what is not acknowledged, and explains each step.
type Session struct {
	cfg   SessionConfig
	env   SessionEnv
	start time.Time
	key   capture.Key

	me, peer *tcpstate.Endpoint // our state, and the peer's inferred from the segments

	iss, irs       craft.Seq
	sndUna, sndNxt craft.Seq
	rcvNxt         craft.Seq
	synced         bool // IRS known

	peerMSS, mss uint16
	peerWnd      uint32 // the peer's receive window (SND.WND), scaled
	rcvShift     uint8  // the peer's window scale shift, applied to the windows it sends
	wscaleOK     bool
	tsOK         bool
	tsRecent     uint32
	sackOK       bool
	queue        []*inflight
	rto          time.Duration
	rtoDeadline  time.Time
	est          rttEstimator
	ooo          map[craft.Seq][]byte
	finRcvdSeq   craft.Seq
	got          []byte
	sentBytes    int
	retransmits  int
	steps        int
	lastObserved string
	stream       *capture.Stream
	manualAck    bool
	collecting   bool
	collected    []craft.Segment
	sndMax       craft.Seq // the highest sequence number we ever sent (crafted segments included)
	sndMaxSet    bool
	peerAck      craft.Seq // the highest ack the peer sent: its RCV.NXT
	command      string
	rstSent      int // RSTs we sent
	rstSeen      int // RSTs seen leaving this host
	release      func() error
	err          error
}

// NewSession prepares a session; nothing is sent until Open.
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
	return &Session{
		cfg: cfg, env: env, key: capture.Key{Local: cfg.Local, Remote: cfg.Remote},
		me: tcpstate.NewActive(), peer: tcpstate.NewListener(), rto: cfg.RTO, ooo: map[craft.Seq][]byte{},
	}
}

// State is our end's state.
func (s *Session) State() tcpstate.State { return s.me.State }

// PeerState is the peer's state as inferred from the segments.
func (s *Session) PeerState() tcpstate.State { return s.peer.State }

// SndNxt is the next sequence number we send.
func (s *Session) SndNxt() craft.Seq { return s.sndNxt }

// RcvNxt is the next sequence number we expect from the peer.
func (s *Session) RcvNxt() craft.Seq { return s.rcvNxt }

// Received is the data the peer sent, in order.
func (s *Session) Received() []byte { return s.got }

// Open installs the guard, sends the SYN and completes the three-way
// handshake, retransmitting the SYN until it is answered.
func (s *Session) Open(ctx context.Context) error {
	if err := s.Begin("handshake"); err != nil {
		return err
	}
	if err := s.SYN(ctx); err != nil {
		return err
	}
	return s.pump(ctx, func() bool { return s.me.State != tcpstate.SynSent }, time.Time{})
}

// Begin prepares the conversation without sending anything: it registers
// the stream, installs the guard and reports where the peer starts.
func (s *Session) Begin(command string) error {
	s.start, s.command = s.env.Now(), command
	st, err := s.env.Matcher.Stream(s.key, 1024)
	if err != nil {
		return err
	}
	s.stream = st
	if s.env.Guard != nil {
		rel, err := s.env.Guard.Hold(s.cfg.Local, s.cfg.Remote)
		if err != nil {
			return fmt.Errorf("kernel-RST guard: %w", err)
		}
		s.release = rel
	}
	s.env.Sink.Emit(event.Start{
		Command: command, Host: s.cfg.Host, Addr: s.cfg.Remote.Addr().String(), Src: s.cfg.Local.String(),
		Ports: []uint16{s.cfg.Remote.Port()}, Flags: "S", Count: 1,
	})
	s.note(s.initialPeer(), "", "")
	isn := craft.Seq(s.env.Rand())
	if s.cfg.ISN != nil {
		isn = *s.cfg.ISN
	}
	s.iss, s.sndUna, s.sndNxt = isn, isn, isn
	return nil
}

// SYN sends our SYN (the first step of the handshake) without waiting.
func (s *Session) SYN(ctx context.Context) error {
	if s.me.State != tcpstate.Closed || s.synced {
		return fmt.Errorf("a SYN opens a connection: we are in %s", s.me.State)
	}
	s.sndNxt = s.iss
	syn := s.segment(craft.SYN, nil)
	syn.Options = craft.SYNOptions(s.cfg.SYN)
	why := []string{fmt.Sprintf("SYN: we open the connection with ISN %d (relative 0); a SYN takes one sequence number, so our next seq is %d", uint32(s.iss), uint32(s.iss)+1)}
	if s.cfg.SYN.MSS != 0 {
		why = append(why, fmt.Sprintf("we offer MSS %d: the most data we accept in one segment", s.cfg.SYN.MSS))
	}
	return s.transmit(ctx, syn, why)
}

// ACK sends a bare ACK of everything received (the handshake's third step,
// when the ACK is given by hand).
func (s *Session) ACK(ctx context.Context) error {
	if !s.synced {
		return fmt.Errorf("nothing to acknowledge yet: we are in %s", s.me.State)
	}
	if s.me.State == tcpstate.SynSent {
		return fmt.Errorf("the SYN-ACK has not arrived yet")
	}
	why := []string{fmt.Sprintf("ACK: ack %d = RCV.NXT, the next byte we expect; seq %d = SND.NXT", uint32(s.rcvNxt), uint32(s.sndNxt))}
	if s.me.State == tcpstate.Established && s.peer.State == tcpstate.SynReceived {
		why = []string{
			fmt.Sprintf("ACK: ack %d = peer seq %d + 1 (its SYN takes one sequence number); seq %d = our ISN + 1", uint32(s.rcvNxt), uint32(s.irs), uint32(s.sndNxt)),
			"the three-way handshake is complete",
		}
	}
	return s.ack(ctx, why)
}

// Write sends data in MSS-sized segments without waiting for the ACK.
func (s *Session) Write(ctx context.Context, data []byte) error {
	if !s.canSend() {
		return fmt.Errorf("cannot send data in %s", s.me.State)
	}
	mss := int(max(s.mss, 1))
	for off := 0; off < len(data); off += mss {
		chunk := data[off:min(off+mss, len(data))]
		seg := s.segment(craft.PSH|craft.ACK, chunk)
		why := []string{fmt.Sprintf("%d bytes at seq %d (relative %d); the next byte we send will be %d = %d + %d", len(chunk), uint32(s.sndNxt), uint32(s.sndNxt-s.iss), uint32(s.sndNxt)+uint32(len(chunk)), uint32(s.sndNxt), len(chunk))}
		if err := s.transmit(ctx, seg, why); err != nil {
			return err
		}
		s.sentBytes += len(chunk)
	}
	return nil
}

// FIN sends our FIN without waiting.
func (s *Session) FIN(ctx context.Context) error {
	switch s.me.State {
	case tcpstate.Established, tcpstate.CloseWait, tcpstate.SynReceived:
	default:
		return fmt.Errorf("cannot send a FIN in %s", s.me.State)
	}
	why := "FIN: we have nothing more to send"
	if s.me.State == tcpstate.CloseWait {
		why = "FIN after the peer's FIN: the passive side's close"
	}
	return s.sendFIN(ctx, why)
}

// RST aborts the connection with a reset.
func (s *Session) RST(ctx context.Context) error {
	rst := s.resetSegment()
	s.queue = nil
	return s.send(ctx, rst, []string{fmt.Sprintf("RST with seq %d = our SND.NXT: the peer accepts it and aborts; nothing waits in TIME-WAIT", uint32(rst.Seq))}, false)
}

// resetSegment is the RST the peer will accept: seq = its RCV.NXT, which is
// our SND.NXT unless it acknowledged more (crafted data) (RFC 5961 §3.2:
// only an exact RST aborts).
func (s *Session) resetSegment() craft.Segment {
	rst := s.segment(craft.RST|craft.ACK, nil)
	if s.sndNxt.LessThan(s.peerAck) && s.peerAck.LessThanEq(s.sndMax) {
		rst.Seq = s.peerAck
	}
	return rst
}

// Crafted is a segment given field by field (the shell's `segment`
// command); nil fields take what the connection expects.
type Crafted struct {
	Flags  craft.Flags
	Seq    *craft.Seq
	Ack    *craft.Seq
	Window *uint16
	Data   []byte
}

// Craft sends a hand-made segment once, as is. A segment that starts at
// SND.NXT and occupies sequence space is then treated as ours to deliver
// (queued for retransmission); anything else is sent once, and the
// explanation says how it differs from what the peer expects.
func (s *Session) Craft(ctx context.Context, c Crafted) error {
	seg := s.segment(c.Flags, c.Data)
	if c.Seq != nil {
		seg.Seq = *c.Seq
	}
	if c.Ack != nil {
		seg.Ack = *c.Ack
	}
	if c.Window != nil {
		seg.Window = *c.Window
	}
	var why []string
	switch d := int32(seg.Seq - s.sndNxt); {
	case d > 0:
		why = append(why, fmt.Sprintf("crafted: seq %d is %d beyond SND.NXT %d, out of order for the peer", uint32(seg.Seq), d, uint32(s.sndNxt)))
	case d < 0:
		why = append(why, fmt.Sprintf("crafted: seq %d is %d before SND.NXT %d, old data for the peer", uint32(seg.Seq), -d, uint32(s.sndNxt)))
	}
	if seg.Flags.Has(craft.ACK) && seg.Ack != s.rcvNxt {
		why = append(why, fmt.Sprintf("crafted: ack %d differs from RCV.NXT %d", uint32(seg.Ack), uint32(s.rcvNxt)))
	}
	if seg.Seq == s.sndNxt && seg.Len() > 0 && !seg.Flags.Has(craft.RST) && !seg.Flags.Has(craft.SYN) {
		s.sentBytes += len(seg.Payload)
		return s.transmit(ctx, seg, append(why, fmt.Sprintf("crafted: %d of sequence space from SND.NXT", seg.Len())))
	}
	if len(why) == 0 {
		why = []string{"crafted segment"}
	}
	s.sentBytes += len(seg.Payload)
	exactRST := seg.Flags.Has(craft.RST) && (seg.Seq == s.sndNxt || seg.Seq == s.peerAck)
	return s.sendAs(ctx, seg, why, false, exactRST)
}

// Numbers reports the TCB's sequence variables, for the shell's `state`.
func (s *Session) Numbers() string {
	obs := ""
	if s.env.Observer != nil {
		obs = ", kernel says " + s.observe()
	}
	return fmt.Sprintf("us %s, peer %s (inferred%s)\nISS %d  SND.UNA %d (rel %d)  SND.NXT %d (rel %d)\nIRS %d  RCV.NXT %d (rel %d)  unacknowledged segments %d",
		s.me.State, s.peer.State, obs, uint32(s.iss), uint32(s.sndUna), uint32(s.sndUna-s.iss), uint32(s.sndNxt), uint32(s.sndNxt-s.iss),
		uint32(s.irs), uint32(s.rcvNxt), uint32(s.rcvNxt-s.irs), len(s.queue))
}

// Interact runs the connection while commands arrive on lines: the peer's
// segments are handled (and shown) as they come, retransmissions happen on
// time, and each line is passed to exec. It returns when lines is closed,
// exec says stop, or the session fails.
func (s *Session) Interact(ctx context.Context, lines <-chan string, exec func(line string) (stop bool)) error {
	for {
		if s.err != nil {
			return s.err
		}
		var timer <-chan time.Time
		if len(s.queue) > 0 {
			t := time.NewTimer(max(s.rtoDeadline.Sub(s.env.Now()), 0))
			timer = t.C
			defer t.Stop()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case line, ok := <-lines:
			if !ok || exec(line) {
				return nil
			}
		case rep := <-s.stream.C():
			if err := s.handle(ctx, rep); err != nil && !errors.Is(err, ErrRefused) && !errors.Is(err, ErrReset) {
				return err
			}
		case <-timer:
			if err := s.retransmit(ctx); err != nil {
				if errors.Is(err, ErrNoAnswer) {
					s.env.Sink.Emit(event.Warning{Message: err.Error()})
					s.queue = nil
					continue
				}
				return err
			}
		}
	}
}

// Collect handles what arrives during d, or until enough segments arrived
// (0: wait the whole time), and returns the peer's TCP segments. A reset or
// refusal from the peer is something to collect, not an error here.
func (s *Session) Collect(ctx context.Context, d time.Duration, enough int) ([]craft.Segment, error) {
	s.collected, s.collecting = nil, true
	defer func() { s.collecting = false }()
	err := s.pump(ctx, func() bool { return enough > 0 && len(s.collected) >= enough }, s.env.Now().Add(d))
	s.err = nil
	if errors.Is(err, errDeadline) || errors.Is(err, ErrReset) || errors.Is(err, ErrRefused) {
		err = nil
	}
	return s.collected, err
}

// Observed asks the peer's kernel for its socket's state now ("" without an
// observer).
func (s *Session) Observed() string { return s.observe() }

// Observing reports whether the peer's real state can be read.
func (s *Session) Observing() bool { return s.env.Observer != nil }

// ISS is our initial sequence number.
func (s *Session) ISS() craft.Seq { return s.iss }

// ManualACK makes the handshake's third step wait for ACK (the shell).
func (s *Session) ManualACK() { s.manualAck = true }

// initialPeer decides where the peer's model starts: LISTEN is assumed,
// unless its kernel can be asked and has no listener on the port (CLOSED).
func (s *Session) initialPeer() string {
	guard := "our kernel's RSTs for this connection are held back by the guard"
	if s.env.Guard == nil {
		guard = "no guard: our kernel will answer the peer with RST (it knows no such connection)"
	}
	if s.env.Observer == nil {
		return "we assume the peer listens on the port; " + guard
	}
	ok, err := s.env.Observer.Listening(s.cfg.Remote)
	switch {
	case err != nil:
		return "the peer's kernel could not be asked (" + err.Error() + "); we assume it listens; " + guard
	case ok:
		return "the peer's kernel has a socket in LISTEN on the port; " + guard
	}
	s.peer = tcpstate.NewActive()
	return "the peer's kernel has no socket listening on the port (CLOSED): expect a reset; " + guard
}

// segment builds a segment from our current numbers.
func (s *Session) segment(flags craft.Flags, payload []byte) craft.Segment {
	seg := craft.Segment{
		Src: s.cfg.Local, Dst: s.cfg.Remote, Seq: s.sndNxt, Flags: flags,
		Window: s.cfg.Window, TTL: s.cfg.TTL, ID: uint16(s.env.Rand()), Payload: payload,
	}
	if flags.Has(craft.ACK) {
		seg.Ack = s.rcvNxt
	}
	if s.wscaleOK && !flags.Has(craft.SYN) {
		seg.Window = uint16(min(uint32(s.cfg.Window), 0xffff))
	}
	if s.tsOK && !flags.Has(craft.RST) {
		seg.Options = craft.Options{craft.NOP(), craft.NOP(), craft.Timestamps(s.tsVal(), s.tsRecent)}
	}
	return seg
}

// tsVal is our timestamp clock: milliseconds since the session started.
func (s *Session) tsVal() uint32 { return uint32(s.env.Now().Sub(s.start)/time.Millisecond) + 1 }

// transmit sends a segment that occupies sequence space (SYN, data, FIN) and
// queues it for retransmission until acknowledged.
func (s *Session) transmit(ctx context.Context, seg craft.Segment, why []string) error {
	if err := s.drain(ctx); err != nil {
		return err
	}
	seg.Seq = s.sndNxt
	if seg.Flags.Has(craft.ACK) {
		seg.Ack = s.rcvNxt
	}
	if err := s.send(ctx, seg, why, false); err != nil {
		return err
	}
	s.sndNxt = seg.End()
	s.queue = append(s.queue, &inflight{seg: seg, sentAt: s.env.Now()})
	if len(s.queue) == 1 {
		s.rtoDeadline = s.env.Now().Add(s.rto)
	}
	return nil
}

// drain handles what has already arrived, so that what we send next is
// told in the order things happened on the wire.
func (s *Session) drain(ctx context.Context) error {
	if s.stream == nil {
		return nil
	}
	for {
		select {
		case rep := <-s.stream.C():
			if err := s.handle(ctx, rep); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// send puts one segment on the wire and reports it as a step.
func (s *Session) send(ctx context.Context, seg craft.Segment, why []string, retrans bool) error {
	return s.sendAs(ctx, seg, why, retrans, true)
}

// sendAs is send; self says whether the segment is ours in earnest, so that
// our own state follows it (a crafted RST or SYN sent to test the peer is
// not our connection ending or restarting).
func (s *Session) sendAs(ctx context.Context, seg craft.Segment, why []string, retrans, self bool) error {
	st := s.stepOf("sent", &seg)
	st.Explain, st.Retrans = why, retrans
	if s.env.Pause != nil && !retrans {
		preview := st
		preview.Local, preview.Remote = "", ""
		if err := s.env.Pause(ctx, preview); err != nil {
			return err
		}
	}
	pkt, err := seg.Marshal()
	if err != nil {
		return fmt.Errorf("session: build segment: %w", err)
	}
	st.TimeMs = ms(s.env.Now().Sub(s.start))
	if err := s.env.Sender.Send(pkt, s.cfg.Remote.Addr()); err != nil {
		return err
	}
	if seg.Flags.Has(craft.RST) {
		s.rstSent++
	} else if end := seg.End(); s.sndMax.LessThan(end) || !s.sndMaxSet {
		s.sndMax, s.sndMaxSet = end, true
	}
	if !retrans {
		var chg tcpstate.Change
		if self {
			chg = s.me.Send(&seg)
		}
		pchg := s.peer.Receive(&seg)
		st.Explain = append(st.Explain, changes(chg, pchg)...)
	} else {
		s.retransmits++
	}
	s.finishStep(&st)
	return nil
}

// changes words the state transitions a segment caused.
func changes(me, peer tcpstate.Change) []string {
	var out []string
	if me.Changed() {
		out = append(out, fmt.Sprintf("we: %s → %s (%s)", me.From, me.To, me.Why))
	}
	if peer.Changed() {
		out = append(out, fmt.Sprintf("peer: %s → %s (%s)", peer.From, peer.To, peer.Why))
	}
	return out
}

// stepOf describes seg with our relative numbers.
func (s *Session) stepOf(dir string, seg *craft.Segment) event.Step {
	s.steps++
	st := StepOf(s.steps, s.env.Now().Sub(s.start), dir, seg)
	if dir == "sent" {
		st.RelSeq = uint32(seg.Seq - s.iss)
		if s.synced && seg.Flags.Has(craft.ACK) {
			st.RelAck = uint32(seg.Ack - s.irs)
		}
	} else {
		if s.synced || seg.Flags.Has(craft.SYN) {
			irs := s.irs
			if !s.synced {
				irs = seg.Seq
			}
			st.RelSeq = uint32(seg.Seq - irs)
		}
		if seg.Flags.Has(craft.ACK) {
			st.RelAck = uint32(seg.Ack - s.iss)
		}
	}
	if len(seg.Payload) > 0 {
		st.Data = showData(seg.Payload)
	}
	return st
}

// finishStep adds the states (and the observed one) and emits the step.
func (s *Session) finishStep(st *event.Step) {
	st.Local, st.Remote = s.me.State.String(), s.peer.State.String()
	st.Observed = s.observe()
	switch {
	case st.Observed == "" || st.Observed == st.Remote:
	case tcpstate.Ahead(st.Remote, st.Observed):
		st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel is already in %s: it acted on its own (its application closed or it aborted) and the segment that tells us is on its way", st.Observed))
	default:
		st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel says %s, not %s as inferred: a segment was lost or is still on its way", st.Observed, st.Remote))
	}
	s.env.Sink.Emit(*st)
}

// note reports a change without a segment (a timer, the guard, the end).
func (s *Session) note(text, local string, observed string) {
	st := event.Step{
		TimeMs: ms(s.env.Now().Sub(s.start)), Direction: "note",
		Explain: []string{text}, Local: s.me.State.String(), Remote: s.peer.State.String(), Observed: observed,
	}
	if local != "" {
		st.Local = local
	}
	s.env.Sink.Emit(st)
}

// observe asks the peer's kernel, waiting briefly for it to agree with the
// inferred state (the segment may still be on its way).
func (s *Session) observe() string {
	if s.env.Observer == nil {
		return ""
	}
	want := s.peer.State.String()
	deadline := time.Now().Add(30 * time.Millisecond)
	for {
		got, err := s.env.Observer.State(s.cfg.Remote, s.cfg.Local)
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		if got == want || tcpstate.Ahead(want, got) || time.Now().After(deadline) {
			s.lastObserved = got
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

// pump processes the peer's segments and our retransmission timer until done
// reports true, the deadline passes (errDeadline), or the session fails.
func (s *Session) pump(ctx context.Context, done func() bool, deadline time.Time) error {
	for !done() {
		if s.err != nil {
			return s.err
		}
		wake := deadline
		if len(s.queue) > 0 && (wake.IsZero() || s.rtoDeadline.Before(wake)) {
			wake = s.rtoDeadline
		}
		var timer <-chan time.Time
		if !wake.IsZero() {
			t := time.NewTimer(max(wake.Sub(s.env.Now()), 0))
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rep := <-s.stream.C():
			if err := s.handle(ctx, rep); err != nil {
				return err
			}
		case <-timer:
			now := s.env.Now()
			if len(s.queue) > 0 && !now.Before(s.rtoDeadline) {
				if err := s.retransmit(ctx); err != nil {
					return err
				}
				continue
			}
			if !deadline.IsZero() && !now.Before(deadline) {
				return errDeadline
			}
		}
	}
	return s.err
}

var errDeadline = errors.New("deadline")

// retransmit resends the oldest unacknowledged segment and doubles the RTO
// (RFC 6298 §5.4–5.6).
func (s *Session) retransmit(ctx context.Context) error {
	f := s.queue[0]
	if f.retrans >= s.cfg.Retries {
		if f.seg.Flags.Has(craft.SYN) {
			return fmt.Errorf("%w: %d SYNs unanswered over %v: filtered, or the host is down", ErrNoAnswer, f.retrans+1, s.env.Now().Sub(s.start).Round(time.Millisecond))
		}
		return fmt.Errorf("%w: %s not acknowledged after %d retransmissions", ErrNoAnswer, describe(&f.seg), f.retrans)
	}
	f.retrans++
	why := []string{fmt.Sprintf("retransmission %d: no ACK for %s within %v (RFC 6298: the timer doubles each time)", f.retrans, describe(&f.seg), s.rto)}
	seg := f.seg
	if seg.Flags.Has(craft.ACK) {
		seg.Ack = s.rcvNxt
	}
	if err := s.send(ctx, seg, why, true); err != nil {
		return err
	}
	f.sentAt = s.env.Now()
	s.rto = min(2*s.rto, maxRTO)
	s.rtoDeadline = s.env.Now().Add(s.rto)
	return nil
}

func describe(seg *craft.Segment) string {
	switch {
	case seg.Flags.Has(craft.SYN):
		return "our SYN"
	case seg.Flags.Has(craft.FIN) && len(seg.Payload) == 0:
		return "our FIN"
	default:
		return fmt.Sprintf("%d bytes at seq %d", len(seg.Payload), uint32(seg.Seq))
	}
}

// ack sends a bare ACK of everything received so far.
func (s *Session) ack(ctx context.Context, why []string) error {
	return s.send(ctx, s.segment(craft.ACK, nil), why, false)
}

// handle processes one packet from the stream.
func (s *Session) handle(ctx context.Context, rep capture.Reply) error {
	if rep.Outgoing {
		if rep.Packet.Kind == craft.KindTCP {
			s.sawOutgoing(&rep.Packet.Seg, rep.Time)
		}
		if s.env.Record != nil {
			s.env.Record(rep, nil)
		}
		return nil
	}
	if rep.Packet.Kind == craft.KindICMP {
		ic := rep.Packet.ICMP
		s.steps++
		st := event.Step{N: s.steps, TimeMs: ms(s.env.Now().Sub(s.start)), Direction: "received", Src: ic.From.String(),
			Dst: s.cfg.Local.Addr().String(), ICMP: ic.Reason(),
			Explain: []string{fmt.Sprintf("ICMP %s from %v quoting our segment (seq %d)", ic.Reason(), ic.From, uint32(ic.Quoted.Seq))}}
		s.finishStep(&st)
		s.record(rep, &st)
		if s.me.State == tcpstate.SynSent {
			return &UnreachableError{Reason: ic.Reason(), From: ic.From}
		}
		return nil
	}
	seg := &rep.Packet.Seg
	if s.collecting {
		s.collected = append(s.collected, seg.Clone())
	}
	switch {
	case s.me.State == tcpstate.SynSent:
		return s.handleSynSent(ctx, rep, seg)
	case seg.Flags.Has(craft.RST):
		return s.handleRST(rep, seg)
	default:
		return s.handleSynced(ctx, rep, seg)
	}
}

// sawOutgoing notes the wire time of our own segments, for RTT samples, and
// notices RSTs that our kernel sent despite the guard.
func (s *Session) sawOutgoing(seg *craft.Segment, at time.Time) {
	if seg.Flags.Has(craft.RST) {
		s.rstSeen++
		if s.rstSeen > s.rstSent {
			s.env.Sink.Emit(event.Warning{Message: fmt.Sprintf("our kernel sent its own RST (seq %d) to the peer: the guard did not hold it back (is --no-guard set, or was the guard's nftables table removed?); the peer will abort the connection", uint32(seg.Seq))})
			s.rstSent = s.rstSeen
		}
		return
	}
	for _, f := range s.queue {
		if f.wire.IsZero() && f.seg.Seq == seg.Seq && f.seg.Flags == seg.Flags && len(f.seg.Payload) == len(seg.Payload) {
			f.wire = at
			return
		}
	}
}

func (s *Session) record(rep capture.Reply, st *event.Step) {
	if s.env.Record != nil {
		s.env.Record(rep, st)
	}
}

// received emits a step for an incoming segment after updating both models.
func (s *Session) received(rep capture.Reply, seg *craft.Segment, why []string) {
	st := s.stepOf("received", seg)
	st.TTL = seg.TTL
	if !rep.Time.IsZero() && !s.start.IsZero() {
		st.TimeMs = ms(rep.Time.Sub(s.start))
	}
	var pchg tcpstate.Change
	if s.finsCrossed(seg) {
		// Our model let the peer receive our FIN when we sent it; its FIN
		// shows it had not: it closed from ESTABLISHED, then got ours.
		s.peer.State, s.peer.FinRcvd, s.peer.RcvNxt = tcpstate.Established, false, s.me.FinSeq
		first := s.peer.Send(seg)
		ours := craft.Segment{Seq: s.me.FinSeq, Ack: seg.Seq, Flags: craft.FIN | craft.ACK}
		pchg = s.peer.Receive(&ours)
		pchg.From = first.From
		why = append(why, fmt.Sprintf("its FIN does not acknowledge ours (ack %d ≤ our FIN's seq %d): it left before ours arrived, the FINs crossed (simultaneous close)", uint32(seg.Ack), uint32(s.me.FinSeq)))
		pchg.Why = "sent its FIN, then received ours: simultaneous close"
	} else {
		pchg = s.peer.Send(seg)
	}
	chg := s.me.Receive(seg)
	st.Explain = append(why, changes(chg, pchg)...)
	s.finishStep(&st)
	s.record(rep, &st)
}

// finsCrossed reports whether seg is the peer's FIN sent before our FIN
// reached it: its ack stops at our FIN while the model already had the peer
// in CLOSE-WAIT (RFC 9293 §3.6, simultaneous close).
func (s *Session) finsCrossed(seg *craft.Segment) bool {
	return seg.Flags.Has(craft.FIN) && seg.Flags.Has(craft.ACK) && s.me.FinSent &&
		s.peer.State == tcpstate.CloseWait && s.peer.FinRcvd && seg.Ack.LessThanEq(s.me.FinSeq)
}

func (s *Session) handleSynSent(ctx context.Context, rep capture.Reply, seg *craft.Segment) error {
	f := seg.Flags
	ackOK := f.Has(craft.ACK) && seg.Ack == s.sndNxt
	switch {
	case f.Has(craft.RST) && ackOK:
		s.received(rep, seg, []string{fmt.Sprintf("RST,ACK with ack %d = our ISN + 1: nothing listens on port %d, the peer's kernel refused (RFC 9293 §3.10.7.1)", uint32(seg.Ack), s.cfg.Remote.Port())})
		s.done()
		return ErrRefused
	case f.Has(craft.RST):
		s.received(rep, seg, []string{"RST that does not acknowledge our SYN: not acceptable in SYN-SENT, ignored (RFC 9293 §3.10.7.3)"})
		return nil
	case f.Has(craft.ACK) && !ackOK:
		s.received(rep, seg, []string{fmt.Sprintf("ack %d does not acknowledge our SYN (want %d): a stale or forged segment; RFC 9293 §3.10.7.3 answers it with a reset", uint32(seg.Ack), uint32(s.sndNxt))})
		return nil
	case !f.Has(craft.SYN):
		return nil
	}
	s.irs, s.rcvNxt, s.synced = seg.Seq, seg.Seq.Add(1), true
	why := []string{fmt.Sprintf("SYN-ACK: the peer's ISN is %d (relative 0); ack %d = our seq %d + 1: a SYN takes one sequence number", uint32(seg.Seq), uint32(seg.Ack), uint32(s.iss))}
	why = append(why, s.negotiate(seg)...)
	if ackOK {
		s.acked(seg.Ack, rep.Time)
	}
	s.received(rep, seg, why)
	if !ackOK {
		// Simultaneous open (RFC 9293 §3.5, Figure 7): answer with SYN-ACK.
		return s.send(ctx, s.synAck(), []string{"simultaneous open: both ends sent SYN; we answer with SYN-ACK"}, false)
	}
	if s.manualAck {
		s.note("your turn: `ack` completes the handshake (the peer waits in SYN-RECEIVED and will repeat its SYN-ACK)", "", "")
		return nil
	}
	return s.ack(ctx, []string{
		fmt.Sprintf("ACK: ack %d = peer seq %d + 1 (its SYN takes one sequence number); seq %d = our ISN + 1", uint32(s.rcvNxt), uint32(s.irs), uint32(s.sndNxt)),
		"the three-way handshake is complete",
	})
}

func (s *Session) synAck() craft.Segment {
	seg := s.segment(craft.SYN|craft.ACK, nil)
	seg.Seq = s.iss
	seg.Options = craft.SYNOptions(s.cfg.SYN)
	return seg
}

// negotiate reads the peer's SYN options and states what was agreed.
func (s *Session) negotiate(seg *craft.Segment) []string {
	var out []string
	mss, ok := seg.Options.MSS()
	def := uint16(craft.DefaultMSSv4)
	if s.cfg.Remote.Addr().Is6() {
		def = craft.DefaultMSSv6
	}
	if !ok {
		mss = def
		out = append(out, fmt.Sprintf("no MSS option: the default %d applies (RFC 9293 §3.7.1)", def))
	}
	s.peerMSS = mss
	ours := s.cfg.SYN.MSS
	if ours == 0 {
		ours = def
	}
	s.mss = min(mss, ours)
	if ok {
		out = append(out, fmt.Sprintf("MSS: the peer accepts %d, we %d: segments carry at most min(%d, %d) = %d bytes", mss, ours, mss, ours, s.mss))
	}
	if ws, ok := seg.Options.WindowScale(); ok && s.cfg.SYN.WScale >= 0 {
		s.wscaleOK, s.rcvShift = true, ws
		out = append(out, fmt.Sprintf("window scale: the peer's windows count in units of 2^%d, ours of 2^%d (RFC 7323)", ws, s.cfg.SYN.WScale))
	}
	if seg.Options.SACKPermitted() && s.cfg.SYN.SACKOK {
		s.sackOK = true
		out = append(out, "SACK permitted by both ends (RFC 2018)")
	}
	if val, _, ok := seg.Options.Timestamps(); ok && s.cfg.SYN.Timestamp {
		s.tsOK, s.tsRecent = true, val
		out = append(out, "timestamps on both ends: every segment now carries TSval/TSecr (RFC 7323)")
	}
	s.peerWnd = uint32(seg.Window) // a SYN's window is never scaled
	return out
}

// acked advances SND.UNA and drops acknowledged segments from the
// retransmission queue, sampling the RTT from segments sent once (Karn).
func (s *Session) acked(ack craft.Seq, at time.Time) {
	if !s.sndUna.LessThan(ack) || s.sndNxt.LessThan(ack) {
		return
	}
	s.sndUna = ack
	now := s.env.Now()
	for len(s.queue) > 0 && s.queue[0].seg.End().LessThanEq(ack) {
		f := s.queue[0]
		if f.retrans == 0 {
			if !f.wire.IsZero() && !at.IsZero() {
				s.est.sample(at.Sub(f.wire))
			} else {
				s.est.sample(now.Sub(f.sentAt))
			}
			s.rto = min(max(s.est.srtt+max(4*s.est.rttvar, time.Millisecond), minRTO), maxRTO)
		}
		s.queue = s.queue[1:]
	}
	s.rtoDeadline = now.Add(s.rto)
}

func (s *Session) handleRST(rep capture.Reply, seg *craft.Segment) error {
	// RFC 9293 §3.10.7.4 with RFC 5961 §3.2: an RST is acceptable only with
	// seq = RCV.NXT; in the window it draws a challenge ACK; outside, nothing.
	if seg.Seq == s.rcvNxt {
		s.received(rep, seg, []string{fmt.Sprintf("RST with seq %d = RCV.NXT: acceptable, the peer aborted the connection", uint32(seg.Seq))})
		s.done()
		return ErrReset
	}
	s.received(rep, seg, []string{fmt.Sprintf("RST with seq %d ≠ RCV.NXT %d: not acceptable (RFC 5961 §3.2), ignored", uint32(seg.Seq), uint32(s.rcvNxt))})
	return nil
}

// handleSynced processes a segment in a synchronized state: ACK, then data,
// then FIN (RFC 9293 §3.10.7.4, fifth to eighth steps).
func (s *Session) handleSynced(ctx context.Context, rep capture.Reply, seg *craft.Segment) error {
	f := seg.Flags
	if s.tsOK {
		if val, _, ok := seg.Options.Timestamps(); ok && seg.Seq.LessThanEq(s.rcvNxt) {
			s.tsRecent = val
		}
	}
	if f.Has(craft.SYN) {
		if seg.Seq == s.irs {
			s.received(rep, seg, []string{"the peer repeats its SYN-ACK: our ACK was lost or late; we acknowledge again"})
			return s.ack(ctx, []string{fmt.Sprintf("ACK again: ack %d = peer ISN %d + 1", uint32(s.rcvNxt), uint32(s.irs))})
		}
		s.received(rep, seg, []string{"a SYN inside a synchronized connection (RFC 5961 §4: answer with a challenge ACK)"})
		return s.ack(ctx, []string{"challenge ACK: tells the peer our real numbers"})
	}
	var why []string
	n := uint32(len(seg.Payload))
	if f.Has(craft.ACK) {
		if s.peerAck.LessThan(seg.Ack) {
			s.peerAck = seg.Ack
		}
		s.peerWnd = uint32(seg.Window) << s.rcvShift // SND.WND, scaled (RFC 7323 §2.3)
		switch {
		case s.sndUna.LessThan(seg.Ack) && seg.Ack.LessThanEq(s.sndNxt):
			why = append(why, s.explainAck(seg.Ack))
			s.acked(seg.Ack, rep.Time)
		case s.sndNxt.LessThan(seg.Ack) && seg.Ack.LessThanEq(s.sndMax):
			why = append(why, fmt.Sprintf("ack %d covers bytes of a crafted segment we sent beyond SND.NXT %d: the peer reassembled them, so they count as sent", uint32(seg.Ack), uint32(s.sndNxt)))
			s.sndNxt = seg.Ack
			s.acked(seg.Ack, rep.Time)
		case s.sndNxt.LessThan(seg.Ack):
			why = append(why, fmt.Sprintf("ack %d acknowledges data we never sent (SND.NXT %d): RFC 9293 §3.10.7.4 says send an ACK and drop it", uint32(seg.Ack), uint32(s.sndNxt)))
			s.received(rep, seg, why)
			return s.ack(ctx, []string{"ACK of what we really have"})
		case n == 0 && !f.Has(craft.FIN) && seg.Ack == s.sndUna && len(s.queue) > 0:
			why = append(why, fmt.Sprintf("duplicate ACK %d: the peer still waits for seq %d", uint32(seg.Ack), uint32(seg.Ack)))
		}
	}
	end := seg.Seq.Add(n)
	needAck := false
	switch {
	case n == 0 && !f.Has(craft.FIN):
		// A pure ACK: nothing to acknowledge.
	case seg.Seq == s.rcvNxt:
		s.got = append(s.got, seg.Payload...)
		s.rcvNxt = end
		if n > 0 {
			why = append(why, fmt.Sprintf("%d bytes of data from the peer (relative seq %d to %d)", n, uint32(seg.Seq-s.irs), uint32(end-s.irs)))
		}
		s.drainOOO(&why)
		if f.Has(craft.FIN) && s.rcvNxt == end {
			s.finRcvdSeq = end
			s.rcvNxt = end.Add(1)
			why = append(why, fmt.Sprintf("FIN at seq %d: the peer has nothing more to send", uint32(end)))
		}
		needAck = true
	case end.LessThanEq(s.rcvNxt) && !(f.Has(craft.FIN) && end == s.rcvNxt):
		why = append(why, fmt.Sprintf("duplicate: seq %d to %d was already received (the peer retransmitted; our ACK may have been lost)", uint32(seg.Seq), uint32(end)))
		needAck = true
	case f.Has(craft.FIN) && s.finRcvdSeq == end && s.rcvNxt == end.Add(1):
		why = append(why, "the peer repeats its FIN: our ACK of it was lost or late")
		needAck = true
	case seg.Seq.LessThan(s.rcvNxt):
		fresh := seg.Payload[uint32(s.rcvNxt-seg.Seq):]
		why = append(why, fmt.Sprintf("partly new: %d of %d bytes were already received", n-uint32(len(fresh)), n))
		s.got = append(s.got, fresh...)
		s.rcvNxt = end
		if f.Has(craft.FIN) {
			s.finRcvdSeq = end
			s.rcvNxt = end.Add(1)
		}
		needAck = true
	default:
		why = append(why, fmt.Sprintf("out of order: we expect seq %d, this starts %d bytes later; kept until the gap is filled, and we repeat ack %d", uint32(s.rcvNxt), uint32(seg.Seq-s.rcvNxt), uint32(s.rcvNxt)))
		s.ooo[seg.Seq] = append([]byte(nil), seg.Payload...)
		needAck = true
	}
	s.received(rep, seg, why)
	if !needAck {
		return nil
	}
	return s.ack(ctx, s.explainOurAck(seg, n))
}

// drainOOO appends held out-of-order data that is now in order.
func (s *Session) drainOOO(why *[]string) {
	for {
		b, ok := s.ooo[s.rcvNxt]
		if !ok {
			return
		}
		delete(s.ooo, s.rcvNxt)
		s.got = append(s.got, b...)
		*why = append(*why, fmt.Sprintf("the gap is filled: %d held bytes at seq %d are now in order", len(b), uint32(s.rcvNxt)))
		s.rcvNxt = s.rcvNxt.Add(uint32(len(b)))
	}
}

func (s *Session) explainAck(ack craft.Seq) string {
	for _, f := range s.queue {
		if f.seg.End() == ack {
			switch {
			case f.seg.Flags.Has(craft.FIN) && len(f.seg.Payload) == 0:
				return fmt.Sprintf("ack %d = our FIN's seq %d + 1: the peer has our FIN (a FIN takes one sequence number)", uint32(ack), uint32(f.seg.Seq))
			case len(f.seg.Payload) > 0:
				return fmt.Sprintf("ack %d = %d + %d bytes: the peer has all our data up to here", uint32(ack), uint32(f.seg.Seq), len(f.seg.Payload))
			}
		}
	}
	return fmt.Sprintf("ack %d: the peer has everything before seq %d", uint32(ack), uint32(ack))
}

func (s *Session) explainOurAck(seg *craft.Segment, n uint32) []string {
	switch {
	case seg.Flags.Has(craft.FIN) && s.rcvNxt == seg.Seq.Add(n+1):
		if n > 0 {
			return []string{fmt.Sprintf("ack %d = peer seq %d + %d bytes + 1 for the FIN (a FIN takes one sequence number)", uint32(s.rcvNxt), uint32(seg.Seq), n)}
		}
		return []string{fmt.Sprintf("ack %d = peer FIN seq %d + 1: a FIN takes one sequence number; seq stays %d: nothing new sent", uint32(s.rcvNxt), uint32(seg.Seq), uint32(s.sndNxt))}
	case n > 0 && seg.Seq.Add(n) == s.rcvNxt:
		return []string{fmt.Sprintf("ack %d = %d + %d bytes; seq stays %d: nothing new sent", uint32(s.rcvNxt), uint32(seg.Seq), n, uint32(s.sndNxt))}
	default:
		return []string{fmt.Sprintf("ack %d: everything before it is here, nothing after (RCV.NXT)", uint32(s.rcvNxt))}
	}
}

// Send sends data in segments of at most the negotiated MSS and waits until
// the peer has acknowledged all of it, acknowledging what the peer sends
// meanwhile.
//
// It respects the peer's receive window (RFC 9293 §3.8.6): what is in
// flight never exceeds the window the peer last advertised, so a large
// --send-file waits for ACKs instead of overrunning the peer.
func (s *Session) Send(ctx context.Context, data []byte) error {
	mss := int(max(s.mss, 1))
	for off := 0; off < len(data); {
		room := int(s.peerWnd) - int(uint32(s.sndNxt-s.sndUna))
		if room <= 0 {
			una := s.sndUna
			err := s.pump(ctx, func() bool { return una.LessThan(s.sndUna) || s.windowOpen() }, s.env.Now().Add(s.cfg.Timeout))
			if errors.Is(err, errDeadline) {
				return fmt.Errorf("the peer's receive window stayed full for %v (its application does not read)", s.cfg.Timeout)
			}
			if err != nil {
				return err
			}
			continue
		}
		n := min(len(data)-off, mss, room)
		if err := s.Write(ctx, data[off:off+n]); err != nil {
			return err
		}
		off += n
	}
	target := s.sndNxt
	return s.pump(ctx, func() bool { return target.LessThanEq(s.sndUna) }, time.Time{})
}

// windowOpen reports whether the peer's window leaves room for more data.
func (s *Session) windowOpen() bool {
	return int(s.peerWnd)-int(uint32(s.sndNxt-s.sndUna)) > 0
}

func (s *Session) canSend() bool {
	return s.me.State == tcpstate.Established || s.me.State == tcpstate.CloseWait
}

// Hold stays in the current state for d, acknowledging whatever arrives.
func (s *Session) Hold(ctx context.Context, d time.Duration) error {
	err := s.pump(ctx, func() bool { return false }, s.env.Now().Add(d))
	if errors.Is(err, errDeadline) {
		return nil
	}
	return err
}

// Close ends the connection as mode says.
func (s *Session) Close(ctx context.Context, mode CloseMode) error {
	defer s.done()
	switch mode {
	case CloseRST:
		return s.RST(ctx)
	case CloseNone:
		s.releaseGuard()
		s.note("we leave the connection ESTABLISHED and remove the guard: the peer keeps a connection nobody owns here; "+
			"our kernel will answer its next segment (data or keepalive) with RST, so it ends then", "", s.observe())
		return nil
	case CloseWait:
		if err := s.waitPeerFIN(ctx, "passive close: we wait for the peer to close first"); err != nil {
			return err
		}
		return s.finAndWait(ctx)
	case CloseHalf:
		if err := s.sendFIN(ctx, "half-close: FIN says we will send nothing more, but we keep receiving until the peer closes too"); err != nil {
			return err
		}
		if err := s.waitPeerFIN(ctx, ""); err != nil {
			return err
		}
		return s.finish(ctx)
	default:
		return s.finAndWait(ctx)
	}
}

// finAndWait sends our FIN (active close, or the second half of a passive
// one) and waits for the connection to finish.
func (s *Session) finAndWait(ctx context.Context) error {
	if s.me.FinSent {
		return s.finish(ctx) // our FIN is out already (the shell's `fin`): only wait for the end
	}
	why := "active close: FIN says we have nothing more to send"
	if s.me.State == tcpstate.CloseWait {
		why = "the peer closed first, so this is the passive side: our FIN after its FIN"
	}
	if err := s.sendFIN(ctx, why); err != nil {
		return err
	}
	return s.finish(ctx)
}

func (s *Session) sendFIN(ctx context.Context, why string) error {
	fin := s.segment(craft.FIN|craft.ACK, nil)
	return s.transmit(ctx, fin, []string{why, fmt.Sprintf("a FIN takes one sequence number: seq %d, our next would be %d", uint32(fin.Seq), uint32(fin.Seq)+1)})
}

// waitPeerFIN waits (bounded by Timeout) until the peer's FIN arrived.
func (s *Session) waitPeerFIN(ctx context.Context, why string) error {
	if why != "" {
		s.note(why, "", "")
	}
	err := s.pump(ctx, func() bool { return s.me.FinRcvd }, s.env.Now().Add(s.cfg.Timeout))
	if errors.Is(err, errDeadline) {
		s.note(fmt.Sprintf("the peer did not close within %v (its application keeps the connection open); we reset it so nothing stays half-open", s.cfg.Timeout), "", s.observe())
		rst := s.resetSegment()
		if err := s.send(ctx, rst, []string{"RST: abort instead of waiting forever"}, false); err != nil {
			return err
		}
		return ErrPeerStays
	}
	return err
}

// finish waits for our FIN's ACK and the peer's FIN, then runs TIME-WAIT.
func (s *Session) finish(ctx context.Context) error {
	closed := func() bool {
		return s.me.State == tcpstate.Closed || s.me.State == tcpstate.TimeWait
	}
	err := s.pump(ctx, closed, s.env.Now().Add(s.cfg.Timeout))
	if errors.Is(err, errDeadline) {
		s.note(fmt.Sprintf("the peer did not finish closing within %v; we reset it so nothing stays half-open", s.cfg.Timeout), "", s.observe())
		rst := s.resetSegment()
		if err := s.send(ctx, rst, []string{"RST: abort instead of waiting forever"}, false); err != nil {
			return err
		}
		return ErrPeerStays
	}
	if err != nil || s.me.State != tcpstate.TimeWait {
		return err
	}
	s.note(fmt.Sprintf("TIME-WAIT: RFC 9293 waits 2·MSL (4 minutes; Linux 60 s) so a lost last ACK can be repeated and old duplicates die out; here %v (--time-wait)", s.cfg.TimeWait), "", s.observe())
	if err := s.Hold(ctx, s.cfg.TimeWait); err != nil {
		return err
	}
	chg := s.me.Expire()
	s.note(fmt.Sprintf("%s: the connection is gone on our side", chg), "", s.observe())
	return nil
}

// done removes the guard and the stream.
func (s *Session) done() {
	s.releaseGuard()
	if s.stream != nil {
		s.env.Matcher.CloseStream(s.stream)
		s.stream = nil
	}
}

func (s *Session) releaseGuard() {
	if s.release != nil {
		s.release()
		s.release = nil
	}
}

// Abort cleans up after an error: if the connection still exists on the
// peer, reset it, so nothing stays half-open; then remove the guard.
func (s *Session) Abort() {
	if s.stream != nil && s.synced && s.me.State != tcpstate.Closed && s.me.State != tcpstate.TimeWait {
		rst := s.resetSegment()
		if pkt, err := rst.Marshal(); err == nil {
			s.env.Sender.Send(pkt, s.cfg.Remote.Addr())
		}
	}
	s.done()
}

// Summary reports the session's end.
func (s *Session) Summary() event.Summary {
	sum := event.Summary{
		Command: s.command, Host: s.cfg.Host, Elapsed: ms(s.env.Now().Sub(s.start)),
		Local: s.me.State.String(), Remote: s.peer.State.String(), Observed: s.lastObserved,
		BytesSent: s.sentBytes, BytesReceived: len(s.got), Retransmissions: s.retransmits,
	}
	if s.est.samples > 0 {
		sum.SRTTMs = ms(s.est.srtt)
	}
	return sum
}

// showData renders a payload as text when it is printable UTF-8, else hex.
func showData(b []byte) string {
	if utf8.Valid(b) {
		printable := true
		for _, r := range string(b) {
			if r < 0x20 && r != '\r' && r != '\n' && r != '\t' {
				printable = false
				break
			}
		}
		if printable {
			return string(b)
		}
	}
	return fmt.Sprintf("hex:%x", b)
}
