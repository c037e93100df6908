package trace

import (
	"net/netip"
	"testing"
	"time"

	"tcpshake/probe/observe"
)

// quietPoll is a sock_diag watch that reads nothing.
type quietPoll struct{ c chan observe.Reading }

func (p quietPoll) C() <-chan observe.Reading { return p.c }
func (quietPoll) Kick()                       {}
func (p quietPoll) Close() error              { close(p.c); return nil }

// TestWatcherLeavesEarlierSocket: the hub replays the last seconds' changes
// of the same ends to a new subscriber, and a late record may still come;
// both are an earlier socket's when they come from before since (rst's
// scenarios reuse one source port: CI saw an earlier scenario's change told
// again, at its old time, in two later ones). Records after since are kept.
func TestWatcherLeavesEarlierSocket(t *testing.T) {
	h := &Hub{subs: map[[2]netip.AddrPort][]*Sub{}, done: make(chan struct{})}
	local, remote := netip.MustParseAddrPort("198.51.100.2:9"), netip.MustParseAddrPort("198.51.100.1:40000")
	since := time.Now()
	change := func(at time.Time, to uint8) Event {
		return Event{Change: &Change{At: at, Local: local, Remote: remote, ToLinux: to}}
	}
	h.route(change(since.Add(-300*time.Millisecond), linuxClose)) // the earlier socket's end
	w := NewWatcher(quietPoll{make(chan observe.Reading)}, h.Subscribe(local, remote), true, since)
	defer w.Close()
	h.route(change(since.Add(-time.Millisecond), linuxClose)) // a late record of it
	h.mu.Lock()
	for _, s := range h.subs[[2]netip.AddrPort{local, remote}] {
		s.send(Event{Drop: &Drop{At: since.Add(-time.Millisecond), Dst: local, Src: remote}})
	}
	h.mu.Unlock()
	h.route(change(since.Add(time.Millisecond), 3)) // this socket: SYN-RECV
	select {
	case r := <-w.C():
		if !r.At.Equal(since.Add(time.Millisecond)) {
			t.Errorf("first reading at %v, want the change after since (%v)", r.At.Sub(since), time.Millisecond)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the change after since was not delivered")
	}
	select {
	case d := <-w.Drops():
		t.Errorf("a drop from before since was delivered: %+v", d)
	default:
	}
}
