package capture

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"tcpshake/craft"
	"tcpshake/probe/tcpstate"
)

// A Reply is a packet matched to a probe or delivered to a stream.
type Reply struct {
	// Packet is a deep copy, safe to keep.
	Packet craft.Packet
	// Time is the kernel timestamp of the packet.
	Time time.Time
	// Outgoing is true for a packet we (or our kernel) sent; only streams see them.
	Outgoing bool
	// Sent is the kernel timestamp of the probe this reply answers, when the
	// probe was seen leaving the interface; zero otherwise.
	Sent time.Time
	// Probe is the probe answered; nil for stream packets.
	Probe *Probe
}

// A Probe is one segment waiting for its answer. Register it with
// [Matcher.Expect] before sending it: a fast reply can beat the registration.
type Probe struct {
	Sent  craft.Segment
	key   Key
	wire  atomic.Int64 // unix nanoseconds when seen leaving, 0 if not yet
	reply chan<- Reply
}

// WireSent is when the probe was seen leaving the interface, or zero.
func (p *Probe) WireSent() time.Time {
	if ns := p.wire.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// A Stream receives every packet of one conversation, both directions, and
// ICMP errors that quote it. A session (handshake, shell) runs its own TCP
// rules on them.
type Stream struct {
	key     Key
	c       chan Reply
	dropped atomic.Uint64
	m       *Matcher
}

// C delivers the conversation's packets in the order they crossed the wire.
func (s *Stream) C() <-chan Reply { return s.c }

// Dropped counts packets lost because the stream's buffer was full.
func (s *Stream) Dropped() uint64 { return s.dropped.Load() }

// Dead is closed when the matcher stopped reading (its source failed or was
// closed): nothing more will arrive, and Err says why.
func (s *Stream) Dead() <-chan struct{} { return s.m.Dead() }

// Err is why the matcher stopped reading, once Dead is closed.
func (s *Stream) Err() error { return s.m.Err() }

// A Matcher reads a [Source], parses every packet once and hands it to the
// probe or stream it belongs to. Packets nobody asked for are counted by
// reason in Ignored.
type Matcher struct {
	mu      sync.Mutex
	probes  map[Key][]*Probe // several per key when their sequence numbers differ (rounds of -c)
	streams map[Key]*Stream
	ignored map[string]uint64
	parser  *craft.Parser
	pkt     craft.Packet
	tap     func(*Frame)
	tapKeys map[Key]bool
	echoes  map[echoKey]*echoWait

	dead    chan struct{} // closed when Run returns
	deadErr error
}

// echoKey names one ICMP echo exchange: the peer, the identifier and the
// sequence number.
type echoKey struct {
	peer    netip.Addr
	id, seq uint16
}

type echoWait struct {
	c    chan<- Reply
	wire time.Time // our request seen leaving
}

// ExpectEcho registers an ICMP echo request to peer (before it is sent);
// the reply is delivered on c with Sent set to the request's wire time.
func (m *Matcher) ExpectEcho(peer netip.Addr, id, seq uint16, c chan<- Reply) {
	m.mu.Lock()
	if m.echoes == nil {
		m.echoes = map[echoKey]*echoWait{}
	}
	m.echoes[echoKey{peer.Unmap(), id, seq}] = &echoWait{c: c}
	m.mu.Unlock()
}

// ForgetEcho removes an echo registration.
func (m *Matcher) ForgetEcho(peer netip.Addr, id, seq uint16) {
	m.mu.Lock()
	delete(m.echoes, echoKey{peer.Unmap(), id, seq})
	m.mu.Unlock()
}

func (m *Matcher) dispatchEcho(f *Frame) {
	e := &m.pkt.Echo
	peer := e.Src
	if !e.Reply {
		peer = e.Dst
	}
	k := echoKey{peer.Unmap(), e.ID, e.Seq}
	w := m.echoes[k]
	switch {
	case w == nil:
	case !e.Reply && f.Outgoing:
		if w.wire.IsZero() {
			w.wire = f.Time
		}
	case e.Reply && !f.Outgoing:
		delete(m.echoes, k)
		select {
		case w.c <- Reply{Packet: m.pkt, Time: f.Time, Sent: w.wire}:
		default:
			m.ignored["overflow"]++
		}
	}
}

// SetTap makes the matcher hand every frame of a conversation that a probe
// or stream is (or was) registered for to tap — both directions, and ICMP
// errors that quote it — before dispatching it. It is how -w records what
// crossed the wire. Set it before registering anything.
func (m *Matcher) SetTap(tap func(*Frame)) {
	m.mu.Lock()
	m.tap, m.tapKeys = tap, map[Key]bool{}
	m.mu.Unlock()
}

// NewMatcher returns an empty matcher.
func NewMatcher() *Matcher {
	return &Matcher{
		probes:  map[Key][]*Probe{},
		streams: map[Key]*Stream{},
		ignored: map[string]uint64{},
		parser:  craft.NewParser(),
		dead:    make(chan struct{}),
	}
}

// ErrStopped is the error of a matcher whose source was closed while
// conversations still waited on it.
var ErrStopped = errors.New("capture: the packet capture stopped")

// Dead is closed when Run has returned: a waiter that selects on it learns
// that nothing more will arrive instead of taking the silence for the
// peer's.
func (m *Matcher) Dead() <-chan struct{} { return m.dead }

// Err is why Run returned (ErrStopped when its source was just closed),
// once Dead is closed.
func (m *Matcher) Err() error {
	select {
	case <-m.dead:
		return m.deadErr
	default:
		return nil
	}
}

// Expect registers seg (as it will be sent: Src is ours) and returns its
// probe. The first acceptable answer is sent on c, which must have room for
// one reply per probe registered on it: the matcher never blocks. Several
// probes may wait on one conversation when their sequence numbers differ
// (an answer names its probe by its ack, an ICMP error by the quoted seq).
func (m *Matcher) Expect(seg craft.Segment, c chan<- Reply) (*Probe, error) {
	k := Key{Local: seg.Src, Remote: seg.Dst}
	p := &Probe{Sent: seg, key: k, reply: c}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, q := range m.probes[k] {
		if q.Sent.Seq == seg.Seq {
			return nil, fmt.Errorf("capture: a probe from %v to %v with seq %d is already waiting", k.Local, k.Remote, uint32(seg.Seq))
		}
	}
	m.probes[k] = append(m.probes[k], p)
	if m.tap != nil {
		m.tapKeys[k] = true
	}
	return p, nil
}

// Forget removes a probe (answered or timed out).
func (m *Matcher) Forget(p *Probe) {
	m.mu.Lock()
	m.unregister(p)
	m.mu.Unlock()
}

// unregister removes p from its key's probes; m.mu is held.
func (m *Matcher) unregister(p *Probe) {
	ps := m.probes[p.key]
	for i, q := range ps {
		if q == p {
			ps = append(ps[:i:i], ps[i+1:]...)
			break
		}
	}
	if len(ps) == 0 {
		delete(m.probes, p.key)
		return
	}
	m.probes[p.key] = ps
}

// Stream registers a conversation and returns its stream; buf is the
// channel's capacity.
func (m *Matcher) Stream(k Key, buf int) (*Stream, error) {
	return m.StreamOn(k, make(chan Reply, buf))
}

// StreamOn is Stream with a buffer the caller made beforehand (a listener
// makes the next connection's while it waits for its SYN: a buffer of
// packets takes tens of microseconds to allocate). c must be empty and
// used by no other stream.
func (m *Matcher) StreamOn(k Key, c chan Reply) (*Stream, error) {
	s := &Stream{key: k, c: c, m: m}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, busy := m.streams[k]; busy {
		return nil, fmt.Errorf("capture: a stream from %v to %v is already open", k.Local, k.Remote)
	}
	m.streams[k] = s
	if m.tap != nil {
		m.tapKeys[k] = true
	}
	return s, nil
}

// CloseStream unregisters s.
func (m *Matcher) CloseStream(s *Stream) {
	m.mu.Lock()
	if m.streams[s.key] == s {
		delete(m.streams, s.key)
	}
	m.mu.Unlock()
}

// Ignored returns how many packets matched a registered conversation's
// addresses but were not accepted, by reason (e.g. "bad-ack").
func (m *Matcher) Ignored() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.ignored))
	for k, v := range m.ignored {
		out[k] = v
	}
	return out
}

// Run reads src until ctx is done or src fails, dispatching every packet.
// Cancelling ctx closes src, which unblocks the read.
//
// When it returns, Dead is closed, so every stream's waiter learns that the
// reader is gone.
func (m *Matcher) Run(ctx context.Context, src Source) (err error) {
	stop := context.AfterFunc(ctx, func() { src.Close() })
	defer stop()
	defer func() {
		m.deadErr = err
		if err == nil {
			m.deadErr = ErrStopped
		}
		close(m.dead)
	}()
	var f Frame
	for {
		if err := src.Read(&f); err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return nil
			}
			return fmt.Errorf("capture: read: %w", err)
		}
		m.Dispatch(&f)
	}
}

// Dispatch parses one frame and delivers it. It is exported for tests and
// for recorded sources driven by hand.
func (m *Matcher) Dispatch(f *Frame) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.probes) == 0 && len(m.streams) == 0 && len(m.tapKeys) == 0 && len(m.echoes) == 0 {
		return
	}
	if err := m.parser.Parse(f.Data, &m.pkt); err != nil {
		return
	}
	if m.tap != nil {
		var k Key
		switch m.pkt.Kind {
		case craft.KindTCP:
			k = Key{Local: m.pkt.Seg.Src, Remote: m.pkt.Seg.Dst}
		case craft.KindICMP:
			k = Key{Local: m.pkt.ICMP.Quoted.Src, Remote: m.pkt.ICMP.Quoted.Dst}
		}
		if m.tapKeys[k] || m.tapKeys[k.Reverse()] {
			m.tap(f)
		}
	}
	switch m.pkt.Kind {
	case craft.KindTCP:
		m.dispatchTCP(f)
	case craft.KindICMP:
		m.dispatchICMP(f)
	case craft.KindEcho:
		m.dispatchEcho(f)
	}
}

func (m *Matcher) dispatchTCP(f *Frame) {
	seg := &m.pkt.Seg
	fwd := Key{Local: seg.Src, Remote: seg.Dst} // as if we sent it
	rev := fwd.Reverse()                        // as if the peer sent it

	if f.Outgoing {
		if s := m.streams[fwd]; s != nil {
			m.deliver(s, f, true)
			return
		}
		for _, p := range m.probes[fwd] {
			if seg.Seq == p.Sent.Seq && seg.Flags == p.Sent.Flags {
				p.wire.CompareAndSwap(0, f.Time.UnixNano())
			}
		}
		// On loopback the peer's own segments show up as outgoing too;
		// their incoming copy follows and is the one that counts.
		return
	}
	if s := m.streams[rev]; s != nil {
		m.deliver(s, f, false)
		return
	}
	ps := m.probes[rev]
	if len(ps) == 0 {
		return // our own segment looped back, or someone else's
	}
	var p *Probe
	why := ""
	for _, q := range ps {
		ok, w := tcpstate.Answers(&q.Sent, seg)
		if ok {
			p = q
			break
		}
		why = w
	}
	if p == nil {
		m.ignored[why]++
		return
	}
	m.unregister(p)
	m.answer(p, Reply{Packet: cloneTCP(&m.pkt), Time: f.Time, Sent: p.WireSent(), Probe: p})
}

func (m *Matcher) dispatchICMP(f *Frame) {
	if f.Outgoing {
		return
	}
	q := &m.pkt.ICMP.Quoted
	k := Key{Local: q.Src, Remote: q.Dst}
	if s := m.streams[k]; s != nil {
		m.deliver(s, f, false)
		return
	}
	ps := m.probes[k]
	if len(ps) == 0 {
		return
	}
	var p *Probe
	for _, c := range ps {
		if q.Seq == c.Sent.Seq {
			p = c
		}
	}
	if p == nil {
		m.ignored["icmp-bad-seq"]++
		return
	}
	m.unregister(p)
	c := m.pkt
	c.ICMP.Quoted = q.Clone()
	m.answer(p, Reply{Packet: c, Time: f.Time, Sent: p.WireSent(), Probe: p})
}

func (m *Matcher) answer(p *Probe, r Reply) {
	select {
	case p.reply <- r:
	default:
		m.ignored["overflow"]++
	}
}

func (m *Matcher) deliver(s *Stream, f *Frame, out bool) {
	c := m.pkt
	if c.Kind == craft.KindTCP {
		c = cloneTCP(&m.pkt)
	} else {
		c.ICMP.Quoted = c.ICMP.Quoted.Clone()
	}
	select {
	case s.c <- Reply{Packet: c, Time: f.Time, Outgoing: out}:
	default:
		s.dropped.Add(1)
	}
}

func cloneTCP(p *craft.Packet) craft.Packet {
	return craft.Packet{Kind: craft.KindTCP, Seg: p.Seg.Clone()}
}
