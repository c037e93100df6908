package probe

import (
	"net/netip"
	"sync"
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
// once, as with PolledObserver. begin, when set, is called once, when the
// first watched connection's handshake is over (its third step) or
// handshakeWait after its watch began, whichever is first: what a hub
// started with trace.StartHubAfter waits for, so that loading its programs
// (40-90 ms of CPU, which they would not finish within a handshake anyway)
// does not compete with the handshake's answers.
func KernelObserver(d *observe.Diag, h *trace.Hub, drops bool, note string, begin func()) Observer {
	o := &diagObserver{d: d, hub: h, drops: drops, begin: begin}
	o.note.Store(&note)
	return o
}

// handshakeWait bounds how long KernelObserver's begin waits for a
// handshake: over a slow path the answers are RTTs apart, and the loading
// beside them cannot delay one measurably.
const handshakeWait = 20 * time.Millisecond

type diagObserver struct {
	d     *observe.Diag
	hub   *trace.Hub // nil: sock_diag only
	drops bool
	note  atomic.Pointer[string] // said once, then nil
	begin func()
	once  sync.Once
}

// started calls begin, once.
func (o *diagObserver) started() {
	if o.begin != nil {
		o.once.Do(o.begin)
	}
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
	if o.begin == nil {
		return mergerSink{m}, nil
	}
	t := time.AfterFunc(handshakeWait, o.started)
	return &beginSink{mergerSink: mergerSink{m}, o: o, timer: t}, nil
}

// beginSink is a mergerSink that calls its observer's begin once the
// handshake is over (the third step), or at Close.
type beginSink struct {
	mergerSink
	o     *diagObserver
	timer *time.Timer
	n     int
}

func (b *beginSink) Emit(ev event.Event) {
	b.mergerSink.Emit(ev)
	if st, ok := ev.(event.Step); ok && st.Direction != "note" {
		if b.n++; b.n == 3 {
			b.timer.Stop()
			b.o.started()
		}
	}
}

func (b *beginSink) Close() error {
	b.timer.Stop()
	b.o.started()
	return b.mergerSink.Close()
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
