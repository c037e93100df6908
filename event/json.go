package event

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
)

// JSON writes each event as one JSON object per line, with its "type" first.
type JSON struct {
	mu  sync.Mutex
	w   io.Writer
	buf bytes.Buffer
	err error
}

// NewJSON returns a sink that writes JSON lines to w.
func NewJSON(w io.Writer) *JSON { return &JSON{w: w} }

// Emit implements Sink.
func (j *JSON) Emit(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, err := json.Marshal(e)
	if err != nil {
		j.err = err
		return
	}
	j.buf.Reset()
	j.buf.WriteString(`{"type":`)
	t, _ := json.Marshal(e.EventType())
	j.buf.Write(t)
	if len(b) > 2 {
		j.buf.WriteByte(',')
	}
	j.buf.Write(b[1:])
	j.buf.WriteByte('\n')
	if _, err := j.w.Write(j.buf.Bytes()); err != nil && j.err == nil {
		j.err = err
	}
}

// Err is the first error met while writing.
func (j *JSON) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}
