package observe_test

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"tcpshake/probe/tcpstate"
)

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestWatchLab watches a real connection change state, and measures what
// watching costs in CPU, idle and kicked every millisecond.
func TestWatchLab(t *testing.T) {
	n := newNS(t)
	d := openDiag(t, n)
	ln := n.listen(t, "tcp4", v4A.String()+":0", -1)
	cli, srv := n.dial(t, ln, netip.AddrPortFrom(v4A, addrPort(ln.Addr()).Port()))
	w := d.Watch(addrPort(srv.LocalAddr()), addrPort(srv.RemoteAddr()))
	defer w.Close()
	if r := <-w.C(); r.State != tcpstate.Established || !r.Exists || r.Err != nil {
		t.Fatalf("first reading %v, want ESTABLISHED", r)
	}
	for len(w.C()) > 0 {
		<-w.C()
	}

	const span = time.Second
	c0 := cpuTime(t)
	time.Sleep(span)
	idle := cpuTime(t) - c0
	s0 := w.Stats()
	c0 = cpuTime(t)
	for end := time.Now().Add(span); time.Now().Before(end); time.Sleep(time.Millisecond) {
		w.Kick()
	}
	kicked := cpuTime(t) - c0
	s1 := w.Stats()
	t.Logf("idle: %.2f%% of a core, %d readings/s; kicked every ms: %.2f%% of a core (the test's own loop included), %d readings/s",
		100*float64(idle)/float64(span), s0.Polls, 100*float64(kicked)/float64(span), s1.Polls-s0.Polls)
	if idle > span/20 {
		t.Errorf("idle watching costs %v of CPU per second, want under 5%%", idle)
	}
	for len(w.C()) > 0 {
		<-w.C()
	}
	cli.Close()
	deadline := time.After(2 * time.Second)
	for {
		select {
		case r := <-w.C():
			if r.State == tcpstate.CloseWait {
				return
			}
		case <-deadline:
			t.Fatal("CLOSE-WAIT not reported within 2 s after the client closed")
		}
	}
}
