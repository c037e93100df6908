package event

import "sync"

// Async is a sink that renders in a goroutine of its own, so the loop that
// emits never waits for a terminal, a pipe or the renderer's own work
// (encoding, hex dumps). Events reach next in the order they were emitted.
// Whenever the queue runs dry it calls flush (a buffered writer's Flush), so
// output still appears as it happens, without one write per event while
// events come fast.
type Async struct {
	next  Sink
	flush func() error

	mu     sync.Mutex
	queue  []asyncItem
	closed bool
	err    error
	wake   chan struct{}
	done   chan struct{}
}

type asyncItem struct {
	ev      Event
	flushed chan struct{} // a Flush marker, no event
}

// NewAsync starts an Async forwarding to next; flush may be nil.
func NewAsync(next Sink, flush func() error) *Async {
	a := &Async{next: next, flush: flush, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go a.run()
	return a
}

// Emit implements Sink. It never waits, except after Close, when it forwards
// directly once the queue has drained.
func (a *Async) Emit(e Event) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		<-a.done // what was queued goes first
		a.next.Emit(e)
		return
	}
	a.queue = append(a.queue, asyncItem{ev: e})
	a.mu.Unlock()
	a.signal()
}

// Flush waits until every event emitted before it has been rendered and
// the writer flushed.
func (a *Async) Flush() {
	it := asyncItem{flushed: make(chan struct{})}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		<-a.done
		return
	}
	a.queue = append(a.queue, it)
	a.mu.Unlock()
	a.signal()
	<-it.flushed
}

// Close renders what is queued, flushes and stops; it returns the first
// error flush reported. It is idempotent.
func (a *Async) Close() error {
	a.mu.Lock()
	already := a.closed
	a.closed = true
	a.mu.Unlock()
	if !already {
		a.signal()
	}
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *Async) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Async) run() {
	defer close(a.done)
	var batch []asyncItem
	for {
		<-a.wake
		for {
			a.mu.Lock()
			batch, a.queue = a.queue, batch[:0]
			closed := a.closed
			a.mu.Unlock()
			if len(batch) == 0 {
				a.doFlush()
				if closed {
					return
				}
				break
			}
			for i, it := range batch {
				if it.flushed != nil {
					a.doFlush()
					close(it.flushed)
				} else {
					a.next.Emit(it.ev)
				}
				batch[i] = asyncItem{}
			}
		}
	}
}

func (a *Async) doFlush() {
	if a.flush == nil {
		return
	}
	if err := a.flush(); err != nil {
		a.mu.Lock()
		if a.err == nil {
			a.err = err
		}
		a.mu.Unlock()
	}
}
