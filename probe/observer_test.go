package probe_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"tcpshake/event"
	"tcpshake/lab/labtest"
	"tcpshake/probe"
	"tcpshake/probe/observe"
)

// TestKernelObserverBegin: the begin of a KernelObserver is called once,
// at the first connection's third step, or handshakeWait after its watch
// began, or at its Close, whichever is first.
func TestKernelObserverBegin(t *testing.T) {
	labtest.RequireRoot(t)
	d, err := observe.Open("")
	if err != nil {
		t.Fatalf("sock_diag: %v", err)
	}
	defer d.Close()
	local, remote := netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:40002")
	step := func(n int) event.Step {
		return event.Step{N: n, Direction: "sent", Flags: "S", Src: local.String(), Dst: remote.String()}
	}
	for _, tc := range []struct {
		name  string
		steps int
		wait  time.Duration
		close bool
		want  int
	}{
		{name: "third step", steps: 3, want: 1},
		{name: "two steps", steps: 2, want: 0},
		{name: "two steps, then the wait", steps: 2, wait: 60 * time.Millisecond, want: 1},
		{name: "close", steps: 1, close: true, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := 0
			o := probe.KernelObserver(d, nil, false, "", func() { mu.Lock(); calls++; mu.Unlock() })
			for conn := 0; conn < 2; conn++ {
				sink, err := o.Watch(local, remote, time.Now(), time.Time{}, &sessEvents{})
				if err != nil {
					t.Fatal(err)
				}
				for i := 1; i <= tc.steps; i++ {
					sink.Emit(step(i))
				}
				time.Sleep(tc.wait)
				if tc.close {
					sink.Close()
				}
				mu.Lock()
				n := calls
				mu.Unlock()
				if conn == 0 && n != tc.want {
					t.Errorf("begin called %d times after %d steps, %v and close %v; want %d", n, tc.steps, tc.wait, tc.close, tc.want)
				}
				defer sink.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if calls > 1 {
				t.Errorf("begin called %d times over two connections, want at most once", calls)
			}
		})
	}
}
