package probe

import (
	"net/netip"
	"sync/atomic"
	"time"

	"tcpshake/event"
	"tcpshake/probe/observe"
	"tcpshake/probe/observe/trace"
)

// DiagObserver makes an [observe.Diag] the session's Observer: a watch
// goroutine per connection and a merger that annotates the steps, so the
// session's loop never waits for the peer's kernel.
func DiagObserver(d *observe.Diag) Observer { return &diagObserver{d: d} }

// PolledObserver is DiagObserver that says note once, on the first step of
// the first connection it watches (how the peer's kernel is read).
func PolledObserver(d *observe.Diag, note string) Observer {
	o := &diagObserver{d: d}
	o.note.Store(&note)
	return o
}

// KernelObserver is DiagObserver fed by the kernel's own records too: the
// tracepoint's changes of each watched socket (their times the kernel's)
// join the sock_diag readings, which still show what the tracepoint does
// not (request sockets, no socket behind a SYN cookie), and with drops the
// peer kernel's drops of our segments annotate their steps. note is said
// once, as with PolledObserver.
func KernelObserver(d *observe.Diag, h *trace.Hub, drops bool, note string) Observer {
	o := &diagObserver{d: d, hub: h, drops: drops}
	o.note.Store(&note)
	return o
}

type diagObserver struct {
	d     *observe.Diag
	hub   *trace.Hub // nil: sock_diag only
	drops bool
	note  atomic.Pointer[string] // said once, then nil
}

func (o *diagObserver) Listening(local netip.AddrPort) (bool, error) { return o.d.Listening(local) }

func (o *diagObserver) Watch(local, remote netip.AddrPort, start, since time.Time, next event.Sink) (ObservedSink, error) {
	var w observe.Watcher = o.d.Watch(local, remote)
	if o.hub != nil {
		w = trace.NewWatcher(w, o.hub.Subscribe(local, remote), o.drops, since)
	}
	m := observe.NewMerger(next, w, start)
	if n := o.note.Swap(nil); n != nil && *n != "" {
		m.SetNote(*n)
	}
	// Without the counter (another kernel's /proc unreadable), cookies are
	// still recognised from the readings when one falls in time.
	_ = m.SetCookieCounter(o.d.SynCookiesSent)
	return mergerSink{m}, nil
}

// mergerSink is the merger as the session sees it.
type mergerSink struct{ *observe.Merger }

func (m mergerSink) Latest() (string, time.Time) {
	r := m.Merger.Latest()
	if r.At.IsZero() {
		return "", r.At
	}
	return r.Observed(), r.At
}

// ObserverFunc is an Observer from a one-shot reader of the peer's socket
// (scripted peers in tests, or any other source): it is watched the same
// way as the kernel is.
func ObserverFunc(read func(local, remote netip.AddrPort) observe.Reading, listening func(netip.AddrPort) (bool, error)) Observer {
	return funcObserver{read, listening}
}

type funcObserver struct {
	read      func(local, remote netip.AddrPort) observe.Reading
	listening func(netip.AddrPort) (bool, error)
}

func (o funcObserver) Listening(local netip.AddrPort) (bool, error) { return o.listening(local) }

func (o funcObserver) Watch(local, remote netip.AddrPort, start, _ time.Time, next event.Sink) (ObservedSink, error) {
	w := observe.NewWatch(func() observe.Reading { return o.read(local, remote) }, observe.DefaultWatchTiming())
	return mergerSink{observe.NewMerger(next, w, start)}, nil
}
