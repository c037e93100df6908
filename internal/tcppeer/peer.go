package tcppeer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/probe/tcpstate"
)

// Answer is how the peer's port answers a SYN.
type Answer int

// The ways the port answers.
const (
	// Listen: a server accepts the connection and plays the script.
	Listen Answer = iota
	// Closed: nothing listens; a SYN gets RST,ACK with ack ISN+1 (RFC 9293
	// §3.10.7.1).
	Closed
	// Silent: everything is dropped, as by a firewall.
	Silent
)

// Defaults of New.
const (
	DefaultISN    craft.Seq = 2000
	DefaultWindow uint16    = 65535
	DefaultMSS    uint16    = 1460
	DefaultTTL    uint8     = 64
	DefaultRTT              = time.Millisecond
)

// Gap separates frames the peer sends one after another, so that no two of
// them arrive at the same instant.
const Gap = 10 * time.Microsecond

// A Record is one segment sent to the peer.
type Record struct {
	Seg  craft.Segment
	Time time.Time
	Lost bool // dropped on the way (Peer.Drop): the peer never saw it
}

// Peer is the far end of one connection. Set its fields before the first
// Send; [New] gives the defaults. It is safe for concurrent use: a session
// sends from one goroutine while a capture.Matcher reads from another.
type Peer struct {
	Answer Answer
	ISN    craft.Seq
	Window uint16
	MSS    uint16 // MSS option in the SYN-ACK; 0: none
	TTL    uint8
	// RTT is the time from one of our segments to the peer's first answer.
	RTT time.Duration
	// Delay is added to RTT before every answer: a slow peer (a busy host,
	// a long path) whose answers come that much later.
	Delay time.Duration
	// SYNACKDelay, when set, is the time from a SYN to its SYN-ACK instead
	// of RTT+Delay: a listener slow to answer (a full accept queue, a loaded
	// host), while the rest of the conversation goes at RTT+Delay.
	SYNACKDelay time.Duration
	// SYNACKTimeout, when set, is the peer's own retransmission timer in
	// SYN-RECEIVED: without our ACK it sends its SYN-ACK again after
	// SYNACKTimeout, then 2×, 4× … later, at most SYNACKRetries times (as
	// Linux does, tcp_synack_retries). A repeat that would leave after our
	// ACK reached the peer is not sent.
	SYNACKTimeout time.Duration
	// SYNACKRetries bounds the repeats of SYNACKTimeout (0: 5, Linux's
	// default).
	SYNACKRetries int

	// Echo sends received data back, in the segment that acknowledges it.
	Echo bool
	// Greeting is sent as soon as the handshake completes (a daytime-like
	// server).
	Greeting []byte
	// CloseFirst sends the peer's FIN right after its first data (the echo
	// or the greeting): the peer closes first, ours is the passive close.
	CloseFirst bool
	// AfterFIN is data the peer still sends after it acknowledged our FIN,
	// before its own FIN: we half-closed, it keeps talking.
	AfterFIN []byte
	// FINDelay is how long after acknowledging our FIN the peer sends its
	// own. Zero (and no AfterFIN): one FIN-ACK answers our FIN.
	FINDelay time.Duration
	// NeverClose: the peer acknowledges our FIN but never sends its own.
	NeverClose bool
	// CrossFIN: when our FIN arrives, the peer's FIN is already on its way
	// (it does not acknowledge ours): a simultaneous close.
	CrossFIN bool
	// Drop lists segments (numbered from 1 in the order we sent them) lost
	// before they reach the peer.
	Drop []int
	// Duplicate lists segments whose answers the peer sends twice.
	Duplicate []int
	// Reorder echoes in two segments and sends the second half first.
	Reorder bool
	// ResetAt answers the segment with this number with an RST: the peer
	// aborts the connection.
	ResetAt int

	mu       sync.Mutex
	wake     chan struct{}
	done     chan struct{}
	closed   bool
	queue    []frame
	order    uint64
	lastDue  time.Time
	n        int
	records  []Record
	data     []byte
	ooo      map[craft.Seq]heldSeg
	state    tcpstate.State
	irs      craft.Seq
	rcvNxt   craft.Seq
	sndNxt   craft.Seq
	sndUna   craft.Seq
	finSeq   craft.Seq
	finSent  bool
	finRcvd  bool
	talked   bool // the peer sent data of its own (echo or greeting)
	resetRcv bool
	// leftSynRcvd is when the peer left SYN-RECEIVED (zero: not yet), so
	// that SYN-ACK repeats timed after it are not sent.
	leftSynRcvd time.Time
}

type heldSeg struct {
	data []byte
	fin  bool
}

type frame struct {
	f     capture.Frame
	order uint64
	// repeat marks a SYN-ACK the peer's own timer sends at sentAt, only if
	// it is still in SYN-RECEIVED then.
	repeat bool
	sentAt time.Time
}

// New returns a listening peer with ISN 2000, window 65535, MSS 1460, TTL 64,
// an RTT of 1 ms, that echoes what it receives and answers our FIN with
// FIN-ACK.
func New() *Peer {
	return &Peer{
		Answer: Listen, ISN: DefaultISN, Window: DefaultWindow, MSS: DefaultMSS, TTL: DefaultTTL,
		RTT: DefaultRTT, Echo: true,
	}
}

func (p *Peer) init() {
	if p.wake == nil {
		p.wake = make(chan struct{}, 1)
		p.done = make(chan struct{})
		p.ooo = map[craft.Seq]heldSeg{}
		p.state = tcpstate.Listen
		if p.Answer != Listen {
			p.state = tcpstate.Closed
		}
	}
}

// errClosed is returned by Send after Close.
var errClosed = errors.New("tcppeer: peer closed")

// Send implements [capture.Sender]: our segment is captured leaving (an
// outgoing frame at once), reaches the peer unless it is to be dropped, and
// the peer's answers are queued RTT later.
func (p *Peer) Send(pkt []byte, dst netip.Addr) error {
	parsed, err := craft.Parse(pkt)
	if err != nil {
		return fmt.Errorf("tcppeer: parse sent packet: %w", err)
	}
	if parsed.Kind != craft.KindTCP {
		return fmt.Errorf("tcppeer: sent a %v packet, want TCP", parsed.Kind)
	}
	seg := parsed.Seg
	if seg.Dst.Addr() != dst {
		return fmt.Errorf("tcppeer: packet to %v sent towards %v", seg.Dst.Addr(), dst)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	if p.closed {
		return errClosed
	}
	now := time.Now()
	p.push(pkt, now, true)
	p.n++
	lost := slices.Contains(p.Drop, p.n)
	p.records = append(p.records, Record{Seg: seg, Time: now, Lost: lost})
	if lost {
		return nil
	}
	was := p.state
	replies := p.answer(&seg)
	if was == tcpstate.SynReceived && p.state != tcpstate.SynReceived && p.leftSynRcvd.IsZero() {
		p.leftSynRcvd = now
	}
	if slices.Contains(p.Duplicate, p.n) {
		replies = append(replies, replies...)
	}
	lag := p.RTT + p.Delay
	synAck := len(replies) > 0 && replies[0].seg.Flags.Has(craft.SYN|craft.ACK)
	if synAck && p.SYNACKDelay > 0 {
		lag = p.SYNACKDelay
	}
	due := now.Add(lag)
	for _, r := range replies {
		due = due.Add(r.delay)
		if !p.lastDue.Before(due) {
			due = p.lastDue.Add(Gap)
		}
		b, err := r.seg.Marshal()
		if err != nil {
			return fmt.Errorf("tcppeer: build answer: %w", err)
		}
		p.push(b, due, false)
		p.lastDue = due
		due = due.Add(Gap)
	}
	if synAck && was == tcpstate.Listen && p.SYNACKTimeout > 0 {
		if err := p.scheduleRepeats(replies[0].seg, now.Add(max(lag-p.RTT, 0))); err != nil {
			return err
		}
	}
	return nil
}

// scheduleRepeats queues the SYN-ACK repeats of the peer's own timer for a
// SYN-ACK that left at sent. The caller holds p.mu.
func (p *Peer) scheduleRepeats(synAck craft.Segment, sent time.Time) error {
	b, err := synAck.Marshal()
	if err != nil {
		return fmt.Errorf("tcppeer: build SYN-ACK repeat: %w", err)
	}
	n := p.SYNACKRetries
	if n == 0 {
		n = 5
	}
	at, rto := sent, p.SYNACKTimeout
	for range n {
		at = at.Add(rto)
		rto *= 2
		p.order++
		fr := frame{f: capture.Frame{Data: slices.Clone(b), Time: at.Add(p.RTT)}, order: p.order, repeat: true, sentAt: at}
		p.insert(fr)
	}
	return nil
}

// reply is one answer, delay after the one before it.
type reply struct {
	seg   craft.Segment
	delay time.Duration
}

// answer plays the peer's part for one segment that reached it and returns
// its answers. The caller holds p.mu.
func (p *Peer) answer(seg *craft.Segment) []reply {
	f := seg.Flags
	switch {
	case p.Answer == Silent:
		return nil
	case p.state == tcpstate.Closed:
		return p.closedAnswer(seg)
	case f.Has(craft.RST):
		if p.state != tcpstate.Listen && seg.Seq == p.rcvNxt {
			p.state, p.resetRcv = tcpstate.Closed, true
		}
		return nil
	case p.state == tcpstate.Listen:
		if f.Has(craft.ACK) {
			return []reply{{seg: p.segment(seg, craft.RST, seg.Ack, 0, nil)}}
		}
		if !f.Has(craft.SYN) {
			return nil
		}
		p.irs, p.rcvNxt = seg.Seq, seg.Seq.Add(1)
		p.sndUna, p.sndNxt = p.ISN, p.ISN.Add(1)
		p.state = tcpstate.SynReceived
		return []reply{{seg: p.synAck(seg)}}
	case f.Has(craft.SYN):
		if p.state == tcpstate.SynReceived && seg.Seq == p.irs {
			return []reply{{seg: p.synAck(seg)}} // our SYN again: its SYN-ACK again
		}
		return []reply{{seg: p.ack(seg)}} // RFC 5961 §4: challenge ACK
	case p.n == p.ResetAt:
		p.state = tcpstate.Closed
		return []reply{{seg: p.segment(seg, craft.RST|craft.ACK, p.sndNxt, p.rcvNxt, nil)}}
	case !f.Has(craft.ACK):
		return nil
	}
	var out []reply
	out = append(out, p.acked(seg)...)
	if p.state == tcpstate.SynReceived || p.state == tcpstate.Closed {
		return out
	}
	return append(out, p.receive(seg)...)
}

// acked processes the acknowledgment field.
func (p *Peer) acked(seg *craft.Segment) []reply {
	ack := seg.Ack
	if !p.sndUna.LessThan(ack) || p.sndNxt.LessThan(ack) {
		return nil
	}
	p.sndUna = ack
	var out []reply
	if p.state == tcpstate.SynReceived && ack == p.ISN.Add(1) {
		p.state = tcpstate.Established
		if len(p.Greeting) > 0 {
			out = append(out, p.talk(seg, p.Greeting)...)
		}
	}
	if p.finSent && ack == p.finSeq.Add(1) {
		switch p.state {
		case tcpstate.FinWait1:
			p.state = tcpstate.FinWait2
		case tcpstate.Closing:
			p.state = tcpstate.TimeWait
		case tcpstate.LastAck:
			p.state = tcpstate.Closed
		}
	}
	return out
}

// receive processes data and FIN: in order they are taken (with what was
// held after them), beyond RCV.NXT they are held, before it they are old.
// Anything that occupies sequence space is acknowledged.
func (p *Peer) receive(seg *craft.Segment) []reply {
	fin := seg.Flags.Has(craft.FIN)
	if len(seg.Payload) == 0 && !fin {
		return nil
	}
	if p.rcvNxt.LessThan(seg.Seq) {
		p.ooo[seg.Seq] = heldSeg{data: slices.Clone(seg.Payload), fin: fin}
		return []reply{{seg: p.ack(seg)}}
	}
	var fresh []byte
	if end := seg.Seq.Add(uint32(len(seg.Payload))); p.rcvNxt.LessThan(end) {
		fresh = slices.Clone(seg.Payload[uint32(p.rcvNxt-seg.Seq):])
	} else if !(fin && end == p.rcvNxt) || p.finRcvd {
		return []reply{{seg: p.ack(seg)}} // old: a duplicate, acknowledged again
	}
	p.rcvNxt = p.rcvNxt.Add(uint32(len(fresh)))
	for {
		h, ok := p.ooo[p.rcvNxt]
		if !ok {
			break
		}
		delete(p.ooo, p.rcvNxt)
		fresh = append(fresh, h.data...)
		p.rcvNxt = p.rcvNxt.Add(uint32(len(h.data)))
		fin = fin || h.fin
	}
	p.data = append(p.data, fresh...)
	var out []reply
	if !fin {
		if p.Echo && len(fresh) > 0 && !p.finSent {
			return p.talk(seg, fresh)
		}
		return []reply{{seg: p.ack(seg)}}
	}
	if p.Echo && len(fresh) > 0 && !p.finSent {
		out = p.talk(seg, fresh)
	}
	crossing := p.CrossFIN && !p.finSent && p.state == tcpstate.Established
	if crossing {
		// Our FIN and the peer's cross on the wire: its FIN left before ours
		// arrived, so it does not acknowledge ours.
		fin := p.segment(seg, craft.FIN|craft.ACK, p.sndNxt, p.rcvNxt, nil)
		p.sendFIN()
		out = append(out, reply{seg: fin})
	}
	p.rcvNxt, p.finRcvd = p.rcvNxt.Add(1), true
	switch p.state {
	case tcpstate.Established:
		p.state = tcpstate.CloseWait
	case tcpstate.FinWait1:
		p.state = tcpstate.Closing
	case tcpstate.FinWait2:
		p.state = tcpstate.TimeWait
	}
	if p.state != tcpstate.CloseWait {
		return append(out, reply{seg: p.ack(seg)})
	}
	switch {
	case p.NeverClose:
		return append(out, reply{seg: p.ack(seg)})
	case p.AfterFIN == nil && p.FINDelay == 0:
		fin := p.segment(seg, craft.FIN|craft.ACK, p.sndNxt, p.rcvNxt, nil)
		p.sendFIN()
		return append(out, reply{seg: fin})
	}
	out = append(out, reply{seg: p.ack(seg)})
	if len(p.AfterFIN) > 0 {
		out = append(out, reply{seg: p.data1(seg, p.AfterFIN)})
	}
	fin2 := p.segment(seg, craft.FIN|craft.ACK, p.sndNxt, p.rcvNxt, nil)
	p.sendFIN()
	return append(out, reply{seg: fin2, delay: p.FINDelay})
}

// talk sends data of the peer's own (reordered if asked), then its FIN if it
// closes first.
func (p *Peer) talk(to *craft.Segment, data []byte) []reply {
	var out []reply
	if p.Reorder && len(data) > 1 {
		half := len(data) / 2
		first := p.segment(to, craft.PSH|craft.ACK, p.sndNxt, p.rcvNxt, data[:half])
		second := p.segment(to, craft.PSH|craft.ACK, p.sndNxt.Add(uint32(half)), p.rcvNxt, data[half:])
		p.sndNxt = p.sndNxt.Add(uint32(len(data)))
		out = []reply{{seg: second}, {seg: first}}
	} else {
		out = []reply{{seg: p.data1(to, data)}}
	}
	p.talked = true
	if p.CloseFirst && !p.finSent {
		fin := p.segment(to, craft.FIN|craft.ACK, p.sndNxt, p.rcvNxt, nil)
		p.sendFIN()
		out = append(out, reply{seg: fin})
	}
	return out
}

// data1 is one data segment at SND.NXT.
func (p *Peer) data1(to *craft.Segment, data []byte) craft.Segment {
	s := p.segment(to, craft.PSH|craft.ACK, p.sndNxt, p.rcvNxt, slices.Clone(data))
	p.sndNxt = p.sndNxt.Add(uint32(len(data)))
	return s
}

// sendFIN notes the FIN the peer just built at SND.NXT.
func (p *Peer) sendFIN() {
	p.finSent, p.finSeq = true, p.sndNxt
	p.sndNxt = p.sndNxt.Add(1)
	switch p.state {
	case tcpstate.Established:
		p.state = tcpstate.FinWait1
	case tcpstate.CloseWait:
		p.state = tcpstate.LastAck
	}
}

func (p *Peer) ack(to *craft.Segment) craft.Segment {
	return p.segment(to, craft.ACK, p.sndNxt, p.rcvNxt, nil)
}

func (p *Peer) synAck(to *craft.Segment) craft.Segment {
	s := p.segment(to, craft.SYN|craft.ACK, p.ISN, to.Seq.Add(1), nil)
	if p.MSS != 0 {
		s.Options = craft.Options{craft.MSS(p.MSS)}
	}
	return s
}

// closedAnswer answers as a port without a connection (RFC 9293 §3.10.7.1).
func (p *Peer) closedAnswer(seg *craft.Segment) []reply {
	switch {
	case seg.Flags.Has(craft.RST):
		return nil
	case seg.Flags.Has(craft.ACK):
		return []reply{{seg: p.segment(seg, craft.RST, seg.Ack, 0, nil)}}
	}
	return []reply{{seg: p.segment(seg, craft.RST|craft.ACK, 0, seg.End(), nil)}}
}

func (p *Peer) segment(to *craft.Segment, flags craft.Flags, seq, ack craft.Seq, data []byte) craft.Segment {
	win := p.Window
	if flags.Has(craft.RST) && !flags.Has(craft.ACK) {
		win = 0
	}
	return craft.Segment{
		Src: to.Dst, Dst: to.Src, Seq: seq, Ack: ack, Flags: flags, Window: win, TTL: p.TTL, ID: 0x2000,
		Payload: data,
	}
}

// push queues a copy of pkt, to be read at due, after every frame due no
// later. The caller holds p.mu.
func (p *Peer) push(pkt []byte, due time.Time, outgoing bool) {
	p.order++
	p.insert(frame{f: capture.Frame{Data: slices.Clone(pkt), Time: due, Outgoing: outgoing}, order: p.order})
}

// insert queues fr in time order, after every frame due no later. The
// caller holds p.mu.
func (p *Peer) insert(fr frame) {
	i, _ := slices.BinarySearchFunc(p.queue, fr, func(a, b frame) int {
		if c := a.f.Time.Compare(b.f.Time); c != 0 {
			return c
		}
		return int(int64(a.order) - int64(b.order))
	})
	p.queue = slices.Insert(p.queue, i, fr)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Read implements [capture.Source]: it returns the next frame once its time
// has come, and blocks until then.
func (p *Peer) Read(f *capture.Frame) error {
	for {
		p.mu.Lock()
		p.init()
		if p.closed {
			p.mu.Unlock()
			return capture.ErrClosed
		}
		var wait <-chan time.Time
		var timer *time.Timer
		if len(p.queue) > 0 {
			d := time.Until(p.queue[0].f.Time)
			if d <= 0 {
				fr := p.queue[0]
				p.queue = slices.Delete(p.queue, 0, 1)
				if fr.repeat && !p.leftSynRcvd.IsZero() && !fr.sentAt.Before(p.leftSynRcvd) {
					p.mu.Unlock()
					continue // the peer had our ACK (or was reset) before this repeat was due to leave
				}
				*f = fr.f
				p.mu.Unlock()
				return nil
			}
			timer = time.NewTimer(d)
			wait = timer.C
		}
		wake, done := p.wake, p.done
		p.mu.Unlock()
		select {
		case <-wake:
		case <-done:
		case <-wait:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// Close implements [capture.Source] and [capture.Sender]; it is idempotent.
func (p *Peer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	return nil
}

// State is the peer's connection state.
func (p *Peer) State() tcpstate.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	return p.state
}

// Data is what the peer received from us, in order.
func (p *Peer) Data() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.data)
}

// Reset reports whether an acceptable RST from us aborted the connection.
func (p *Peer) Reset() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resetRcv
}

// Records returns every segment sent to the peer, in order, lost ones
// included.
func (p *Peer) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Record, len(p.records))
	for i, r := range p.records {
		out[i] = Record{Seg: r.Seg.Clone(), Time: r.Time, Lost: r.Lost}
	}
	return out
}
