package trace

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"tcpshake/probe/observe"
)

// A Poll is the fallback where eBPF cannot be loaded: it dumps one network
// namespace's TCP sockets with sock_diag every interval and reports what
// differs from the dump before. A state that comes and goes between two
// dumps is missed, and a change is timed by the dump that saw it (Polled is
// set).
type Poll struct {
	d     *observe.Diag
	netns uint32
	port  uint16
	every time.Duration
	last  map[[2]netip.AddrPort]observe.Socket
	q     []Event
	stop  chan struct{}
	once  sync.Once
	now   func() time.Time
	// Polls counts the dumps taken.
	Polls int
}

// NewPoll starts polling d (the namespace whose inode is netns) every
// interval, keeping sockets with port at either end (0: all). The sockets
// that exist now are the baseline: only changes after it are reported.
func NewPoll(d *observe.Diag, netns uint32, port uint16, every time.Duration) (*Poll, error) {
	p := &Poll{d: d, netns: netns, port: port, every: every, stop: make(chan struct{}), now: time.Now}
	cur, err := p.dump()
	if err != nil {
		return nil, err
	}
	p.last = cur
	return p, nil
}

func (p *Poll) dump() (map[[2]netip.AddrPort]observe.Socket, error) {
	socks, err := p.d.Sockets(observe.AllStates)
	p.Polls++
	if err != nil {
		return nil, err
	}
	m := make(map[[2]netip.AddrPort]observe.Socket, len(socks))
	for _, s := range socks {
		if p.port != 0 && s.Local.Port() != p.port && s.Remote.Port() != p.port {
			continue
		}
		m[[2]netip.AddrPort{s.Local, s.Remote}] = s
	}
	return m, nil
}

// diff reports what changed from old to cur, at at.
func (p *Poll) diff(old, cur map[[2]netip.AddrPort]observe.Socket, at time.Time) []Event {
	var out []Event
	add := func(k [2]netip.AddrPort, from, to uint8, sock SocketKind) {
		out = append(out, Event{Change: &Change{
			At: at, Netns: p.netns, Local: k[0], Remote: k[1], Polled: true, Socket: sock,
			From: fromLinux(uint32(from)), To: fromLinux(uint32(to)), FromLinux: from, ToLinux: to,
		}})
	}
	kind := func(s observe.Socket) SocketKind {
		if s.Linux == linuxTimeWait {
			return TimeWait
		}
		return Full
	}
	for k, s := range cur {
		o, ok := old[k]
		switch {
		case !ok:
			add(k, linuxClose, s.Linux, kind(s))
		case o.Linux != s.Linux:
			add(k, o.Linux, s.Linux, kind(s))
		}
	}
	for k, o := range old {
		if _, ok := cur[k]; !ok {
			add(k, o.Linux, linuxClose, kind(o))
		}
	}
	sortEvents(out)
	return out
}

// Next blocks until the next change (or ErrClosed after Close).
func (p *Poll) Next() (Event, error) {
	t := time.NewTimer(p.every)
	defer t.Stop()
	for len(p.q) == 0 {
		select {
		case <-p.stop:
			return Event{}, ErrClosed
		case <-t.C:
		}
		cur, err := p.dump()
		t.Reset(p.every)
		if err != nil {
			return Event{}, err
		}
		p.q = p.diff(p.last, cur, p.now())
		p.last = cur
	}
	ev := p.q[0]
	p.q = p.q[1:]
	return ev, nil
}

// Close makes Next return ErrClosed; it is idempotent. The Diag stays the
// caller's.
func (p *Poll) Close() error {
	p.once.Do(func() { close(p.stop) })
	return nil
}

// sortEvents orders one poll's changes by socket, so the output is stable.
func sortEvents(evs []Event) {
	slices.SortFunc(evs, func(a, b Event) int {
		if c := a.Change.Local.Compare(b.Change.Local); c != 0 {
			return c
		}
		return a.Change.Remote.Compare(b.Change.Remote)
	})
}
