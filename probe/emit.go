package probe

import (
	"fmt"
	"slices"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
)

// One clock for events: a received segment is timed by the kernel when it
// crossed the capture point, and so is a sent one — its step is held until
// its own copy leaving the interface is read from the same packet socket,
// and then carries that copy's kernel timestamp. Both directions come out
// of one socket in the order they crossed it, so the steps are in time
// order. A sent segment whose copy is not seen (a capture that misses it)
// is timed by our clock, never earlier than the step before it.

// copyWait is how long a sent step waits for its copy on the wire.
const copyWait = 20 * time.Millisecond

type heldStep struct {
	ev      event.Event // a Step, or a Warning
	seg     craft.Segment
	at      time.Time // our clock when sent or noted; the copy's kernel time once seen
	waiting bool      // a sent step waiting for its copy
	rep     *capture.Reply
	// over is the last received step that went out ahead of this one: it
	// reached our interface before this segment left, but was read after
	// this segment was decided (see overtaken).
	over *event.Step
}

// emitter puts the session's events into the stream in time order. Sent
// steps wait for their copies; notes and warnings wait behind the sent
// steps before them (they happened after), so the story keeps its order.
// Received steps go out at their kernel time at once: a sent step still
// waiting left the interface after them.
type emitter struct {
	s        *Session
	held     []heldStep
	lastMs   float64
	sent     int // segments sent
	received int // segments received from the peer
	steps    int // steps numbered so far
}

// sentStep holds the step of a segment we just sent until its wire copy.
func (e *emitter) sentStep(st event.Step, seg craft.Segment, at time.Time) {
	e.sent++
	e.held = append(e.held, heldStep{ev: st, seg: seg, at: at, waiting: true})
}

// later queues a note or warning behind what is held, or emits it.
func (e *emitter) later(ev event.Event, at time.Time) {
	e.held = append(e.held, heldStep{ev: ev, at: at})
	e.pop()
}

// copySeen pairs an outgoing frame with the held step it belongs to,
// emitting it with the frame's kernel time (and, before it, any older sent
// step whose copy was missed). It reports whether the frame was one of ours.
func (e *emitter) copySeen(rep capture.Reply) bool {
	seg := &rep.Packet.Seg
	for i := range e.held {
		h := &e.held[i]
		if h.waiting && h.seg.Seq == seg.Seq && h.seg.Ack == seg.Ack && isCopy(&h.seg, seg) {
			for j := 0; j < i; j++ {
				e.held[j].waiting = false // the socket is in order: their copies were missed
			}
			r := rep
			h.waiting, h.at, h.rep = false, rep.Time, &r // the frame goes to -w with its step
			e.pop()
			return true
		}
	}
	return false
}

// isCopy tells whether a frame leaving our interface with sent's sequence
// number is sent's copy: the whole segment, or the first piece of a large
// one (GSO) the kernel cut before the capture point (a device without
// segmentation offload), which carries PSH and FIN only on the last piece.
func isCopy(sent, frame *craft.Segment) bool {
	if len(frame.Payload) == len(sent.Payload) {
		return frame.Flags == sent.Flags
	}
	const lastOnly = craft.PSH | craft.FIN
	return len(frame.Payload) > 0 && len(frame.Payload) < len(sent.Payload) && frame.Flags == sent.Flags&^lastOnly
}

// pop emits from the head what no longer waits.
func (e *emitter) pop() {
	for len(e.held) > 0 && !e.held[0].waiting {
		h := e.held[0]
		e.held = e.held[1:]
		if st, ok := h.ev.(event.Step); ok && h.over != nil {
			h.ev = overtaken(st, h.over)
		}
		e.out(h.ev, h.at, h.rep)
	}
}

// before releases sent steps sent well before t (their copies evidently
// missed), ahead of an event at t.
func (e *emitter) before(t time.Time) {
	for i := range e.held {
		if e.held[i].waiting && e.held[i].at.Add(copyWait/4).Before(t) {
			for j := 0; j <= i; j++ {
				e.held[j].waiting = false
			}
		}
	}
	e.pop()
}

// due is when the oldest held step stops waiting for its copy.
func (e *emitter) due() time.Time {
	if len(e.held) == 0 {
		return time.Time{}
	}
	return e.held[0].at.Add(copyWait)
}

// expire releases the held steps whose copies did not come in time.
func (e *emitter) expire(now time.Time) {
	for i := range e.held {
		if e.held[i].waiting && !now.Before(e.held[i].at.Add(copyWait)) {
			for j := 0; j <= i; j++ {
				e.held[j].waiting = false
			}
		}
	}
	e.pop()
}

func (e *emitter) flushAll() {
	for i := range e.held {
		e.held[i].waiting = false
	}
	e.pop()
}

// now emits a received step at t (its kernel time) at once. The sent steps
// still held left the interface after it, though they were decided before
// it was read: they are told after it (the wire's order), with the states
// it left (see overtaken).
func (e *emitter) now(st *event.Step, t time.Time, rep *capture.Reply) {
	e.before(t)
	e.out(*st, t, rep)
	for i := range e.held {
		if _, ok := e.held[i].ev.(event.Step); ok && e.held[i].waiting {
			over := *st
			over.N, over.TimeMs = e.steps, e.lastMs
			e.held[i].over = &over
		}
	}
}

// overtaken is a sent step as told after a received one that reached our
// interface before the sent segment left but was read after the segment was
// decided (e.g. the peer's FIN arriving while our ACK of its data was on its
// way out). The states beside a step are those after it; the received step's
// already include this one's (it was handled later), so this one shows the
// same, and says why its own changes are told after.
func overtaken(st event.Step, over *event.Step) event.Step {
	st.Explain = append(slices.Clone(st.Explain), fmt.Sprintf("this segment was decided before step %d was read, though step %d reached our interface first (%.3f ms) and this one left after it: the segments crossed inside our host; the states shown are after both",
		over.N, over.N, over.TimeMs))
	st.Local, st.Remote = over.Local, over.Remote
	return st
}

func (e *emitter) out(ev event.Event, t time.Time, rep *capture.Reply) {
	s := e.s
	st, ok := ev.(event.Step)
	if !ok {
		s.sink.Emit(ev)
		return
	}
	if !t.IsZero() {
		st.TimeMs = ms(t.Sub(s.start))
	}
	if st.TimeMs < e.lastMs {
		st.TimeMs = e.lastMs
	}
	e.lastMs = st.TimeMs
	if st.Direction != "note" {
		e.steps++
		st.N = e.steps
	}
	s.sink.Emit(st)
	if rep != nil && s.env.Record != nil {
		s.env.Record(*rep, &st)
	}
}

// inbox keeps the peer's segments for `expect` and for rst's Collect: what
// arrived since a mark, bounded.
type inbox struct {
	segs []craft.Segment
	base int // index of segs[0] in the whole sequence of arrivals
	next int // the next arrival `expect` examines
}

const inboxMax = 512

func (b *inbox) add(seg *craft.Segment) {
	b.segs = append(b.segs, seg.Clone())
	if len(b.segs) > inboxMax {
		drop := len(b.segs) - inboxMax
		b.segs = b.segs[drop:]
		b.base += drop
	}
}

// mark is the position of the next arrival.
func (b *inbox) mark() int { return b.base + len(b.segs) }

// since returns the arrivals from mark m on.
func (b *inbox) since(m int) []craft.Segment {
	i := max(m-b.base, 0)
	if i >= len(b.segs) {
		return nil
	}
	return b.segs[i:]
}

// rateLimit allows burst events per period (our challenge ACKs and ACKs to
// unacceptable segments: RFC 5961 §7 asks for a limit, so a flood of forged
// segments is not answered one for one).
type rateLimit struct {
	per   time.Duration
	burst int
	start time.Time
	n     int
}

func (r *rateLimit) allow(now time.Time) bool {
	if now.Sub(r.start) >= r.per {
		r.start, r.n = now, 0
	}
	if r.n >= r.burst {
		return false
	}
	r.n++
	return true
}
