package trace

import (
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
	src  *Source
	mu   sync.Mutex
	subs map[[2]netip.AddrPort][]*Sub
	hist []Event
	err  error
	done chan struct{}
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
	h := &Hub{src: s, subs: map[[2]netip.AddrPort][]*Sub{}, done: make(chan struct{})}
	go h.run()
	return h
}

// Warnings says what this kernel does not let the source see.
func (h *Hub) Warnings() []string { return h.src.Warnings() }

func (h *Hub) run() {
	defer close(h.done)
	for {
		ev, err := h.src.Next()
		if err != nil {
			h.mu.Lock()
			h.err = err
			for _, ss := range h.subs {
				for _, s := range ss {
					s.end()
				}
			}
			h.subs = map[[2]netip.AddrPort][]*Sub{}
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
	if h.err != nil {
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

// Close stops the source and ends every subscription.
func (h *Hub) Close() error {
	err := h.src.Close()
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
