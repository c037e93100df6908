package trace

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// A Hub shares one kernel [Source] among the connections of a run: each
// subscriber gets the changes of one socket (named from its own side) and
// the drops of the segments sent to it. Changes are also kept for a while,
// so a subscriber that comes after them still gets them (a client's
// CLOSED → SYN-SENT happens before its SYN reaches us).
type Hub struct {
	src    *Source // nil until a StartHub's source is open
	mu     sync.Mutex
	subs   map[[2]netip.AddrPort][]*Sub
	hist   []Event
	err    error
	closed bool          // Close was called (under mu)
	ready  chan struct{} // closed once the source is open, or failed to
	live   time.Time     // when the source was open (under mu); zero before
	quit   chan struct{} // closed by Close (StartHubAfter's wait)
	done   chan struct{} // closed when routing has ended
	// Lost counts events a subscriber had no room for.
	Lost atomic.Uint64
}

// hubKeep is how long changes are kept for later subscribers, and
// hubKept how many at most.
const (
	hubKeep = 2 * time.Second
	hubKept = 4096
	subBuf  = 512
)

// OpenHub opens the kernel source (see [Open]) and starts routing its
// events.
func OpenHub(cfg Config) (*Hub, error) {
	s, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	return newHub(s), nil
}

func newHub(s *Source) *Hub {
	h := &Hub{src: s, subs: map[[2]netip.AddrPort][]*Sub{}, ready: make(chan struct{}), done: make(chan struct{}), live: time.Now()}
	close(h.ready)
	go h.run()
	return h
}

// StartHub is OpenHub that does not wait: the source is opened in the
// background (reading the kernel's BTF, building, verifying and attaching
// the programs takes 50-90 ms, longer than many whole connections), and
// the hub routes its events from the moment it is open. Subscribers may
// come before that; they get the changes from then on (and the history
// kept since). Ready says when it is open, Err whether it failed; Close
// does not wait for an open still under way.
func StartHub(cfg Config) *Hub { return StartHubAfter(cfg, nil) }

// StartHubAfter is StartHub that begins to open the source once begin is
// closed (nil: at once), or never if the hub is closed first: a connection
// can keep the loading's CPU out of its handshake.
func StartHubAfter(cfg Config, begin <-chan struct{}) *Hub {
	h := &Hub{subs: map[[2]netip.AddrPort][]*Sub{}, ready: make(chan struct{}), done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		if begin != nil {
			select {
			case <-begin:
			case <-h.quit: // Close has ended the subscriptions
				close(h.ready)
				close(h.done)
				return
			}
		}
		s, err := openLowPriority(cfg)
		h.mu.Lock()
		switch {
		case h.closed:
			h.mu.Unlock()
			if err == nil {
				s.Close()
			}
			close(h.ready)
			close(h.done)
			return
		case err != nil:
			h.err = err
			h.endAll()
			h.mu.Unlock()
			close(h.ready)
			close(h.done)
			return
		}
		h.src, h.live = s, time.Now()
		h.mu.Unlock()
		close(h.ready)
		h.run()
	}()
	return h
}

// LiveSince is when the source was open: the kernel's records of changes
// from then on come through the hub. Zero while it is not (StartHub still
// opening it, or failed).
func (h *Hub) LiveSince() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return time.Time{}
	}
	return h.live
}

// Ready is closed once the source is open or has failed to open.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Err is why the source failed or ended (nil while it runs, or before it
// is open).
func (h *Hub) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if errors.Is(h.err, ErrClosed) {
		return nil
	}
	return h.err
}

// Warnings says what this kernel does not let the source see (nothing
// before the source is open).
func (h *Hub) Warnings() []string {
	h.mu.Lock()
	src := h.src
	h.mu.Unlock()
	if src == nil {
		return nil
	}
	return src.Warnings()
}

// endAll ends every subscription (under h.mu).
func (h *Hub) endAll() {
	for _, ss := range h.subs {
		for _, s := range ss {
			s.end()
		}
	}
	h.subs = map[[2]netip.AddrPort][]*Sub{}
}

func (h *Hub) run() {
	defer close(h.done)
	for {
		ev, err := h.src.Next()
		if err != nil {
			h.mu.Lock()
			h.err = err
			h.endAll()
			h.mu.Unlock()
			return
		}
		h.route(ev)
	}
}

// keyOf is the socket an event concerns, from that socket's side.
func keyOf(ev Event) ([2]netip.AddrPort, bool) {
	switch {
	case ev.Change != nil:
		return [2]netip.AddrPort{ev.Change.Local, ev.Change.Remote}, true
	case ev.Drop != nil:
		return [2]netip.AddrPort{ev.Drop.Dst, ev.Drop.Src}, true
	}
	return [2]netip.AddrPort{}, false
}

func (h *Hub) route(ev Event) {
	k, ok := keyOf(ev)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ev.Change != nil {
		h.hist = append(h.hist, ev)
		cut := 0
		for cut < len(h.hist) && (len(h.hist)-cut > hubKept || time.Since(h.hist[cut].Change.At) > hubKeep) {
			cut++
		}
		h.hist = h.hist[cut:]
	}
	for _, s := range h.subs[k] {
		s.send(ev)
	}
}

// Subscribe starts delivering the events of the socket whose ends are local
// and remote (as its owner sees them), beginning with the changes of the
// last two seconds. Close the Sub.
func (h *Hub) Subscribe(local, remote netip.AddrPort) *Sub {
	k := [2]netip.AddrPort{
		netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()),
	}
	s := &Sub{h: h, key: k, c: make(chan Event, subBuf)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil || h.closed {
		s.end()
		return s
	}
	for _, ev := range h.hist {
		if kk, _ := keyOf(ev); kk == k {
			s.send(ev)
		}
	}
	h.subs[k] = append(h.subs[k], s)
	return s
}

// Close stops the source and ends every subscription. A source still
// being opened is closed by the opener once it is open; Close does not
// wait for it.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	if h.quit != nil {
		close(h.quit)
	}
	src := h.src
	if src == nil {
		h.endAll()
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	err := src.Close()
	<-h.done
	return err
}

// A Sub is one socket's share of a Hub's events.
type Sub struct {
	h     *Hub
	key   [2]netip.AddrPort
	c     chan Event
	ended bool // under h.mu
}

// C delivers the events; it is closed when the hub's source ends.
func (s *Sub) C() <-chan Event { return s.c }

// send never blocks (called under h.mu).
func (s *Sub) send(ev Event) {
	if s.ended {
		return
	}
	select {
	case s.c <- ev:
	default:
		s.h.Lost.Add(1)
	}
}

func (s *Sub) end() {
	if !s.ended {
		s.ended = true
		close(s.c)
	}
}

// Close ends the subscription; it is idempotent.
func (s *Sub) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	ss := s.h.subs[s.key]
	for i, x := range ss {
		if x == s {
			s.h.subs[s.key] = append(ss[:i:i], ss[i+1:]...)
			break
		}
	}
	if len(s.h.subs[s.key]) == 0 {
		delete(s.h.subs, s.key)
	}
	s.end()
}
