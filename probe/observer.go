package probe

import (
	"net/netip"
	"time"

	"tcpshake/event"
	"tcpshake/probe/observe"
)

// DiagObserver makes an [observe.Diag] the session's Observer: a watch
// goroutine per connection and a merger that annotates the steps, so the
// session's loop never waits for the peer's kernel.
func DiagObserver(d *observe.Diag) Observer { return diagObserver{d} }

type diagObserver struct{ d *observe.Diag }

func (o diagObserver) Listening(local netip.AddrPort) (bool, error) { return o.d.Listening(local) }

func (o diagObserver) Watch(local, remote netip.AddrPort, start time.Time, next event.Sink) (ObservedSink, error) {
	m := observe.NewMerger(next, o.d.Watch(local, remote), start)
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

func (o funcObserver) Watch(local, remote netip.AddrPort, start time.Time, next event.Sink) (ObservedSink, error) {
	w := observe.NewWatch(func() observe.Reading { return o.read(local, remote) }, observe.DefaultWatchTiming())
	return mergerSink{observe.NewMerger(next, w, start)}, nil
}
