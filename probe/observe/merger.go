package observe

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// MergeTiming is how long a [Merger] looks for a step's observation.
type MergeTiming struct {
	// Window: a step at T takes the first reading in [T, T+Window] that
	// agrees or is ahead; with none, the last one in it (differs).
	Window time.Duration
	// Grace: how long after a window closes a reading taken in it may still be
	// on its way from the watcher.
	Grace time.Duration
	// CookieWait: how long our SYN is held, when the peer's kernel shows no
	// socket after it, waiting for the answer that tells a SYN cookie from a
	// SYN that has not arrived.
	CookieWait time.Duration
	// FeedWait: with a watcher fed by the kernel's records (a
	// [KernelWatcher]) that delivers drops, how long a step is held after
	// its time for the records about it (a drop, a change with the
	// kernel's time) to arrive. A drop that came later would go unsaid.
	FeedWait time.Duration
	// ChangeWait is FeedWait without drops: only the kernel's time of a
	// change can come late, and a step decided without it keeps the
	// reading's time, which is true, only less exact.
	ChangeWait time.Duration
}

// DefaultMergeTiming is the timing of [NewMerger]: a 30 ms window, 5 ms
// grace, our SYN held for up to 1 s (the first SYN retransmission), and with
// a kernel-fed watcher every step held 15 ms for the kernel's records when
// drops are asked for, 4 ms when not (the ring buffer is read within 2 ms
// of a record).
func DefaultMergeTiming() MergeTiming {
	return MergeTiming{Window: 30 * time.Millisecond, Grace: 5 * time.Millisecond, CookieWait: time.Second,
		FeedWait: 15 * time.Millisecond, ChangeWait: 4 * time.Millisecond}
}

// fedAt tells whether the kernel's records flowed at t, so that a step at t
// may wait for its record: before the programs were attached (a StartHub
// still loading them beside the connection) there is none to wait for.
func (m *Merger) fedAt(t time.Time) bool {
	if !m.feed {
		return false
	}
	since := m.kw.FeedSince()
	return !since.IsZero() && !since.After(t)
}

// feedWait is how long a step is held for the kernel's records about it.
func (m *Merger) feedWait() time.Duration {
	if m.drops.on || m.timing.ChangeWait == 0 {
		return m.timing.FeedWait
	}
	return m.timing.ChangeWait
}

// readingSkew is how far apart in time a packet's kernel timestamp and a
// sock_diag reading of its effect can appear in the wrong order: on veth the
// peer's socket was seen ESTABLISHED up to 60 µs before the packet socket's
// timestamp of the ACK that made it so.
const readingSkew = 200 * time.Microsecond

// keepReadings is how long readings and decisions are kept after their
// windows closed, for steps that arrive late.
const keepReadings = time.Second

// maxReadings bounds the readings kept, whatever the watcher sends.
const maxReadings = 1 << 14

// A Merger turns a watcher's readings into observations of a session's steps
// without the session waiting. It is an [event.Sink]: the session emits every
// event into it (Emit never blocks: an internal queue), and the merger's
// goroutine forwards them to the next sink in the order they were emitted,
// after annotating each [event.Step] that carries an inferred peer state
// (Remote) with the observed state and an [event.Agreement]. A change of the
// kernel's state with no step near it becomes a step of its own, with
// Direction [event.DirectionObserved], in time order. Each step kicks the
// watcher, so the kernel is read closely right after every segment.
//
// A step at T is held until the first reading in [T, T+Window] that agrees or
// is ahead arrives, or until its window closed (then it takes the window's
// last reading and differs, or is unknown when there was none); events after
// it wait behind it. Steps that may change the peer's state kick the watcher,
// so it reads the kernel right after them. See docs/states.md.
type Merger struct {
	next   event.Sink
	w      Watcher
	start  time.Time
	timing MergeTiming

	mu     sync.Mutex
	inbox  []*item
	latest Reading
	direct bool // the goroutine has ended: Emit forwards at once
	// Emit kicks the watcher for a step that may change the peer's state: the
	// first, one with SYN, FIN or RST, or one whose inferred state differs
	// from the step before. Data in ESTABLISHED does not kick, so a transfer
	// does not keep the watcher reading back to back.
	kicked       bool
	lastInferred tcpstate.State

	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	// Owned by the goroutine.
	queue        []*item
	readings     []Reading // in time order
	prev         Reading   // the last reading without an error
	havePrev     bool
	cands        []cand
	history      []item // decided steps already forwarded
	readingsDone bool
	stopping     bool
	last         *event.Step // the last step forwarded that had states
	floor        time.Time   // the time of the latest reading a forwarded step took
	cookie       *cookieSeen // a SYN cookie seen; the final ACK not yet

	// The peer kernel's count of SYN cookies sent, read before our SYN
	// (SetCookieCounter) and again when the SYN-ACK is decided.
	cookies     func() (int64, error)
	cookieBase  int64
	cookieCount int64 // cookies counted since the base, once decided

	// feed: the watcher is a KernelWatcher (readings with the kernel's
	// times, and drops when watched).
	feed  bool
	kw    KernelWatcher // the watcher, when it is kernel-fed (feed)
	drops dropState
	// note is said once, on the first step forwarded (SetNote).
	note string
}

// An item is one event waiting in the merger's queue.
type item struct {
	ev       event.Event
	st       *event.Step // a step to annotate, nil otherwise
	at       time.Time   // wall clock
	inferred tcpstate.State

	decided   bool
	agr       event.Agreement
	chosen    Reading
	hasChosen bool
	skipped   *item // unknown: the next step came before any reading
	passed    *item // unknown: read before in another state, right after it in its state
	prev      tcpstate.State
	hasPrev   bool    // prev is the inferred state of the step before
	early     bool    // unknown: read still in the state before this step, then already beyond it
	later     Reading // with early: the reading that showed the kernel had moved on
	answered  *item   // unknown: read in the state before, then the peer acknowledged this step
	hold      bool    // our SYN, waiting for the answer (cookie or not)
	peerOpen  bool    // ahead: the note before the peer's SYN, the peer read in SYN-SENT
	holdUntil time.Time

	flush chan struct{} // a Flush marker, no event
}

// A cand is a reading that changed the kernel's state, not yet claimed by a
// step; unclaimed after its window it becomes an observed step.
type cand struct {
	r    Reading
	from Reading // the state before
}

// cookieSeen is a SYN cookie recognised: the ISN of the SYN-ACK.
type cookieSeen struct{ isn uint32 }

// NewMerger starts a merger that forwards to next, reads w and owns it (Close
// closes it); steps' TimeMs count from start.
func NewMerger(next event.Sink, w Watcher, start time.Time) *Merger {
	return NewMergerTiming(next, w, start, DefaultMergeTiming())
}

// NewMergerTiming is [NewMerger] with other timing (tests).
func NewMergerTiming(next event.Sink, w Watcher, start time.Time, timing MergeTiming) *Merger {
	m := &Merger{
		next: next, w: w, start: start.Round(0), timing: timing,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go m.run()
	return m
}

// Emit implements [event.Sink]. It never waits for the kernel: the event is
// queued (or, after Close, forwarded at once).
func (m *Merger) Emit(e event.Event) {
	it := &item{ev: e, at: time.Now().Round(0)}
	if st, ok := e.(event.Step); ok {
		it.at = m.start.Add(time.Duration(st.TimeMs * float64(time.Millisecond)))
		if s, ok := parseState(st.Remote); ok && st.Observed == "" && st.Agreement == "" {
			st.Explain = slices.Clip(st.Explain)
			it.st, it.inferred = &st, s
		}
	}
	m.mu.Lock()
	if it.st != nil {
		it.prev, it.hasPrev = m.lastInferred, m.kicked
		if !m.kicked && isSYN(it.st) {
			// Before our first SYN the peer has only its listener.
			it.prev, it.hasPrev = tcpstate.Listen, true
		}
	}
	if m.direct {
		m.mu.Unlock()
		m.next.Emit(e)
		return
	}
	m.inbox = append(m.inbox, it)
	kick := false
	if it.st != nil {
		kick = !m.kicked || it.inferred != m.lastInferred || strings.ContainsAny(it.st.Flags, "SFR")
		m.kicked, m.lastInferred = true, it.inferred
	}
	m.mu.Unlock()
	if kick {
		m.w.Kick()
	}
	m.signal()
}

// SetCookieCounter gives the merger the peer kernel's SYN-cookie counter
// (Diag.SynCookiesSent). It reads it at once, so call it before our SYN: a
// SYN-ACK sent as a cookie leaves no socket that a reading could miss or
// catch, but the count tells. Without it, cookies are recognised only when a
// reading falls between the SYN-ACK and our ACK.
func (m *Merger) SetCookieCounter(f func() (int64, error)) error {
	n, err := f()
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.cookies, m.cookieBase = f, n
	m.mu.Unlock()
	return nil
}

// SetNote adds text to the explanation of the first step forwarded after it
// (how the peer's kernel is read, said once).
func (m *Merger) SetNote(text string) {
	m.mu.Lock()
	m.note = text
	m.mu.Unlock()
}

// Latest returns the most recent reading (At is zero before the first). It
// never waits.
func (m *Merger) Latest() Reading {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.latest
}

// Flush waits until every event emitted before it has been forwarded (at most
// about Window + Grace, or CookieWait after an unanswered SYN). Not for the
// session's loop: it waits.
func (m *Merger) Flush() {
	it := &item{flush: make(chan struct{})}
	m.mu.Lock()
	if m.direct {
		m.mu.Unlock()
		return
	}
	m.inbox = append(m.inbox, it)
	m.mu.Unlock()
	m.signal()
	select {
	case <-it.flush:
	case <-m.done:
	}
}

// Close forwards everything still queued (each step after its window, an
// unanswered SYN at once), closes the watcher and stops; afterwards Emit
// forwards directly. It is idempotent.
func (m *Merger) Close() error {
	// One fresh reading for what is still queued: a step that did not kick
	// (a note, data in ESTABLISHED) would otherwise wait for the watcher's
	// next heartbeat.
	m.w.Kick()
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done
	return nil
}

func (m *Merger) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Merger) run() {
	defer close(m.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wc := m.w.C()
	var dc <-chan Drop
	if kw, ok := m.w.(KernelWatcher); ok {
		m.feed, m.kw, dc = true, kw, kw.Drops()
		m.drops.on = dc != nil
	}
	stop := m.stop
	for {
		select {
		case <-m.wake:
		case d, ok := <-dc:
			if !ok {
				dc = nil
			} else {
				m.drops.add(d)
			}
		case r, ok := <-wc:
			if !ok {
				wc, m.readingsDone = nil, true
			} else {
				m.addReading(r)
			}
		case <-timer.C:
		case <-stop:
			stop, m.stopping = nil, true
		}
		wc = m.drainReadings(wc)
		dc = m.drainDrops(dc)
		m.mu.Lock()
		m.queue = append(m.queue, m.inbox...)
		m.inbox = m.inbox[:0]
		m.mu.Unlock()
		now := time.Now().Round(0)
		m.advance(now)
		if m.stopping && len(m.queue) == 0 && len(m.cands) == 0 {
			m.mu.Lock()
			if len(m.inbox) == 0 {
				m.direct = true
				m.mu.Unlock()
				break
			}
			m.mu.Unlock()
			continue
		}
		if d, ok := m.nextDeadline(now); ok {
			timer.Reset(max(d.Sub(now), 0))
		}
	}
	m.w.Close()
}

// drainReadings takes every reading already waiting, so a step whose window
// just closed sees them all.
func (m *Merger) drainReadings(wc <-chan Reading) <-chan Reading {
	for wc != nil {
		select {
		case r, ok := <-wc:
			if !ok {
				m.readingsDone = true
				return nil
			}
			m.addReading(r)
		default:
			return wc
		}
	}
	return wc
}

// drainDrops takes every drop record already waiting.
func (m *Merger) drainDrops(dc <-chan Drop) <-chan Drop {
	for dc != nil {
		select {
		case d, ok := <-dc:
			if !ok {
				return nil
			}
			m.drops.add(d)
		default:
			return dc
		}
	}
	return dc
}

func (m *Merger) addReading(r Reading) {
	r.At = r.At.Round(0)
	m.mu.Lock()
	m.latest = r
	m.mu.Unlock()
	i := len(m.readings)
	for i > 0 && m.readings[i-1].At.After(r.At) {
		i--
	}
	m.readings = slices.Insert(m.readings, i, r)
	if len(m.readings) > maxReadings {
		m.readings = slices.Delete(m.readings, 0, len(m.readings)-maxReadings)
	}
	if r.Err != nil {
		return
	}
	if i < len(m.readings)-1 {
		// Older than a reading already in hand: no change to report after
		// it, but a change the kernel reported times the one a later look
		// found.
		m.retime(r)
		return
	}
	if m.havePrev && !sameState(m.prev, r) {
		m.cands = append(m.cands, cand{r: r, from: m.prev})
	}
	m.prev, m.havePrev = r, true
}

// retime gives a pending change the kernel's own time of it: r, a change
// the kernel reported, shows the state a later look found first, and came
// after the last look that showed the state before.
func (m *Merger) retime(r Reading) {
	if !r.Kernel || r.Err != nil {
		return
	}
	for i := range m.cands {
		c := &m.cands[i]
		if !c.r.Kernel && sameState(c.r, r) && r.At.Before(c.r.At) && r.At.After(c.from.At) {
			c.r = r
		}
	}
}

// sameState reports whether two readings without errors show the same state.
func sameState(a, b Reading) bool {
	return a.Exists == b.Exists && a.State == b.State && a.Request == b.Request
}

// advance decides what can be decided at now and forwards what can go.
func (m *Merger) advance(now time.Time) {
	// Steps are decided in order, each from readings no older than the one
	// the step before it took: the kernel does not go back in time, so a
	// later step seen in an earlier reading would show its states out of
	// order (FIN-WAIT-1, then ESTABLISHED).
	floor := m.floor
	for i, it := range m.queue {
		if it.st == nil {
			continue
		}
		if !it.decided {
			m.decide(i, now, floor)
			if !it.decided {
				break
			}
		}
		if it.hasChosen && it.chosen.At.After(floor) {
			floor = it.chosen.At
		}
	}
	m.resolveHolds(now)
	m.resolveCands(now)
	m.forward(now)
	m.prune(now)
}

// decide chooses the reading of one step, if its window allows it yet:
//
//  1. the first reading in [T, T+Window] in the inferred state: agrees (at
//     once);
//  2. once the window has closed, the first reading before our next step that
//     changes the inferred state (later readings may show that step's effect)
//     that is ahead, unless a later reading contradicts it (a socket that
//     still exists after "no socket" was read: the segment was on its way);
//  3. else the last reading before that next step: differs — or, when the
//     kernel was read in the next step's state right after it, it passed
//     through this one between two readings: unknown, said so;
//  4. no reading before that next step: unknown.
func (m *Merger) decide(pos int, now, floor time.Time) {
	it := m.queue[pos]
	end := it.at.Add(m.timing.Window)
	// A reading up to readingSkew before the step's time may already show
	// its effect (see readingSkew); none older than the step before took.
	lo := m.firstAt(it.at.Add(-readingSkew))
	if f := m.firstAt(floor); f > lo {
		lo = f
	}
	closed := m.readingsDone
	if m.beforePeerSYN(pos, lo) {
		return
	}
	hi := lo // readings [lo, hi) are in the window
	for ; hi < len(m.readings); hi++ {
		r := m.readings[hi]
		if r.At.After(end) {
			closed = true
			break
		}
		if Agree(it.inferred, r) == event.Agrees && !bornOfACK(r) {
			it.decided, it.agr, it.chosen, it.hasChosen = true, event.Agrees, r, true
			return
		}
	}
	// Readings before the next step that changes the inferred state belong
	// to this step. Once a reading after that step has come, no later one
	// can join them (readings come in time order): the step is settled
	// before its window closes, unless its answer would rest on a reading
	// of no socket that a later one could still belie (contradicted).
	change := m.nextChange(pos, end)
	settled := m.settled(it, change, end, lo, hi, now)
	if !closed && !settled && now.Before(end.Add(m.timing.Grace)) {
		return
	}
	early := !closed && now.Before(end.Add(m.timing.Grace))
	win := m.readings[lo:hi]
	if len(win) == 0 {
		it.decided, it.agr = true, event.Unknown
		m.holdForCookie(it)
		return
	}
	own := win
	if change != nil && change.at.Before(end) {
		// A reading taken just before the next step's wire time may already
		// show its effect: the packet tap and the netlink answer are timed
		// at different points of the kernel, some µs apart. Such a reading
		// is nobody's proof.
		cut := change.at.Add(-readingSkew)
		n := 0
		for n < len(win) && win[n].At.Before(cut) {
			n++
		}
		own = win[:n]
	}
	if early {
		for _, r := range own {
			if r.Err == nil && !r.Exists && Agree(it.inferred, r) == event.Ahead {
				return // a "no socket" that a later reading may belie: wait for the window
			}
		}
	}
	it.decided = true
	for i, r := range own {
		if Agree(it.inferred, r) == event.Ahead && !contradicted(r, win[i+1:]) {
			it.agr, it.chosen, it.hasChosen = event.Ahead, r, true
			return
		}
	}
	// Readings taken before the step (in the skew allowance) may only
	// confirm it, never contradict it.
	for len(own) > 0 && own[0].At.Before(it.at) {
		own = own[1:]
		win = win[1:]
	}
	if len(own) == 0 {
		it.agr, it.skipped = event.Unknown, change
		m.holdForCookie(it)
		return
	}
	last := own[len(own)-1]
	it.agr, it.chosen, it.hasChosen = Agree(it.inferred, last), last, true
	if change != nil && len(own) < len(win) && !sameState(last, win[len(own)]) &&
		Agree(change.inferred, win[len(own)]) == event.Agrees {
		it.agr, it.passed = event.Unknown, change
	}
	// Still in the state before this step, then already elsewhere: the
	// reading came before our segment (or the peer's change) took effect, and
	// the next one after the state had passed. That proves no disagreement.
	if it.agr == event.Differs && it.hasPrev && it.prev != it.inferred && Agree(it.prev, last) == event.Agrees &&
		len(own) < len(win) && !sameState(last, win[len(own)]) {
		it.agr, it.early, it.later = event.Unknown, true, win[len(own)]
	}
	// Still in the state before this step, and the peer's acknowledgment of
	// the step left only after that reading: the segment had not reached the
	// peer yet when its kernel was read.
	if it.agr == event.Differs && it.hasPrev && it.prev != it.inferred && Agree(it.prev, last) == event.Agrees {
		if a := m.ackOf(it); a != nil && last.At.Before(a.at) {
			it.agr, it.answered = event.Unknown, a
		}
	}
	if it.agr != event.Agrees && isSYN(it.st) && it.inferred == tcpstate.SynReceived && last.Err == nil && !last.Exists {
		it.hold, it.holdUntil = true, it.at.Add(m.timing.CookieWait)
	}
}

// settled reports whether a step's readings [lo, hi) are all it can have
// before its window closes: a reading after the next step that changes the
// inferred state has come (readings come in time order), and, with a
// kernel-fed watcher, the kernel's own records of the step's time have had
// FeedWait to arrive (they come later than the looks they precede).
func (m *Merger) settled(it, change *item, end time.Time, lo, hi int, now time.Time) bool {
	if m.fedAt(it.at) && now.Before(it.at.Add(m.feedWait())) {
		return false
	}
	return change != nil && change.at.Before(end) && hi > lo && !m.readings[hi-1].At.Before(change.at)
}

// beforePeerSYN decides the note that comes before the peer's own SYN (a
// listen session's first step, its model of the peer CLOSED): the peer's
// kernel can only be watched once its SYN has told us of the connection, so
// it is read in SYN-SENT already, which is ahead of the model (its
// application connected), not a disagreement. It reports whether it decided
// the step (or must wait for the SYN's step or a reading).
func (m *Merger) beforePeerSYN(pos, lo int) bool {
	it := m.queue[pos]
	if it.st.Direction != "note" || it.inferred != tcpstate.Closed {
		return false
	}
	var next *item
	for _, x := range m.queue[pos+1:] {
		if x.st != nil && x.st.Direction != event.DirectionObserved && x.st.Direction != "note" {
			next = x
			break
		}
	}
	if next == nil || next.st.Direction != "received" || next.st.Flags != "S" || next.at.Sub(it.at) > readingSkew {
		return false
	}
	for _, r := range m.readings[lo:] {
		if r.Err != nil {
			continue
		}
		if r.Exists && r.State == tcpstate.SynSent {
			it.decided, it.agr, it.chosen, it.hasChosen, it.peerOpen = true, event.Ahead, r, true, true
			return true
		}
		return false
	}
	return false
}

// bornOfACK reports whether r is a full socket in Linux's TCP_SYN_RECV (3),
// not a request socket (TCP_NEW_SYN_RECV, 12): the child a listener makes
// from a handshake's final ACK (from its request socket or from a SYN
// cookie), hashed in SYN_RECV and moved to ESTABLISHED some µs later
// (tcp_v4_syn_recv_sock, then tcp_child_process). It shows that the final ACK
// has arrived, so it cannot prove the SYN's state at once; it counts only
// among the readings before our next step (decide's own window).
func bornOfACK(r Reading) bool {
	return r.Err == nil && r.Exists && !r.Request && r.Linux == 3
}

// holdForCookie holds our SYN, undecided by the readings, until its answer
// shows whether the kernel's cookie counter moved.
func (m *Merger) holdForCookie(it *item) {
	m.mu.Lock()
	counted := m.cookies != nil
	m.mu.Unlock()
	if counted && isSYN(it.st) && it.inferred == tcpstate.SynReceived {
		it.hold, it.holdUntil = true, it.at.Add(m.timing.CookieWait)
	}
}

// contradicted reports whether a reading of no socket is belied by a later
// one that shows a socket: sockets do not come back, so the segment had not
// arrived yet.
func contradicted(r Reading, later []Reading) bool {
	if r.Exists {
		return false
	}
	for _, x := range later {
		if x.Err == nil && x.Exists {
			return true
		}
	}
	return false
}

// nextChange is the first step queued after position pos whose inferred
// state differs from that step's, looked for until before (later ones do
// not matter to its window), nil when there is none.
func (m *Merger) nextChange(pos int, before time.Time) *item {
	it := m.queue[pos]
	for j := m.stepAfter(pos); j >= 0 && m.queue[j].at.Before(before); j = m.stepAfter(j) {
		if x := m.queue[j]; x.inferred != it.inferred {
			return x
		}
	}
	return nil
}

// ackOf is the first received step queued after our sent step it that
// acknowledges all of it (its SYN, data and FIN), nil when there is none yet
// or it takes no sequence space. A reset is no such answer: one that
// acknowledges our SYN refuses it.
func (m *Merger) ackOf(it *item) *item {
	st := it.st
	if st.Direction != "sent" {
		return nil
	}
	end := st.Seq + uint32(st.Len)
	if strings.Contains(st.Flags, "S") {
		end++
	}
	if strings.Contains(st.Flags, "F") {
		end++
	}
	if end == st.Seq {
		return nil
	}
	for j := m.stepAfter(m.indexOf(it)); j >= 0; j = m.stepAfter(j) {
		if x := m.queue[j]; x.st.Direction == "received" && x.st.ICMP == "" && strings.Contains(x.st.Flags, ".") &&
			!strings.Contains(x.st.Flags, "R") && int32(x.st.Ack-end) >= 0 {
			return x
		}
	}
	return nil
}

// firstAt is the index of the first reading at or after t.
func (m *Merger) firstAt(t time.Time) int {
	return sort.Search(len(m.readings), func(i int) bool { return !m.readings[i].At.Before(t) })
}

// nextStep is the first annotated step queued after it, later than it.
func (m *Merger) nextStep(it *item) *item {
	if j := m.stepAfter(m.indexOf(it)); j >= 0 {
		return m.queue[j]
	}
	return nil
}

// indexOf is it's position in the queue, -1 when it is not there.
func (m *Merger) indexOf(it *item) int {
	return slices.Index(m.queue, it)
}

// stepAfter is the position of the first annotated step queued after
// position i that is later than the item there (the merger's own observed
// steps aside), -1 when there is none.
func (m *Merger) stepAfter(i int) int {
	if i < 0 {
		return -1
	}
	at := m.queue[i].at
	for j := i + 1; j < len(m.queue); j++ {
		if y := m.queue[j]; y.st != nil && y.st.Direction != event.DirectionObserved && y.at.After(at) {
			return j
		}
	}
	return -1
}

func isSYN(st *event.Step) bool {
	return st.Direction == "sent" && strings.Contains(st.Flags, "S") && !strings.ContainsAny(st.Flags, ".R")
}

func isSYNACK(st *event.Step) bool {
	return st.Direction == "received" && st.ICMP == "" && strings.Contains(st.Flags, "S") &&
		strings.Contains(st.Flags, ".") && !strings.Contains(st.Flags, "R")
}

// resolveHolds decides each held SYN (one after which the peer's kernel showed
// no socket). When the answer is a SYN-ACK and the kernel kept no socket, not
// even a request socket, from our SYN until our next segment (or the end of
// the SYN-ACK's window), the listener answered with a SYN cookie: both steps
// say so. Otherwise the SYN differs as decided.
func (m *Merger) resolveHolds(now time.Time) {
	for i, a := range m.queue {
		if !a.hold {
			continue
		}
		var b *item
		for _, x := range m.queue[i+1:] {
			if x.st != nil && x.st.Direction == "received" {
				b = x
				break
			}
		}
		switch {
		case b == nil:
			if !now.Before(a.holdUntil) || m.stopping {
				a.hold = false
			}
			continue
		case !isSYNACK(b.st):
			a.hold = false
			continue
		}
		end := b.at.Add(m.timing.Window)
		c := m.nextStep(b)
		if c != nil && c.at.Before(end) {
			end = c.at
		} else if now.Before(end.Add(m.timing.Grace)) && !m.readingsDone && !m.stopping {
			continue // our next segment may still come inside the SYN-ACK's window
		}
		a.hold = false
		// A request socket exists before its SYN-ACK leaves: no socket read
		// after the SYN-ACK arrived proves there is none.
		var last *Reading
		cookie, sawSocket := true, false
		for j := m.firstAt(a.at); j < len(m.readings) && m.readings[j].At.Before(end); j++ {
			r := &m.readings[j]
			if r.Exists && c != nil && !r.At.Before(c.at.Add(-readingSkew)) {
				break // a socket read just before our next segment's time is that segment's doing
			}
			if r.Err != nil || r.Exists {
				cookie, sawSocket = false, sawSocket || r.Exists
				break
			}
			if !r.At.Before(b.at) {
				last = r
			}
		}
		m.mu.Lock()
		count, base := m.cookies, m.cookieBase
		m.mu.Unlock()
		if !sawSocket && count != nil {
			// The kernel's own count settles it when no reading fell between
			// the SYN-ACK and our next segment.
			if n, err := count(); err == nil && n > base {
				m.cookieCount = n - base
				if last == nil {
					r := Reading{At: b.at, State: tcpstate.Closed}
					last, cookie = &r, true
				}
			} else if err == nil && last == nil {
				cookie = false
			}
		}
		if cookie && last != nil {
			a.agr, a.chosen, a.hasChosen, a.passed, a.skipped = event.Cookie, *last, true, nil, nil
			b.decided, b.agr, b.chosen, b.hasChosen, b.passed, b.skipped = true, event.Cookie, *last, true, nil, nil
		}
	}
}

// resolveCands claims each changed reading for a step near it that shows the
// same state, or, unclaimed once no step near it can still come, turns it into
// an observed step.
func (m *Merger) resolveCands(now time.Time) {
	keep := m.cands[:0]
	for _, c := range m.cands {
		lo, hi := c.r.At.Add(-m.timing.Window), c.r.At.Add(m.timing.Window)
		claimed, pending := false, false
		check := func(it *item) {
			if it.at.Before(lo) || it.at.After(hi) {
				return
			}
			if !it.decided {
				pending = true
			} else if it.hasChosen && it.chosen.Err == nil && sameState(it.chosen, c.r) {
				claimed = true
			} else if bornOfACK(c.r) && it.st != nil && it.st.Direction == "sent" && it.inferred == tcpstate.Established &&
				!it.at.After(c.r.At.Add(readingSkew)) {
				claimed = true // the child our final ACK made, on its way to ESTABLISHED
			}
		}
		for i := range m.history {
			check(&m.history[i])
		}
		for _, it := range m.queue {
			if it.st != nil {
				check(it)
			}
		}
		switch {
		case claimed:
		case pending || (now.Before(hi.Add(m.timing.Grace)) && !m.stopping):
			keep = append(keep, c)
		default:
			m.insertObserved(c)
		}
	}
	m.cands = keep
}

// insertObserved queues an observed step before the first event after it.
func (m *Merger) insertObserved(c cand) {
	st := &event.Step{
		TimeMs:    float64(c.r.At.Sub(m.start)) / float64(time.Millisecond),
		Direction: event.DirectionObserved,
		Observed:  c.r.Observed(),
		Explain: []string{fmt.Sprintf("the peer's kernel changed state, and no step within %s was observed in the new one: %s → %s", fmtDur(m.timing.Window),
			c.from, c.r)},
	}
	it := &item{ev: *st, st: st, at: c.r.At, decided: true, chosen: c.r, hasChosen: true}
	i := 0
	for i < len(m.queue) && !m.queue[i].at.After(c.r.At) {
		i++
	}
	m.queue = slices.Insert(m.queue, i, it)
}

// forward sends the head of the queue on while it is decided and no changed
// reading before it is still undecided.
func (m *Merger) forward(now time.Time) {
	for len(m.queue) > 0 {
		it := m.queue[0]
		if it.flush != nil {
			close(it.flush)
			m.queue = m.queue[1:]
			continue
		}
		if it.st != nil && (!it.decided || it.hold) {
			return
		}
		if m.feedHolds(it, now) {
			return
		}
		for _, c := range m.cands {
			if c.r.At.Before(it.at) {
				return
			}
		}
		m.queue = m.queue[1:]
		if it.st == nil {
			if st, ok := it.ev.(event.Step); ok {
				m.sayNote(&st)
				it.ev = st
				if st.Remote != "" {
					m.last = &st
				}
			}
			m.next.Emit(it.ev)
			continue
		}
		m.finish(it)
		m.sayNote(it.st)
		if it.hasChosen && it.chosen.At.After(m.floor) {
			m.floor = it.chosen.At
		}
		m.history = append(m.history, *it)
		m.next.Emit(*it.st)
	}
}

// feedHolds reports whether a step waits for the kernel's records about it
// (FeedWait after its time), with a kernel-fed watcher.
func (m *Merger) feedHolds(it *item, now time.Time) bool {
	if !m.fedAt(it.at) || it.st == nil || it.st.Direction == event.DirectionObserved || m.readingsDone {
		return false
	}
	return now.Before(it.at.Add(m.feedWait()))
}

// sayNote adds the note to be said once to st.
func (m *Merger) sayNote(st *event.Step) {
	m.mu.Lock()
	note := m.note
	m.note = ""
	m.mu.Unlock()
	if note != "" {
		st.Explain = append(slices.Clip(st.Explain), note)
	}
}

// kernelTimed is the change the kernel reported that the chosen reading of
// it shows later: the first kernel reading in the same state between the
// step (less readingSkew) and the chosen one.
func (m *Merger) kernelTimed(it *item) (Reading, bool) {
	if !m.feed || !it.hasChosen || it.chosen.Kernel || it.chosen.Err != nil {
		return Reading{}, false
	}
	for j := m.firstAt(it.at.Add(-readingSkew)); j < len(m.readings) && !m.readings[j].At.After(it.chosen.At); j++ {
		if r := m.readings[j]; r.Kernel && r.Err == nil && sameState(r, it.chosen) {
			return r, true
		}
	}
	return Reading{}, false
}

// when says when the chosen reading was taken, or the change made, from
// the step's time ("" without one).
func (m *Merger) when(it *item) string {
	if !it.hasChosen {
		return ""
	}
	d := it.chosen.At.Sub(it.at)
	switch {
	case it.chosen.Kernel && d < 0:
		return fmt.Sprintf("changed %s before this step, by the kernel's own clock", fmtDur(-d))
	case it.chosen.Kernel:
		return fmt.Sprintf("changed %s after this step, by the kernel's own clock", fmtDur(d))
	}
	return fmt.Sprintf("read %s after this step", fmtDur(d))
}

// annotate writes the chosen reading into the step (with the kernel's
// time of the change when a record of it came), and its drop record.
func (m *Merger) annotate(it *item) {
	st := it.st
	if k, ok := m.kernelTimed(it); ok {
		it.chosen = k
	}
	if it.hasChosen {
		st.Observed = it.chosen.Observed()
		if m.feed {
			t := float64(it.chosen.At.Sub(m.start)) / float64(time.Millisecond)
			st.ObservedMs = &t
		}
	}
	if m.drops.on && st.Direction == "sent" {
		if r, ok := m.drops.match(st, it.at, m.timing.Window); ok {
			st.Dropped = r.Reason
			st.Explain = append(st.Explain, dropNote(r, it.at))
		}
	}
}

// finish writes the decision into the step, with its explanation.
func (m *Merger) finish(it *item) {
	st := it.st
	if st.Direction == event.DirectionObserved {
		if m.last != nil {
			st.Local, st.Remote = m.last.Local, m.last.Remote
			if s, ok := parseState(st.Remote); ok {
				st.Agreement = Agree(s, it.chosen)
			}
		}
		return
	}
	m.last = st
	m.annotate(it)
	st.Agreement = it.agr
	after := m.when(it)
	switch it.agr {
	case event.Ahead:
		if it.peerOpen {
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel is in %s already (%s): its application opened the connection, and its SYN, which told us of it, is the next step; CLOSED is the model before that SYN",
				it.chosen, after))
			break
		}
		st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel is already in %s (%s): it acted on its own (its application closed or it aborted) and the segment that tells us is on its way",
			it.chosen, after))
	case event.Differs:
		st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel says %s, not %s as inferred (the last reading within %s, %s): a segment was lost or is still on its way",
			it.chosen, st.Remote, fmtDur(m.timing.Window), after))
	case event.Unknown:
		switch {
		case it.early:
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel was still in %s when read %s, before this step could take effect there, and already in %s at the next reading (%s after this step): it passed through %s between two readings",
				it.chosen, strings.TrimPrefix(after, "read "), it.later, fmtDur(it.later.At.Sub(it.at)), st.Remote))
			st.Observed = ""
		case it.answered != nil:
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel was still in %s when read %s, before this segment reached it: its acknowledgment left the peer only later (it arrived %s after this step), and it was not read again in between: undecided",
				it.chosen, strings.TrimPrefix(after, "read "), fmtDur(it.answered.at.Sub(it.at))))
			st.Observed = ""
		case it.passed != nil:
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel was not seen in %s: it was in %s %s, and in %s, where our next segment leads, right after that: it passed through %s between two readings",
				st.Remote, it.chosen, after, it.passed.st.Remote, st.Remote))
			st.Observed = ""
		case it.skipped != nil:
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel was not read before our next segment (%s later) changed its state again: undecided",
				fmtDur(it.skipped.at.Sub(it.at))))
		case it.hasChosen:
			st.Explain = append(st.Explain, "the peer's kernel could not be read: "+it.chosen.Err.Error())
		default:
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel was not read within %s of this step: its state is undecided", fmtDur(m.timing.Window)))
		}
	case event.Cookie:
		if isSYNACK(st) {
			st.Explain = append(st.Explain, fmt.Sprintf("the SYN-ACK's ISN %d is the cookie: a hash of the 4-tuple and of a counter that advances once a minute, with the MSS we offered coded as an index into a small table; the peer's kernel still has no socket", st.Seq))
			m.cookie = &cookieSeen{isn: st.Seq}
		} else {
			st.Explain = append(st.Explain, "the peer's kernel keeps no socket after our SYN, not even a request socket: its listener answers with a SYN cookie (net.ipv4.tcp_syncookies, RFC 4987 §3.6) and keeps no state until our final ACK — nothing was lost")
			if m.cookieCount > 0 {
				st.Explain = append(st.Explain, fmt.Sprintf("its kernel counted %d SYN cookie(s) sent since we began (TcpExt SyncookiesSent in /proc/net/netstat)", m.cookieCount))
			}
		}
	}
	if m.cookie != nil && st.Direction == "sent" && strings.Contains(st.Flags, ".") && !strings.ContainsAny(st.Flags, "SR") {
		isn := m.cookie.isn
		m.cookie = nil
		switch appeared, read := m.socketAfter(it); {
		case appeared:
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel built the connection from this ACK: ack − 1 = %d − 1 = %d is its cookie, checked and turned into a socket that is ESTABLISHED at once", st.Ack, st.Ack-1))
		case read:
			st.Explain = append(st.Explain, fmt.Sprintf("the peer's kernel still has no socket after our ACK: it did not accept ack − 1 = %d as its cookie (it sent %d)", st.Ack-1, isn))
		}
	}
}

// socketAfter reports whether a socket shows up in the readings of the window
// after it, and whether there were readings at all.
func (m *Merger) socketAfter(it *item) (appeared, read bool) {
	end := it.at.Add(m.timing.Window)
	for i := m.firstAt(it.at); i < len(m.readings) && !m.readings[i].At.After(end); i++ {
		if r := m.readings[i]; r.Err == nil {
			read = true
			appeared = appeared || r.Exists
		}
	}
	return appeared, read
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// nextDeadline is when something queued can next be decided by time alone.
// Deadlines already past are skipped: what still waits after its own deadline
// waits for another item, whose deadline counts.
func (m *Merger) nextDeadline(now time.Time) (time.Time, bool) {
	var d time.Time
	take := func(t time.Time) {
		if t.After(now) && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	for _, it := range m.queue {
		switch {
		case it.st == nil:
		case !it.decided:
			take(it.at.Add(m.timing.Window + m.timing.Grace))
			if m.fedAt(it.at) {
				take(it.at.Add(m.feedWait()))
			}
		case it.hold:
			take(it.holdUntil)
		case m.fedAt(it.at):
			take(it.at.Add(m.feedWait()))
		}
	}
	for _, c := range m.cands {
		take(c.r.At.Add(m.timing.Window + m.timing.Grace))
	}
	return d, !d.IsZero()
}

// prune forgets readings and decisions no step can still need.
func (m *Merger) prune(now time.Time) {
	from := now.Add(-(m.timing.Window + m.timing.Grace + keepReadings))
	for _, it := range m.queue {
		if it.st != nil && it.at.Before(from) {
			from = it.at
		}
	}
	for _, c := range m.cands {
		if c.r.At.Add(-m.timing.Window).Before(from) {
			from = c.r.At.Add(-m.timing.Window)
		}
	}
	m.drops.prune(from)
	i := sort.Search(len(m.readings), func(i int) bool { return !m.readings[i].At.Before(from) })
	if i > 0 {
		m.readings = slices.Delete(m.readings, 0, i)
	}
	j := 0
	for j < len(m.history) && m.history[j].at.Before(from) {
		j++
	}
	if j > 0 {
		m.history = slices.Delete(m.history, 0, j)
	}
}
