package probe

import (
	"fmt"
	"sync"

	"tcpshake/event"
)

// RSTTap passes every event on to the sink it wraps and keeps the ICMP
// errors the sessions received, so that a scenario can show them as its
// results (the session reports ICMP as steps, not as segments). A nil tap
// keeps nothing.
type RSTTap struct {
	next event.Sink

	mu    sync.Mutex
	icmp  []string
	drops []tapDrop // our segments the peer's kernel dropped (--drops)
}

// NewRSTTap wraps next.
func NewRSTTap(next event.Sink) *RSTTap { return &RSTTap{next: next} }

// Emit implements event.Sink.
func (t *RSTTap) Emit(e event.Event) {
	if st, ok := e.(event.Step); ok && st.ICMP != "" && st.Direction == "received" {
		t.mu.Lock()
		t.icmp = append(t.icmp, fmt.Sprintf("ICMP %s from %s", st.ICMP, st.Src))
		t.mu.Unlock()
	}
	if st, ok := e.(event.Step); ok && st.Dropped != "" && st.Direction == "sent" {
		t.mu.Lock()
		t.drops = append(t.drops, tapDrop{flags: st.Flags, seq: st.Seq, ack: st.Ack, reason: st.Dropped})
		t.mu.Unlock()
	}
	t.next.Emit(e)
}

// mark is where the next scenario's ICMP errors start.
func (t *RSTTap) mark() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.icmp)
}

// icmpSince lists the ICMP errors received since m.
func (t *RSTTap) icmpSince(m int) []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m > len(t.icmp) {
		return nil
	}
	return append([]string(nil), t.icmp[m:]...)
}

// dropMark is where the next scenario's drops start.
func (t *RSTTap) dropMark() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.drops)
}

// dropsSince lists the drops recorded since m.
func (t *RSTTap) dropsSince(m int) []tapDrop {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m > len(t.drops) {
		return nil
	}
	return append([]tapDrop(nil), t.drops[m:]...)
}
