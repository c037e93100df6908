package app

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// watchFlushEvery is the longest a line of watch waits in its buffer.
const watchFlushEvery = time.Millisecond

// batchWriter writes watch's lines out at once when none went out for
// watchFlushEvery, and otherwise collects them until watchFlushEvery after
// the first line of the batch (or until 64 KiB wait): a lone change is
// shown as it comes, a busy watch costs one write(2) per batch of lines
// instead of one per line, and an idle watch wakes for nothing. A failed
// write is returned by every later Write, which ends the watch.
type batchWriter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	err    error
	dirty  bool // lines wait, and the timer is set
	closed bool
	timer  *time.Timer
	every  time.Duration
	last   time.Time // the last write out
}

func newBatchWriter(w io.Writer, every time.Duration) *batchWriter {
	b := &batchWriter{w: bufio.NewWriterSize(w, 64<<10), every: every}
	b.timer = time.AfterFunc(time.Hour, b.flush)
	b.timer.Stop()
	return b
}

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.w.Write(p)
	b.err = err
	switch {
	case b.dirty || b.closed:
	case time.Since(b.last) >= b.every:
		b.flushLocked()
	default:
		b.dirty = true
		b.timer.Reset(b.every)
	}
	return n, b.err
}

func (b *batchWriter) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *batchWriter) flushLocked() {
	if b.err == nil {
		b.err = b.w.Flush()
	}
	b.dirty, b.last = false, time.Now()
}

// Close writes out what waits; it is idempotent and returns the first
// write error. Lines written after it go out at the next Close.
func (b *batchWriter) Close() error {
	b.mu.Lock()
	b.closed = true
	b.timer.Stop()
	b.mu.Unlock()
	b.flush()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
