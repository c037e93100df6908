package observe

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// WatchTiming is how often a [Watch] reads the kernel.
type WatchTiming struct {
	Fast      time.Duration // between readings right after a kick
	KickGap   time.Duration // a kick reads at once unless the last reading is more recent than this
	FastFor   time.Duration // how long a kick keeps the fast pace
	Slow      time.Duration // between readings otherwise
	Heartbeat time.Duration // an unchanged state is still sent this often
	Buffer    int           // readings C holds before the oldest is dropped
}

// DefaultWatchTiming is the timing of [Diag.Watch]: a kick reads at once
// (kicks that come while a reading is taken count as one), then every 250 µs
// for 30 ms (in practice about every millisecond: an idle Go runtime rounds
// sub-millisecond timers up to 1 ms); every 25 ms otherwise, and a heartbeat every 10 ms, so every
// 30 ms window after a step holds readings.
func DefaultWatchTiming() WatchTiming {
	return WatchTiming{
		Fast: 250 * time.Microsecond, KickGap: 0, FastFor: 30 * time.Millisecond, Slow: 25 * time.Millisecond,
		Heartbeat: 10 * time.Millisecond, Buffer: 256,
	}
}

// A Watch is a goroutine that reads one socket's state from the kernel and
// sends a [Reading] on C when the state changes, when a kick asked for a
// fresh look, and at least every heartbeat; the first reading at once. It
// implements [Watcher].
type Watch struct {
	read   func() Reading
	timing WatchTiming

	c    chan Reading
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once

	polls atomic.Uint64
	sent  atomic.Uint64
	drops atomic.Uint64
}

// Watch starts watching the socket whose local end is local and remote end is
// remote (as its owner sees them) with [DefaultWatchTiming]. Close it.
func (d *Diag) Watch(local, remote netip.AddrPort) *Watch {
	return NewWatch(func() Reading {
		r, _ := d.Get(local, remote)
		return r
	}, DefaultWatchTiming())
}

// NewWatch starts a Watch over any source of readings (read must set At).
func NewWatch(read func() Reading, timing WatchTiming) *Watch {
	w := &Watch{
		read: read, timing: timing,
		c:    make(chan Reading, max(timing.Buffer, 1)),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go w.run()
	return w
}

// C delivers the readings; it is closed after Close.
func (w *Watch) C() <-chan Reading { return w.c }

// Kick says a segment just crossed: read now (or at the next fast tick) and
// keep the fast pace for FastFor. It never waits.
func (w *Watch) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Close stops the goroutine, waits for it and closes C. It is idempotent.
func (w *Watch) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return nil
}

// WatchStats counts what a Watch did.
type WatchStats struct {
	Polls   uint64 // kernel readings taken
	Sent    uint64 // readings sent on C
	Dropped uint64 // readings dropped because C was full (the oldest goes)
}

// Stats returns the counters so far.
func (w *Watch) Stats() WatchStats {
	return WatchStats{Polls: w.polls.Load(), Sent: w.sent.Load(), Dropped: w.drops.Load()}
}

func (w *Watch) run() {
	defer close(w.done)
	defer close(w.c)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		last      Reading
		lastSent  time.Time
		lastRead  time.Time
		next      time.Time // when the timer fires
		fastUntil time.Time
		confirm   = true // send the next reading whatever it says
	)
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
			now := time.Now()
			fastUntil, confirm = now.Add(w.timing.FastFor), true
			at := lastRead.Add(w.timing.KickGap)
			if at.Before(now) {
				at = now
			}
			if next.After(at) {
				timer.Reset(at.Sub(now))
				next = at
			}
			continue
		case <-timer.C:
		}
		r := w.read()
		lastRead = time.Now()
		w.polls.Add(1)
		if confirm || !r.same(last) || r.At.Sub(lastSent) >= w.timing.Heartbeat {
			w.send(r)
			lastSent = r.At
		}
		last, confirm = r, false
		now := time.Now()
		pace := w.timing.Slow
		if now.Before(fastUntil) {
			pace = w.timing.Fast
		}
		next = now.Add(pace)
		timer.Reset(pace)
	}
}

// send never blocks: when C is full the oldest reading is dropped.
func (w *Watch) send(r Reading) {
	w.sent.Add(1)
	select {
	case w.c <- r:
		return
	default:
	}
	select {
	case <-w.c:
		w.drops.Add(1)
	default:
	}
	select {
	case w.c <- r:
	default:
		w.drops.Add(1)
	}
}
