package trace

import (
	"sync"
	"time"

	"tcpshake/probe/observe"
)

// A Watcher watches one socket with the kernel's own records: the readings
// of a sock_diag watch (for what the tracepoint does not report: a
// listener's request socket in SYN-RECEIVED, the absence of any socket
// behind a SYN cookie, the state between changes), merged with the
// tracepoint's changes of the socket as readings timed by the kernel
// (Reading.Kernel), and, when asked, the drops of segments sent to it. It
// implements [observe.KernelWatcher].
type Watcher struct {
	poll  observe.Watcher
	sub   *Sub
	since time.Time // the kernel's records before it are an earlier socket's
	c     chan observe.Reading
	drops chan observe.Drop
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// NewWatcher starts a Watcher over poll (which it owns) and sub (which it
// closes); with drops it also delivers the socket's drops. The kernel's
// records from before since (the Hub keeps the last two seconds' changes,
// and a late record may still be on its way) are an earlier socket's with
// the same ends and are left out; zero since keeps them.
func NewWatcher(poll observe.Watcher, sub *Sub, drops bool, since time.Time) *Watcher {
	w := &Watcher{
		poll: poll, sub: sub, since: since, c: make(chan observe.Reading, 256),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if drops {
		w.drops = make(chan observe.Drop, 256)
	}
	go w.run()
	return w
}

func (w *Watcher) run() {
	defer close(w.done)
	defer close(w.c)
	if w.drops != nil {
		defer close(w.drops)
	}
	pc, sc := w.poll.C(), w.sub.C()
	for pc != nil {
		select {
		case <-w.stop:
			return
		case r, ok := <-pc:
			if !ok {
				return
			}
			w.send(r)
		case ev, ok := <-sc:
			if !ok {
				sc = nil
				continue
			}
			switch {
			case ev.Change != nil && ev.Change.At.Before(w.since):
			case ev.Drop != nil && ev.Drop.At.Before(w.since):
			case ev.Change != nil:
				w.send(kernelReading(ev.Change))
			case ev.Drop != nil && w.drops != nil:
				select {
				case w.drops <- toDrop(ev.Drop):
				default:
				}
			}
		}
	}
}

// send never blocks: when C is full the reading is lost (the merger keeps
// what it has; the watch's next look repeats the state).
func (w *Watcher) send(r observe.Reading) {
	select {
	case w.c <- r:
	default:
	}
}

// kernelReading is a change as a reading at the kernel's time. A full
// socket moved to CLOSE is gone from the kernel's tables: no socket.
func kernelReading(c *Change) observe.Reading {
	if c.ToLinux == linuxClose {
		return observe.Reading{At: c.At, Kernel: true}
	}
	r := observe.FromLinux(c.ToLinux, c.At)
	r.Kernel = true
	return r
}

func toDrop(d *Drop) observe.Drop {
	return observe.Drop{At: d.At, Src: d.Src, Dst: d.Dst, Flags: d.Flags, Seq: d.Seq, Ack: d.Ack, Len: d.Len, Reason: d.Reason, Code: d.Code}
}

// C delivers the readings; it is closed after Close.
func (w *Watcher) C() <-chan observe.Reading { return w.c }

// Drops delivers the drops (nil unless asked for).
func (w *Watcher) Drops() <-chan observe.Drop {
	if w.drops == nil {
		return nil
	}
	return w.drops
}

// FeedSince is when the hub's kernel records began to flow (zero: not yet).
func (w *Watcher) FeedSince() time.Time { return w.sub.h.LiveSince() }

var _ observe.KernelWatcher = (*Watcher)(nil)

// Kick asks the sock_diag watch for a close look now.
func (w *Watcher) Kick() { w.poll.Kick() }

// Close ends the subscription and the watch, and waits; it is idempotent.
func (w *Watcher) Close() error {
	w.once.Do(func() { close(w.stop) })
	w.sub.Close()
	err := w.poll.Close()
	<-w.done
	return err
}
