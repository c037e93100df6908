package event

import (
	"bytes"
	"encoding/hex"
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

// hexDirect is the size from which a step's binary data is hex-encoded
// straight into the line (see Emit).
const hexDirect = 512

// Emit implements Sink.
func (j *JSON) Emit(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	// A step's binary data is the bulk of a transfer's JSON (its hex is
	// twice its size): it is appended as hex last, instead of having
	// encoding/json scan every hex digit for escaping (a 1 MB echo carried
	// 4 MB of it; that scan was a quarter of the whole run's CPU).
	var hexData Payload
	if st, ok := e.(Step); ok && len(st.Data) >= hexDirect && !st.Data.printable() {
		hexData, st.Data = st.Data, nil
		e = st
	}
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
	if hexData != nil {
		j.buf.Write(b[1 : len(b)-1])
		j.buf.WriteString(`,"data":"hex:`)
		j.buf.Grow(hex.EncodedLen(len(hexData)) + 3)
		j.buf.Write(hex.AppendEncode(j.buf.AvailableBuffer(), hexData))
		j.buf.WriteString(`"}`)
	} else {
		j.buf.Write(b[1:])
	}
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
