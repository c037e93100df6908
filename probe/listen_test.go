package probe_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe"
)

// clients is a scripted wire for a listener: a packet source that delivers
// the clients' SYNs it is given, a copy of every segment we send (as a
// capture sees it leave) and each client's ACK of our SYN-ACK.
type clients struct {
	mu     sync.Mutex
	frames chan capture.Frame
	parser *craft.Parser
	closed chan struct{}
	once   sync.Once
	synAck map[netip.AddrPort]int // SYN-ACKs sent to each client
}

func newClients() *clients {
	return &clients{frames: make(chan capture.Frame, 4096), parser: craft.NewParser(),
		closed: make(chan struct{}), synAck: map[netip.AddrPort]int{}}
}

func (c *clients) put(seg craft.Segment, outgoing bool) {
	pkt, err := seg.Marshal()
	if err != nil {
		panic(err)
	}
	c.frames <- capture.Frame{Data: pkt, Time: time.Now(), Outgoing: outgoing}
}

// syn puts client's SYN (ISN 100) to local on the wire.
func (c *clients) syn(client, local netip.AddrPort) {
	c.put(craft.Segment{Src: client, Dst: local, Seq: 100, Flags: craft.SYN, Window: 64240, TTL: 64,
		Options: craft.Options{craft.MSS(1460)}}, false)
}

func (c *clients) Read(f *capture.Frame) error {
	select {
	case fr := <-c.frames:
		*f = fr
		return nil
	case <-c.closed:
		return capture.ErrClosed
	}
}

func (c *clients) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Send sees our segment leave, and answers a SYN-ACK with the client's ACK.
func (c *clients) Send(pkt []byte, dst netip.Addr) error {
	var p craft.Packet
	c.mu.Lock()
	err := c.parser.Parse(pkt, &p)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	seg := p.Seg
	c.frames <- capture.Frame{Data: append([]byte(nil), pkt...), Time: time.Now(), Outgoing: true}
	if seg.Flags.Has(craft.SYN) && seg.Flags.Has(craft.ACK) {
		c.mu.Lock()
		c.synAck[seg.Dst]++
		c.mu.Unlock()
		c.put(craft.Segment{Src: seg.Dst, Dst: seg.Src, Seq: seg.Ack, Ack: seg.Seq + 1, Flags: craft.ACK, Window: 64240, TTL: 64}, false)
	}
	return nil
}

type lockedSink struct {
	mu sync.Mutex
	n  int
}

func (s *lockedSink) Emit(event.Event) {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
}

// TestListenerServesBurst: clients' SYNs that come at once, more of them
// than are served at a time, and some while connections are being begun,
// are each answered with one SYN-ACK and served: the SYNs that find no
// ticket out wait in the backlog and none is lost or served twice.
func TestListenerServesBurst(t *testing.T) {
	for _, tc := range []struct {
		name            string
		count, parallel int
		spread          time.Duration // between two SYNs (0: all at once)
	}{
		{"burst, 3 at a time", 24, 3, 0},
		{"burst, one at a time", 8, 1, 0},
		{"spread, 4 at a time", 16, 4, 300 * time.Microsecond},
		{"one by one", 6, 6, 5 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := netip.MustParseAddrPort("198.51.100.2:8000")
			w := newClients()
			l := probe.NewListener(probe.ListenConfig{
				Local: local, Count: tc.count, Parallel: tc.parallel, Close: probe.CloseRST, Wait: 5 * time.Second,
				Session: probe.SessionConfig{Window: 64240, Timeout: 20 * time.Millisecond,
					SYN: craft.SYNOptionSet{MSS: 1460, WScale: -1}},
			})
			m := capture.NewMatcher()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			mdone := make(chan error, 1)
			go func() { mdone <- m.Run(ctx, l.Source(w)) }()
			defer func() { w.Close(); <-mdone }()
			go func() {
				for i := range tc.count {
					w.syn(netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(40000+i)), local)
					if tc.spread > 0 {
						time.Sleep(tc.spread)
					}
				}
			}()
			var mu sync.Mutex
			served := map[*probe.Session]int{}
			var errs []error
			sink := &lockedSink{}
			err := l.Run(ctx, probe.ListenEnv{SessionEnv: probe.SessionEnv{Env: probe.Env{
				Sender: w, Matcher: m, Sink: sink, Now: time.Now, Rand: func() uint32 { return 2000 },
			}}}, func(e probe.Ended) {
				mu.Lock()
				defer mu.Unlock()
				served[e.Session]++
				if e.Err != nil {
					errs = append(errs, e.Err)
				}
			})
			if err != nil {
				t.Fatalf("Run: %v (served %d of %d)", err, len(served), tc.count)
			}
			if err := errors.Join(errs...); err != nil {
				t.Errorf("connections ended with: %v", err)
			}
			if len(served) != tc.count {
				t.Errorf("served %d clients, want %d", len(served), tc.count)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			for _, n := range served {
				if n != 1 {
					t.Errorf("a connection ended %d times, want once", n)
				}
			}
			if len(w.synAck) != tc.count {
				t.Errorf("%d clients got a SYN-ACK, want %d", len(w.synAck), tc.count)
			}
			for c, n := range w.synAck {
				if n != 1 {
					t.Errorf("client %v got %d SYN-ACKs, want 1", c, n)
				}
			}
			if n := l.Backlogged(); n != 0 {
				t.Errorf("%d SYNs dropped from the backlog, want 0", n)
			}
		})
	}
}
