package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// FuzzSession plays arbitrary conversations: the fuzz input is decoded into
// a session's configuration, then a sequence of the peer's segments (any
// flags; seq and ack relative to the real numbers or absolute; any window,
// payload length and options), ICMP errors, and the session's operations
// (the shell's commands). It runs in a synctest bubble with no network and
// no goroutine but the test's: the matcher is driven by hand (Dispatch), a
// fake sender hands our segments' copies back as the packet socket would,
// so a run is deterministic. After every step the session emits, and after
// every operation, it checks the invariants: no panic; SND.UNA ≤ SND.NXT;
// RCV.NXT only moves forward, and equals IRS + 1 + the bytes delivered (+1
// for a FIN); the held bytes stay within our window; the steps' times never
// go back and they are numbered in order; SND.UNA and SND.NXT never move
// back; a timer is armed whenever
// segments wait for their ACK; every queued segment lies between SND.UNA
// and SND.NXT.

var (
	fuzzLocal  = netip.MustParseAddrPort("198.51.100.1:40000")
	fuzzRemote = netip.MustParseAddrPort("198.51.100.2:7")
	fuzzOther  = netip.MustParseAddr("198.51.100.9") // a third host (forged ICMP)
)

const (
	fuzzISN     craft.Seq = 1000 // ours
	fuzzPeerISN craft.Seq = 5000 // the peer's, when the input takes it relative
	fuzzMaxOps            = 64
)

// fuzzIn reads the fuzz input; past its end it reads zeros.
type fuzzIn struct {
	b []byte
	i int
}

func (in *fuzzIn) more() bool { return in.i < len(in.b) }

func (in *fuzzIn) u8() uint8 {
	if in.i >= len(in.b) {
		return 0
	}
	in.i++
	return in.b[in.i-1]
}

func (in *fuzzIn) u16() uint16 { return uint16(in.u8())<<8 | uint16(in.u8()) }
func (in *fuzzIn) u32() uint32 { return uint32(in.u16())<<16 | uint32(in.u16()) }
func (in *fuzzIn) i8() int32   { return int32(int8(in.u8())) }

// fuzzWire is the network: what the session sends is dispatched back as
// an outgoing frame (the packet socket sees our segments leave), and, while
// the input has armed it, a small peer answers at once, in the same
// goroutine, so that operations that wait get answers and the run stays
// deterministic: it acknowledges what arrives in order (SYN with SYN-ACK),
// may echo data and answer a FIN with its own, loses every Nth segment, and
// names what it holds out of order in a SACK block.
type fuzzWire struct {
	m        *capture.Matcher
	failNext bool

	react     int   // our segments still to be answered
	mode      uint8 // 1 echo data, 2 close when we do, 4 SACK
	loseEvery int   // lose every Nth segment (0: none)
	n         int
	synced    bool
	rcvNxt    craft.Seq    // the peer's RCV.NXT
	sndNxt    craft.Seq    // the peer's SND.NXT
	held      [2]craft.Seq // one out-of-order block the peer holds
}

func (w *fuzzWire) Send(pkt []byte, dst netip.Addr) error {
	if w.failNext {
		w.failNext = false
		return errors.New("fuzz: send failed (as EPERM from a firewall)")
	}
	if dst != fuzzRemote.Addr() {
		return fmt.Errorf("fuzz: sent to %v", dst)
	}
	w.m.Dispatch(&capture.Frame{Data: pkt, Time: time.Now(), Outgoing: true})
	if w.react == 0 {
		return nil
	}
	w.react--
	p, err := craft.Parse(pkt)
	if err != nil {
		return fmt.Errorf("fuzz: parse our segment: %w", err)
	}
	if reply, ok := w.answer(&p.Seg); ok {
		b, err := reply.Marshal()
		if err != nil {
			return fmt.Errorf("fuzz: build answer: %w", err)
		}
		w.m.Dispatch(&capture.Frame{Data: b, Time: time.Now()})
	}
	return nil
}

// answer is the small peer's reply to one of our segments.
func (w *fuzzWire) answer(seg *craft.Segment) (craft.Segment, bool) {
	w.n++
	f := seg.Flags
	out := craft.Segment{Src: fuzzRemote, Dst: fuzzLocal, Flags: craft.ACK, Window: 65535, TTL: 64}
	switch {
	case w.loseEvery > 0 && w.n%w.loseEvery == 0:
		return out, false
	case f.Has(craft.RST):
		w.synced = false
		return out, false
	case f.Has(craft.SYN) && !f.Has(craft.ACK):
		w.synced, w.held = true, [2]craft.Seq{}
		w.rcvNxt, w.sndNxt = seg.End(), fuzzPeerISN+1
		out.Flags, out.Seq, out.Ack = craft.SYN|craft.ACK, fuzzPeerISN, w.rcvNxt
		out.Options = craft.Options{craft.MSS(1460)}
		if w.mode&4 != 0 {
			out.Options = append(out.Options, craft.SACKPermitted())
		}
		return out, true
	case !w.synced || seg.Len() == 0:
		return out, false
	}
	var fresh []byte
	switch {
	case seg.Seq == w.rcvNxt:
		fresh = seg.Payload
		w.rcvNxt = seg.End()
		if w.held[1] != w.held[0] && w.held[0].LessThanEq(w.rcvNxt) {
			if w.rcvNxt.LessThan(w.held[1]) {
				w.rcvNxt = w.held[1]
			}
			w.held = [2]craft.Seq{}
		}
	case w.rcvNxt.LessThan(seg.Seq):
		w.held = [2]craft.Seq{seg.Seq, seg.End()}
	}
	out.Seq, out.Ack = w.sndNxt, w.rcvNxt
	if w.mode&1 != 0 && len(fresh) > 0 {
		out.Flags |= craft.PSH
		out.Payload = append([]byte(nil), fresh...)
		w.sndNxt = w.sndNxt.Add(uint32(len(fresh)))
	}
	if w.mode&2 != 0 && f.Has(craft.FIN) && seg.End() == w.rcvNxt {
		out.Flags |= craft.FIN
		w.sndNxt = w.sndNxt.Add(1)
	}
	if w.mode&4 != 0 && w.held[1] != w.held[0] {
		out.Options = craft.Options{craft.NOP(), craft.NOP(), craft.SACK(craft.SACKBlock{Left: w.held[0], Right: w.held[1]})}
	}
	return out, true
}

func (w *fuzzWire) Close() error { return nil }

// fuzzRun is one conversation and its invariant checks.
type fuzzRun struct {
	t       *testing.T
	in      *fuzzIn
	s       *Session
	wire    *fuzzWire
	m       *capture.Matcher
	synced  bool      // RCV.NXT was set from the peer's SYN
	rcvNxt  craft.Seq // the last RCV.NXT seen
	sending bool      // our SYN went out: SND.UNA and SND.NXT only move forward
	sndUna  craft.Seq
	sndNxt  craft.Seq
	lastMs  float64
	lastN   int
	story   []string // every event, in short, to compare runs
	checked int
}

// Emit is the session's sink: every event passes here, and the invariants
// are checked at each step, while the loop runs.
func (r *fuzzRun) Emit(e event.Event) {
	st, ok := e.(event.Step)
	if !ok {
		r.story = append(r.story, fmt.Sprintf("%T %v", e, e))
		return
	}
	r.story = append(r.story, fmt.Sprintf("%d %.3f %s [%s] %d %d %d %v", st.N, st.TimeMs, st.Direction, st.Flags, st.Seq, st.Ack, st.Len, st.Explain))
	if st.TimeMs < r.lastMs {
		r.t.Fatalf("step %d (%s [%s]) at %.3f ms after a step at %.3f ms", st.N, st.Direction, st.Flags, st.TimeMs, r.lastMs)
	}
	r.lastMs = st.TimeMs
	if st.Direction != "note" {
		if st.N != r.lastN+1 {
			r.t.Fatalf("step numbered %d after %d", st.N, r.lastN)
		}
		r.lastN = st.N
	}
	r.check("step " + st.Direction + " [" + st.Flags + "]")
}

func (r *fuzzRun) check(where string) {
	r.checked++
	s := r.s
	me := s.me
	if me.SndNxt.LessThan(me.SndUna) {
		r.t.Fatalf("%s: SND.UNA %d > SND.NXT %d", where, me.SndUna, me.SndNxt)
	}
	if me.State != tcpstate.Closed || me.SndNxt != me.ISS {
		if r.sending && (me.SndNxt.LessThan(r.sndNxt) || me.SndUna.LessThan(r.sndUna)) {
			r.t.Fatalf("%s: SND.UNA/SND.NXT moved back from %d/%d to %d/%d", where, r.sndUna, r.sndNxt, me.SndUna, me.SndNxt)
		}
		r.sending, r.sndUna, r.sndNxt = true, me.SndUna, me.SndNxt
	}
	if me.State != tcpstate.Closed && me.State != tcpstate.SynSent || me.FinRcvd {
		if !r.synced {
			r.synced, r.rcvNxt = true, me.RcvNxt
		}
	}
	if r.synced {
		if me.RcvNxt.LessThan(r.rcvNxt) {
			r.t.Fatalf("%s: RCV.NXT moved back from %d to %d", where, r.rcvNxt, me.RcvNxt)
		}
		r.rcvNxt = me.RcvNxt
		fin := uint32(0)
		if me.FinRcvd {
			fin = 1
		}
		if got, want := uint32(me.RcvNxt-me.IRS), 1+uint32(len(me.Delivered))+fin; got != want {
			r.t.Fatalf("%s: RCV.NXT = IRS + %d, but %d bytes were delivered (FIN %v)", where, got, len(me.Delivered), me.FinRcvd)
		}
	}
	if h, w := me.HeldBytes(), int(max(me.RcvWnd, 1)); h > w {
		r.t.Fatalf("%s: %d bytes held out of order, our window is %d", where, h, w)
	}
	if s.ended == nil && len(s.snd.queue) > 0 && s.snd.deadline.IsZero() {
		r.t.Fatalf("%s: %d segments wait for their ACK and no timer is armed (we are in %v)", where, len(s.snd.queue), me.State)
	}
	for i, f := range s.snd.queue {
		if !me.SndUna.LessThan(f.seg.End()) || me.SndNxt.LessThan(f.seg.End()) {
			r.t.Fatalf("%s: queued segment %d (seq %d to %d) outside SND.UNA %d .. SND.NXT %d", where, i, f.seg.Seq, f.seg.End(), me.SndUna, me.SndNxt)
		}
		if i > 0 && !s.snd.queue[i-1].seg.Seq.LessThan(f.seg.Seq) {
			r.t.Fatalf("%s: retransmission queue out of order at %d", where, i)
		}
	}
}

// rcvBase is the peer's next sequence number as we know it (before its SYN:
// its ISN + 1 as the input assumes it).
func (r *fuzzRun) rcvBase() craft.Seq {
	if r.synced || r.s.me.State != tcpstate.Closed && r.s.me.State != tcpstate.SynSent {
		return r.s.me.RcvNxt
	}
	return fuzzPeerISN + 1
}

func (r *fuzzRun) irs() craft.Seq {
	if r.synced {
		return r.s.me.IRS
	}
	return fuzzPeerISN
}

// seq decodes a sequence number the peer uses: relative to RCV.NXT, to its
// ISN, far from RCV.NXT, or absolute.
func (r *fuzzRun) seq() craft.Seq {
	switch m := r.in.u8(); m % 4 {
	case 0:
		return r.rcvBase() + craft.Seq(r.in.i8())
	case 1:
		return r.irs() + craft.Seq(r.in.i8())
	case 2:
		return r.rcvBase() + craft.Seq(int32(int16(r.in.u16()))*64)
	default:
		return craft.Seq(r.in.u32())
	}
}

// ack decodes an acknowledgment number: relative to SND.NXT, SND.UNA, our
// ISN, or absolute.
func (r *fuzzRun) ack() craft.Seq {
	me := r.s.me
	switch m := r.in.u8(); m % 4 {
	case 0:
		return me.SndNxt + craft.Seq(r.in.i8())
	case 1:
		return me.SndUna + craft.Seq(r.in.i8())
	case 2:
		return me.ISS + craft.Seq(int32(int16(r.in.u16())))
	default:
		return craft.Seq(r.in.u32())
	}
}

// peerSegment decodes one segment from the peer and puts it on the wire.
func (r *fuzzRun) peerSegment() {
	seg := craft.Segment{Src: fuzzRemote, Dst: fuzzLocal, Flags: craft.Flags(r.in.u8()), TTL: 64}
	seg.Seq = r.seq()
	seg.Ack = r.ack()
	seg.Window = r.in.u16()
	if n := int(r.in.u8()) * 6; n > 0 {
		seg.Payload = make([]byte, n)
		for i := range seg.Payload {
			seg.Payload[i] = byte(i)
		}
	}
	o := r.in.u8()
	if o&1 != 0 {
		seg.Options = append(seg.Options, craft.MSS(r.in.u16()))
	}
	if o&2 != 0 {
		seg.Options = append(seg.Options, craft.WindowScale(r.in.u8()&15))
	}
	if o&4 != 0 {
		seg.Options = append(seg.Options, craft.SACKPermitted())
	}
	if o&8 != 0 {
		seg.Options = append(seg.Options, craft.Timestamps(r.in.u32(), 1))
	}
	if o&16 != 0 {
		left := r.s.me.SndUna + craft.Seq(int32(int16(r.in.u16())))
		seg.Options = append(seg.Options, craft.NOP(), craft.NOP(), craft.SACK(craft.SACKBlock{Left: left, Right: left.Add(uint32(r.in.u16()))}))
	}
	pkt, err := seg.Marshal()
	if err != nil {
		return
	}
	r.m.Dispatch(&capture.Frame{Data: pkt, Time: time.Now()})
}

// icmp puts an ICMP port unreachable on the wire, from the peer or a third
// host, quoting a segment of ours with a decoded seq.
func (r *fuzzRun) icmp() {
	from := fuzzRemote.Addr()
	if r.in.u8()&1 != 0 {
		from = fuzzOther
	}
	me := r.s.me
	var q craft.Seq
	switch m := r.in.u8(); m % 3 {
	case 0:
		q = me.SndUna + craft.Seq(r.in.i8())
	case 1:
		q = me.ISS
	default:
		q = craft.Seq(r.in.u32())
	}
	quoted, err := (&craft.Segment{Src: fuzzLocal, Dst: fuzzRemote, Seq: q, Flags: craft.ACK, TTL: 64}).Marshal()
	if err != nil {
		return
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: from.AsSlice(), DstIP: fuzzLocal.Addr().AsSlice()}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic, gopacket.Payload(quoted)); err != nil {
		return
	}
	r.m.Dispatch(&capture.Frame{Data: buf.Bytes(), Time: time.Now()})
}

// op decodes and runs one of the session's operations. Their errors are
// part of the story (a command refused, a timeout); only the invariants
// and panics fail the run.
func (r *fuzzRun) op(ctx context.Context) {
	s, in := r.s, r.in
	data := func() []byte { return make([]byte, int(in.u8())*16) }
	switch c := in.u8(); c % 21 {
	case 0, 1, 2, 3, 4:
		// A segment from the peer, read at once (as the loop does while the
		// shell waits for a line).
		r.peerSegment()
		s.drain()
	case 5:
		// A segment from the peer still in the capture's buffer when the
		// next operation starts.
		r.peerSegment()
	case 6:
		_ = s.SYN(ctx)
	case 7:
		_ = s.ACK(ctx)
	case 8:
		_ = s.Write(ctx, data())
	case 9:
		_ = s.Send(ctx, data())
	case 10:
		_ = s.FIN(ctx)
	case 11:
		_ = s.RST(ctx)
	case 12:
		cr := Crafted{Flags: craft.Flags(in.u8())}
		m := in.u8()
		if m&1 != 0 {
			q := r.s.me.SndNxt + craft.Seq(in.i8())
			cr.Seq = &q
		}
		if m&2 != 0 {
			a := r.s.me.RcvNxt + craft.Seq(in.i8())
			cr.Ack = &a
		}
		if m&4 != 0 {
			w := in.u16()
			cr.Window = &w
		}
		if m&8 != 0 {
			cr.Data = make([]byte, in.u8())
		}
		_, _ = s.Craft(ctx, cr)
	case 13:
		s.MarkCommand()
		_ = s.Expect(ctx, Expectation{Flags: craft.Flags(in.u8()), Text: "fuzz"})
	case 14:
		_ = s.Hold(ctx, time.Duration(int(in.u8())+1)*10*time.Millisecond)
	case 15:
		switch in.u8() % 3 {
		case 0:
			_ = s.WaitAcked(ctx, "fuzz")
		case 1:
			_ = s.WaitOpen(ctx)
		default:
			_ = s.WaitOpenWithin(ctx, time.Duration(int(in.u8())+1)*10*time.Millisecond)
		}
	case 16:
		modes := []CloseMode{CloseFIN, CloseWait, CloseHalf, CloseRST, CloseNone}
		_ = s.Close(ctx, modes[int(in.u8())%len(modes)])
	case 17:
		r.icmp()
	case 18:
		_, _ = s.Collect(ctx, time.Duration(int(in.u8())+1)*10*time.Millisecond, int(in.u8()%4))
	case 20:
		// The small peer answers our next segments.
		r.wire.react, r.wire.mode, r.wire.loseEvery = int(in.u8()), in.u8(), int(in.u8()%6)
	case 19:
		switch in.u8() % 4 {
		case 0:
			r.wire.failNext = true
		case 1:
			_ = s.Numbers()
			_ = s.Summary()
		case 2:
			s.drain()
		default:
			lines := make(chan string, 2)
			lines <- "a"
			lines <- "b"
			close(lines)
			_ = s.Interact(ctx, lines, func(string) bool { r.op(ctx); return false })
		}
	}
}

// fuzzConfig decodes the session's configuration from the input's first
// bytes.
func fuzzConfig(in *fuzzIn) (SessionConfig, bool) {
	b := in.u8()
	isn := fuzzISN
	cfg := SessionConfig{
		Host: "198.51.100.2", Local: fuzzLocal, Remote: fuzzRemote, ISN: &isn, TTL: 64,
		Window:  []uint16{64240, 1000, 1, 65535, 300, 8192, 0, 1460}[in.u8()%8],
		SYN:     craft.SYNOptionSet{MSS: []uint16{1460, 536, 100, 0}[in.u8()%4], WScale: -1, SACKOK: b&2 != 0, Timestamp: b&4 != 0},
		ECN:     b&16 != 0,
		RTO:     time.Duration(1+in.u8()%8) * 100 * time.Millisecond,
		Retries: 1 + int(in.u8()%4),
		Timeout: time.Second,
		MTU:     []int{1500, 1280, 576, 9000}[in.u8()%4],
	}
	if b&8 != 0 {
		cfg.SYN.WScale = int(in.u8() % 16)
	}
	if b&32 != 0 {
		cfg.TimeWait = NoTimeWait
	} else {
		cfg.TimeWait = 200 * time.Millisecond
	}
	return cfg, b&1 != 0
}

// fuzzWatchdog bounds one input in real time. Inside the bubble time only
// moves while the session waits, so a loop that spins without waiting
// would hang the fuzzer silently; this makes it a crash with the input.
const fuzzWatchdog = 10 * time.Second

func fuzzSession(t *testing.T, input []byte) { fuzzPlay(t, input) }

// fuzzPlay plays one input and returns its story.
func fuzzPlay(t *testing.T, input []byte) (story []string) {
	done := make(chan struct{})
	defer close(done)
	go func() { // outside the bubble: real time
		select {
		case <-done:
		case <-time.After(fuzzWatchdog):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			panic(fmt.Sprintf("FuzzSession: input %q still runs after %v of real time: the session's loop spins without waiting\n%s", input, fuzzWatchdog, buf[:n]))
		}
	}()
	synctest.Test(t, func(t *testing.T) {
		in := &fuzzIn{b: input}
		cfg, manual := fuzzConfig(in)
		m := capture.NewMatcher()
		wire := &fuzzWire{m: m}
		r := &fuzzRun{t: t, in: in, wire: wire, m: m}
		n := uint32(0)
		s := NewSession(cfg, SessionEnv{Env: Env{
			Sender: wire, Matcher: m, Sink: r, Now: time.Now,
			Rand: func() uint32 { n++; return n * 0x9e3779b9 },
		}})
		r.s = s
		if manual {
			s.ManualACK()
		}
		if err := s.Begin("fuzz"); err != nil {
			t.Fatalf("begin: %v", err)
		}
		ctx := t.Context()
		for i := 0; i < fuzzMaxOps && in.more(); i++ {
			r.op(ctx)
			r.check(fmt.Sprintf("after operation %d", i+1))
		}
		s.Abort(context.Canceled)
		s.End()
		if len(s.emit.held) != 0 {
			t.Errorf("%d steps still held after End", len(s.emit.held))
		}
		r.check("after End")
		story = r.story
	})
	return story
}

// TestFuzzSessionDeterministic plays every seed twice: the same input must
// tell the same story, step by step, or the fuzzer could not reproduce
// what it finds.
func TestFuzzSessionDeterministic(t *testing.T) {
	for i, seed := range fuzzSeeds() {
		a, b := fuzzPlay(t, seed), fuzzPlay(t, seed)
		if len(a) < 2 {
			t.Errorf("seed %d tells nothing (%d events)", i, len(a))
		}
		if !slices.Equal(a, b) {
			t.Errorf("seed %d told two stories:\n%s\n---\n%s", i, strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
	}
}

func FuzzSession(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(fuzzSession)
}

// fuzzSeq builds fuzz inputs op by op, in the decoder's encoding.
type fuzzSeq []byte

// cfg: flags (1 manual ACK, 2 SACK, 4 timestamps, 8 window scale, 16 ECN,
// 32 no TIME-WAIT), then window, MSS, RTO, retries and MTU choices.
func newFuzzSeq(flags byte) fuzzSeq {
	s := fuzzSeq{flags, 0, 0, 9, 2, 0}
	if flags&8 != 0 {
		s = append(s, 7)
	}
	return s
}

// peer appends a segment from the peer: seq = RCV.NXT + dseq (mode 0) or
// the peer's ISN (mode 1), ack = SND.NXT + dack, window 65535, n×6 bytes.
func (s fuzzSeq) peer(flags craft.Flags, seqMode, dseq, dack int8, n uint8, opts ...byte) fuzzSeq {
	o := byte(0)
	if len(opts) > 0 {
		o = opts[0]
	}
	s = append(s, 0, byte(flags), byte(seqMode), byte(dseq))
	switch seqMode {
	case 2:
		s = append(s, 0) // a 16-bit offset, in units of 64
	case 3:
		s = append(s, 0, 0, 0) // an absolute seq: dseq is its top byte
	}
	s = append(s, 0, byte(dack), 0xff, 0xff, n, o)
	return append(s, opts[min(1, len(opts)):]...)
}

// peerBuffered is peer, left in the capture's buffer for the next
// operation.
func (s fuzzSeq) peerBuffered(flags craft.Flags, seqMode, dseq, dack int8, n uint8, opts ...byte) fuzzSeq {
	at := len(s)
	s = s.peer(flags, seqMode, dseq, dack, n, opts...)
	s[at] = 5
	return s
}

func (s fuzzSeq) op(code byte, args ...byte) fuzzSeq { return append(append(s, code), args...) }

func fuzzSeeds() [][]byte {
	sa := craft.SYN | craft.ACK
	a, pa, fa := craft.ACK, craft.PSH|craft.ACK, craft.FIN|craft.ACK
	handshake := func(flags byte) fuzzSeq {
		// SYN, the peer's SYN-ACK (MSS 1460), ACK
		return newFuzzSeq(flags).op(6).peer(sa, 1, 0, 0, 0, 1, 0x05, 0xb4).op(7)
	}
	return [][]byte{
		// Happy path: handshake, 6×16 bytes echoed, active close.
		handshake(0).op(8, 6).peer(pa, 0, 0, 0, 16).op(14, 5).op(10).peer(fa, 0, 0, 0, 0).op(14, 30).op(16, 0),
		// The shell: manual ACK, a repeated SYN-ACK before `ack`, send, fin.
		newFuzzSeq(1).op(6).peer(sa, 1, 0, 0, 0).peer(sa, 1, 0, 0, 0).op(14, 10).op(7).op(9, 2).peer(a, 0, 0, 0, 0).op(10).op(15, 0),
		// Refused, then every command.
		newFuzzSeq(0).op(6).peer(craft.RST|craft.ACK, 0, 0, 0, 0).op(7).op(8, 1).op(9, 1).op(10).op(11).op(13, 16).op(14, 3).op(16, 0).op(12, byte(pa), 0),
		// Reset mid-connection, then commands.
		handshake(0).op(8, 2).peer(craft.RST, 0, 0, 0, 0).op(9, 1).op(10).op(11).op(16, 1),
		// A flood of out-of-window data and forged RSTs and SYNs.
		handshake(2).peer(pa, 2, 0, 0, 200).peer(pa, 2, 0, 0, 200).peer(pa, 0, 100, 0, 50).peer(craft.RST, 0, 5, 0, 0).
			peer(craft.SYN, 0, 7, 0, 0).peer(pa, 0, 0, -100, 10).peer(pa, 0, 0, 100, 10).op(14, 20),
		// Loss: data out, three duplicate ACKs, a SACK block, a partial ACK.
		handshake(2).op(8, 255).peer(a, 0, 0, 0, 0).peer(a, 0, 0, 0, 0).peer(a, 0, 0, 0, 0).
			peer(a, 0, 0, 0, 0, 16, 0x05, 0xb4, 0x0b, 0x68).op(14, 50).op(15, 0),
		// Out-of-order data from the peer, the gap filled, its FIN first.
		handshake(0).peer(pa, 0, 60, 0, 10).peer(pa, 0, 0, 0, 10).peer(fa, 0, 120, 0, 0).op(14, 5).op(16, 1),
		// Crafted segments: out-of-window ack, data at SND.NXT, a SYN, an RST.
		handshake(0).op(12, byte(pa), 2|8, 100, 3).op(12, byte(pa), 8, 4).op(12, byte(craft.SYN), 0).op(14, 5).op(12, byte(craft.RST), 0).op(16, 0),
		// ICMP errors: forged (a third host, a seq never sent), then true, in SYN-SENT.
		newFuzzSeq(0).op(6).op(17, 1, 2, 0, 0, 0, 9).op(17, 0, 1).op(15, 1).op(9, 1),
		// Zero window, timestamps and window scaling, ECN.
		handshake(4|8|16).peer(a, 0, 0, 0, 0).op(8, 10).op(14, 100).op(19, 1),
		// Silent peer: SYN retransmitted until we give up.
		newFuzzSeq(32).op(6).op(15, 1).op(7).op(11),
		// The small peer answers: handshake, 160 bytes echoed, its FIN with ours.
		newFuzzSeq(0).op(20, 50, 1|2, 0).op(6).op(15, 1).op(7).op(9, 10).op(10).op(15, 0).op(16, 0),
		// The shell against it, SACK on, every third segment lost: 4080 bytes.
		newFuzzSeq(1|2).op(20, 200, 1|2|4, 3).op(6).op(15, 1).op(7).op(9, 255).op(9, 255).op(10).op(16, 0),
		// Loss without SACK, timestamps: fast retransmit and NewReno.
		newFuzzSeq(4).op(20, 200, 0, 4).op(6).op(15, 1).op(7).op(9, 255).op(16, 2),
		// A segment still in the buffer when the next command starts.
		newFuzzSeq(1).op(6).peerBuffered(sa, 1, 0, 0, 0).op(7).op(14, 2).peerBuffered(pa, 0, 0, 0, 1).op(9, 1),
	}
}
