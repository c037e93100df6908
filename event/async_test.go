package event_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"tcpshake/event"
)

// slowSink records events; each Emit can be held until released.
type slowSink struct {
	mu   sync.Mutex
	got  []string
	gate chan struct{}
}

func (s *slowSink) Emit(e event.Event) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, e.(event.Warning).Message)
}

func TestAsyncOrderAndNeverWaits(t *testing.T) {
	s := &slowSink{gate: make(chan struct{})}
	a := event.NewAsync(s, nil)
	// The renderer is stuck: Emit must still return at once.
	for i := range 1000 {
		a.Emit(event.Warning{Message: fmt.Sprint(i)})
	}
	close(s.gate)
	a.Flush()
	s.mu.Lock()
	n := len(s.got)
	s.mu.Unlock()
	if n != 1000 {
		t.Fatalf("after Flush %d events rendered, want 1000", n)
	}
	a.Emit(event.Warning{Message: "last"})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a.Emit(event.Warning{Message: "after close"})
	for i, m := range s.got[:1000] {
		if m != fmt.Sprint(i) {
			t.Fatalf("event %d is %q: out of order", i, m)
		}
	}
	if s.got[1000] != "last" || s.got[1001] != "after close" {
		t.Errorf("tail %q", s.got[1000:])
	}
}

// TestAsyncFlushesWhenIdle: buffered output is written when the queue runs
// dry, not only at Close.
func TestAsyncFlushesWhenIdle(t *testing.T) {
	var out syncBuffer
	bw := bufio.NewWriterSize(&out, 1<<16)
	a := event.NewAsync(event.NewJSON(bw), bw.Flush)
	defer a.Close()
	a.Emit(event.Warning{Message: "hello"})
	a.Flush()
	if !strings.Contains(out.String(), `"hello"`) {
		t.Errorf("after Flush the writer holds %q", out.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
