package trace

import (
	"net/netip"
	"testing"
	"time"

	"tcpshake/lab/labtest"
)

// TestStartHub: a hub started in the background takes subscribers before
// its source is open and delivers their socket's changes once it is; Close
// before it is open returns at once, and a later Subscribe is ended.
func TestStartHub(t *testing.T) {
	l := labtest.New(t)
	early := StartHub(Config{})
	t0 := time.Now()
	early.Close()
	if d := time.Since(t0); d > 20*time.Millisecond {
		t.Errorf("Close of a hub still opening took %v", d)
	}
	if _, ok := <-early.Subscribe(netip.MustParseAddrPort("198.51.100.2:7"), netip.MustParseAddrPort("198.51.100.1:1")).C(); ok {
		t.Error("a Subscribe after Close got an event")
	}
	select {
	case <-early.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the closed hub's open never ended")
	}

	h := StartHub(Config{})
	defer h.Close()
	c := dialIn(t, l.ClientNS, "198.51.100.2:7")
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	sub := h.Subscribe(local, netip.MustParseAddrPort("198.51.100.2:7")) // before the source is open
	waitOpen(t, h)
	c.Close() // ESTABLISHED → FIN-WAIT-1 …, after the source is open
	select {
	case ev, ok := <-sub.C():
		if !ok || ev.Change == nil || ev.Change.Local != local {
			t.Errorf("first event %+v (ok %v), want a change of %v", ev, ok, local)
		}
	case <-time.After(5 * time.Second):
		t.Error("no change of the socket reached the early subscriber")
	}
}

// TestStartHubAfter: the hub does not begin to open its source until begin
// is closed (LiveSince stays zero), opens it then, and a hub closed while
// it waits never opens one.
func TestStartHubAfter(t *testing.T) {
	labtest.New(t)
	never := StartHubAfter(Config{}, make(chan struct{}))
	select {
	case <-never.Ready():
		t.Fatal("ready before begin was closed")
	case <-time.After(200 * time.Millisecond):
	}
	never.Close()
	select {
	case <-never.Ready():
	case <-time.After(time.Second):
		t.Fatal("a hub closed while waiting for begin never ended")
	}
	if err, live := never.Err(), never.LiveSince(); err != nil || !live.IsZero() {
		t.Errorf("closed while waiting: Err %v, LiveSince %v; want nil and zero", err, live)
	}

	begin := make(chan struct{})
	h := StartHubAfter(Config{}, begin)
	defer h.Close()
	time.Sleep(100 * time.Millisecond)
	if !h.LiveSince().IsZero() {
		t.Fatal("live before begin was closed")
	}
	opened := time.Now()
	close(begin)
	waitOpen(t, h)
	if live := h.LiveSince(); live.Before(opened) {
		t.Errorf("LiveSince %v, before begin was closed (%v)", live, opened)
	}
}

// waitOpen waits up to 5 s for h's source to open, and fails t if it does
// not.
func waitOpen(t *testing.T, h *Hub) {
	t.Helper()
	select {
	case <-h.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the hub did not open")
	}
	if err := h.Err(); err != nil {
		t.Fatalf("open: %v", err)
	}
}
