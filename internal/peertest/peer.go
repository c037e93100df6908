package peertest

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"tcpshake/capture"
	"tcpshake/craft"
)

// Answer is how a port answers.
type Answer int

// The ways a scripted port answers. The zero value is Closed, as most ports
// of a real host are.
const (
	// Closed: no listener; the segment is answered by the rules of RFC 9293
	// §3.10.7.1 (a SYN gets RST,ACK with seq 0 and ack ISN+1).
	Closed Answer = iota
	// Open: a listener; a SYN gets a SYN-ACK (ack ISN+1, seq Peer.ISN, an MSS
	// option, Peer.Window, Peer.TTL), other segments follow the LISTEN rules
	// of RFC 9293 §3.10.7.2 (an ACK gets <SEQ=SEG.ACK><CTL=RST>, the rest is
	// dropped).
	Open
	// Silent: everything is dropped, as by a firewall.
	Silent
	// PortUnreachable: every segment gets an ICMP port unreachable (ICMPv6
	// destination unreachable, code 4) quoting it.
	PortUnreachable
	// Prohibited: every segment gets an ICMP communication administratively
	// prohibited (type 3 code 13; ICMPv6 destination unreachable, code 1)
	// quoting it.
	Prohibited
)

// String names the answer.
func (a Answer) String() string {
	switch a {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case Silent:
		return "silent"
	case PortUnreachable:
		return "port-unreachable"
	case Prohibited:
		return "prohibited"
	}
	return fmt.Sprintf("answer(%d)", int(a))
}

// Script is how the peer answers segments sent to one port.
type Script struct {
	Answer Answer
	// RTT is added to the time a segment was sent to give the time of its
	// answer, so measured round trips are exactly this.
	RTT time.Duration
	// DropFirst drops the first n segments to the port without answering, to
	// exercise retransmission.
	DropFirst int
	// BadAckFirst sends, before each TCP answer, a copy whose ack (or, for a
	// reset without ACK, whose seq) is one too far: an answer the matcher
	// must ignore.
	BadAckFirst bool
	// Duplicate sends every answer twice.
	Duplicate bool
	// From is the sender of ICMP errors; invalid means the probed host.
	From netip.Addr
}

// A Record is one segment the peer received from us.
type Record struct {
	Seg  craft.Segment
	Time time.Time // the peer's clock when it arrived
}

// DefaultISN is the peer's initial sequence number in its SYN-ACKs.
const DefaultISN craft.Seq = 0x50000000

// Peer is a scripted remote end. It implements [capture.Sender] (our side
// sends to it) and [capture.Source] (our side captures its answers, and the
// outgoing copy of what we sent, as a packet socket would show them). Set the
// exported fields before the first Send; use [New] for the defaults.
//
// Frames are delivered in the order they were produced: the answers to one
// send come before anything produced by a later send, whatever their RTTs.
type Peer struct {
	// Scripts says how each port answers; Default is for the others.
	Scripts map[uint16]Script
	Default Script
	// Now is the peer's clock: the kernel timestamps of frames. New sets a
	// fixed clock at Epoch.
	Now func() time.Time
	// ISN, Window, TTL and MSS are what the peer puts in its SYN-ACKs
	// (Window and TTL also in its resets).
	ISN    craft.Seq
	Window uint16
	TTL    uint8
	MSS    uint16
	// Loopback delivers every packet twice, as a capture on lo sees it: an
	// outgoing copy, then an incoming one.
	Loopback bool
	// HideOutgoing leaves out the outgoing copies of our segments, as if the
	// capture missed them, so RTTs fall back to the sender's clock.
	HideOutgoing bool
	// Respond, when set, is asked first about every TCP segment we send; a
	// non-nil result (even empty) is the answer: whole IP packets, each
	// delivered at the send time plus the port script's RTT. A nil result
	// falls through to the port scripts.
	Respond func(seg craft.Segment) [][]byte

	mu       sync.Mutex
	queue    []capture.Frame
	closed   bool
	wake     chan struct{}
	done     chan struct{}
	got      []Record
	perPort  map[uint16]int
	halfOpen map[capture.Key]craft.Seq
}

// Epoch is the fixed time of the default clock.
func Epoch() time.Time { return time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC) }

// New returns a peer answering per scripts (other ports are closed) with
// ISN DefaultISN, window 65535, TTL 64, MSS 1460, and a clock fixed at Epoch.
func New(scripts map[uint16]Script) *Peer {
	return &Peer{
		Scripts: scripts,
		Now:     Epoch,
		ISN:     DefaultISN,
		Window:  65535,
		TTL:     64,
		MSS:     1460,
	}
}

func (p *Peer) init() {
	if p.wake == nil {
		p.wake = make(chan struct{}, 1)
		p.done = make(chan struct{})
		p.perPort = map[uint16]int{}
		p.halfOpen = map[capture.Key]craft.Seq{}
	}
}

func (p *Peer) now() time.Time {
	if p.Now == nil {
		return Epoch()
	}
	return p.Now()
}

func (p *Peer) script(port uint16) Script {
	if s, ok := p.Scripts[port]; ok {
		return s
	}
	return p.Default
}

// errClosed is returned by Send after Close.
var errClosed = errors.New("peertest: peer closed")

// Send implements [capture.Sender]: it records our segment, queues its
// outgoing copy and the scripted answers.
func (p *Peer) Send(pkt []byte, dst netip.Addr) error {
	parsed, err := craft.Parse(pkt)
	if err != nil {
		return fmt.Errorf("peertest: parse sent packet: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	if p.closed {
		return errClosed
	}
	if parsed.Kind == craft.KindTCP && parsed.Seg.Dst.Addr() != dst {
		return fmt.Errorf("peertest: packet to %v sent towards %v", parsed.Seg.Dst.Addr(), dst)
	}
	at := p.now()
	switch {
	case p.HideOutgoing:
	case p.Loopback: // lo shows our packet leaving and arriving
		p.push(pkt, at, false)
	default:
		p.push(pkt, at, true)
	}
	if parsed.Kind != craft.KindTCP {
		return nil
	}
	seg := parsed.Seg
	p.got = append(p.got, Record{Seg: seg, Time: at})
	sc := p.script(seg.Dst.Port())
	var replies [][]byte
	if p.Respond != nil {
		replies = p.Respond(seg)
	}
	if replies == nil {
		n := p.perPort[seg.Dst.Port()]
		p.perPort[seg.Dst.Port()] = n + 1
		if n < sc.DropFirst {
			return nil
		}
		if replies, err = p.answer(&seg, pkt, sc); err != nil {
			return err
		}
	}
	for _, r := range replies {
		p.push(r, at.Add(sc.RTT), false)
	}
	return nil
}

// answer builds the scripted replies to seg (whose packet is pkt).
func (p *Peer) answer(seg *craft.Segment, pkt []byte, sc Script) ([][]byte, error) {
	var reply craft.Segment
	switch sc.Answer {
	case Silent:
		return nil, nil
	case PortUnreachable, Prohibited:
		b, err := p.icmp(seg, pkt, sc)
		if err != nil {
			return nil, err
		}
		return p.repeat(b, sc.Duplicate), nil
	case Open:
		r, ok := p.listen(seg)
		if !ok {
			return nil, nil
		}
		reply = r
	default:
		r, ok := p.closedPort(seg)
		if !ok {
			return nil, nil
		}
		reply = r
	}
	var out [][]byte
	if sc.BadAckFirst {
		bad := reply
		if bad.Flags.Has(craft.ACK) {
			bad.Ack++
		} else {
			bad.Seq++
		}
		b, err := bad.Marshal()
		if err != nil {
			return nil, fmt.Errorf("peertest: build reply: %w", err)
		}
		out = append(out, b)
	}
	b, err := reply.Marshal()
	if err != nil {
		return nil, fmt.Errorf("peertest: build reply: %w", err)
	}
	return append(out, p.repeat(b, sc.Duplicate)...), nil
}

func (p *Peer) repeat(b []byte, dup bool) [][]byte {
	if dup {
		return [][]byte{b, append([]byte(nil), b...)}
	}
	return [][]byte{b}
}

// listen answers seg as a listening socket (RFC 9293 §3.10.7.2), tracking the
// half-open connections its SYN-ACKs create.
func (p *Peer) listen(seg *craft.Segment) (craft.Segment, bool) {
	k := capture.Key{Local: seg.Src, Remote: seg.Dst}
	if rcvNxt, ok := p.halfOpen[k]; ok && !seg.Flags.Has(craft.SYN) {
		// SYN-RECEIVED: a reset at exactly RCV.NXT (RFC 5961 §3.2) or the
		// ACK of our SYN-ACK ends the half-open state.
		switch {
		case seg.Flags.Has(craft.RST) && seg.Seq == rcvNxt:
			delete(p.halfOpen, k)
		case seg.Flags.Has(craft.ACK) && seg.Ack == p.ISN+1:
			delete(p.halfOpen, k)
		}
		return craft.Segment{}, false
	}
	switch {
	case seg.Flags.Has(craft.RST):
		return craft.Segment{}, false
	case seg.Flags.Has(craft.ACK):
		return p.reply(seg, seg.Ack, 0, craft.RST, 0), true
	case seg.Flags.Has(craft.SYN):
		p.halfOpen[k] = seg.Seq + 1
		r := p.reply(seg, p.ISN, seg.Seq+1, craft.SYN|craft.ACK, p.Window)
		if p.MSS != 0 {
			r.Options = craft.Options{craft.MSS(p.MSS)}
		}
		return r, true
	}
	return craft.Segment{}, false // no SYN, ACK or RST: dropped
}

// closedPort answers seg as a port without a listener (RFC 9293 §3.10.7.1).
func (p *Peer) closedPort(seg *craft.Segment) (craft.Segment, bool) {
	switch {
	case seg.Flags.Has(craft.RST):
		return craft.Segment{}, false
	case seg.Flags.Has(craft.ACK):
		return p.reply(seg, seg.Ack, 0, craft.RST, 0), true
	}
	return p.reply(seg, 0, seg.End(), craft.RST|craft.ACK, 0), true
}

func (p *Peer) reply(to *craft.Segment, seq, ack craft.Seq, flags craft.Flags, win uint16) craft.Segment {
	return craft.Segment{Src: to.Dst, Dst: to.Src, Seq: seq, Ack: ack, Flags: flags, Window: win, TTL: p.TTL, ID: 0x1234}
}

// icmp builds the ICMP or ICMPv6 error for seg, quoting pkt whole.
func (p *Peer) icmp(seg *craft.Segment, pkt []byte, sc Script) ([]byte, error) {
	from := sc.From
	if !from.IsValid() {
		from = seg.Dst.Addr()
	}
	to := seg.Src.Addr()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if seg.IPv6() {
		code := uint8(layers.ICMPv6CodePortUnreachable)
		if sc.Answer == Prohibited {
			code = layers.ICMPv6CodeAdminProhibited
		}
		ip := &layers.IPv6{Version: 6, HopLimit: p.TTL, NextHeader: layers.IPProtocolICMPv6,
			SrcIP: from.AsSlice(), DstIP: to.AsSlice()}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, code)}
		if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, fmt.Errorf("peertest: build icmpv6: %w", err)
		}
		err = gopacket.SerializeLayers(buf, opts, ip, ic, gopacket.Payload(append([]byte{0, 0, 0, 0}, pkt...)))
	} else {
		code := uint8(layers.ICMPv4CodePort)
		if sc.Answer == Prohibited {
			code = layers.ICMPv4CodeCommAdminProhibited
		}
		ip := &layers.IPv4{Version: 4, TTL: p.TTL, Protocol: layers.IPProtocolICMPv4,
			SrcIP: from.AsSlice(), DstIP: to.AsSlice()}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, code)}
		err = gopacket.SerializeLayers(buf, opts, ip, ic, gopacket.Payload(pkt))
	}
	if err != nil {
		return nil, fmt.Errorf("peertest: build icmp: %w", err)
	}
	return buf.Bytes(), nil
}

// push queues a copy of pkt (or two on loopback for incoming packets).
func (p *Peer) push(pkt []byte, at time.Time, outgoing bool) {
	if !outgoing && p.Loopback {
		p.queue = append(p.queue, capture.Frame{Data: append([]byte(nil), pkt...), Time: at, Outgoing: true})
	}
	p.queue = append(p.queue, capture.Frame{Data: append([]byte(nil), pkt...), Time: at, Outgoing: outgoing})
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Inject queues a packet as if the peer (or anyone) sent it at time at.
func (p *Peer) Inject(pkt []byte, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	p.push(pkt, at, false)
}

// Read implements [capture.Source]: it blocks until a frame is queued or the
// peer is closed.
func (p *Peer) Read(f *capture.Frame) error {
	p.mu.Lock()
	p.init()
	wake, done := p.wake, p.done
	p.mu.Unlock()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return capture.ErrClosed
		}
		if len(p.queue) > 0 {
			*f = p.queue[0]
			p.queue[0] = capture.Frame{}
			p.queue = p.queue[1:]
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		select {
		case <-wake:
		case <-done:
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

// Received returns the segments the peer got from us, in order.
func (p *Peer) Received() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Record, len(p.got))
	for i, r := range p.got {
		out[i] = Record{Seg: r.Seg.Clone(), Time: r.Time}
	}
	return out
}

// HalfOpen returns the connections an open port of the peer holds in
// SYN-RECEIVED (keyed from our side), that is SYN-ACKs not yet answered by a
// reset at the right sequence number or by the final ACK.
func (p *Peer) HalfOpen() []capture.Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []capture.Key
	for k := range p.halfOpen {
		out = append(out, k)
	}
	return out
}

// Clock is a settable clock, safe for concurrent use. It stands still until
// Advance or Set moves it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// FixedRand returns a random source that yields vals in turn, over and over
// (one value: always that value), for fixed ISNs, ports and IP IDs. It is
// safe for concurrent use. With no values it always yields 0.
func FixedRand(vals ...uint32) func() uint32 {
	var n atomic.Uint64
	return func() uint32 {
		if len(vals) == 0 {
			return 0
		}
		i := n.Add(1) - 1
		return vals[i%uint64(len(vals))]
	}
}
