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
	select {
	case <-h.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the hub did not open")
	}
	if err := h.Err(); err != nil {
		t.Fatalf("open: %v", err)
	}
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
