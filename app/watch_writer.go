package app

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// watchFlushEvery is the longest a line of watch waits in its buffer.
const watchFlushEvery = 10 * time.Millisecond

// batchWriter collects watch's lines and writes them out every
// watchFlushEvery (or once 64 KiB wait): a busy watch costs one write(2)
// per batch of lines instead of one per line, and no line waits longer
// than that. A failed write is returned by every later Write, which ends
// the watch.
type batchWriter struct {
	mu    sync.Mutex
	w     *bufio.Writer
	err   error
	dirty bool
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newBatchWriter(w io.Writer, every time.Duration) *batchWriter {
	b := &batchWriter{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop(every)
	return b
}

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.w.Write(p)
	b.dirty, b.err = true, err
	return n, err
}

func (b *batchWriter) loop(every time.Duration) {
	defer close(b.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.flush()
		case <-b.stop:
			return
		}
	}
}

func (b *batchWriter) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dirty && b.err == nil {
		b.err, b.dirty = b.w.Flush(), false
	}
}

// Close writes out what waits and stops the flusher; it is idempotent and
// returns the first write error.
func (b *batchWriter) Close() error {
	b.once.Do(func() {
		close(b.stop)
		<-b.done
		b.flush()
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
