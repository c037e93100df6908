package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// VerifyConfig is --verify: after a probe or scan, the handshake is completed
// on open ports, Hello (if any) is sent, what comes back within Wait is kept,
// and our RST ends the connection.
type VerifyConfig struct {
	Hello    []byte
	Wait     time.Duration // the most we wait for the peer's answer after the handshake
	Quiet    time.Duration // the peer's data has stopped: nothing more came for this long
	Max      int           // at most this many open ports are verified
	Parallel int           // at most this many at once
	Keep     int           // first bytes kept of the answer
}

// Defaults of --verify.
const (
	DefaultVerifyWait     = 1500 * time.Millisecond
	DefaultVerifyQuiet    = 300 * time.Millisecond
	DefaultVerifyMax      = 16
	DefaultVerifyParallel = 4
	DefaultVerifyKeep     = 256
)

// VerifyDial makes the session that verifies dst, emitting into sink; done
// gives back what it took (the source port). Nothing is sent until Open.
type VerifyDial func(dst netip.AddrPort, sink event.Sink) (s *Session, done func(), err error)

// VerifyHost is what a probe or scan found on one host: how many ports it
// probed and answered SYN-ACK, and the open ones.
type VerifyHost struct {
	Host   string
	Addr   netip.Addr
	Probed int
	Open   []event.Result
}

// VerifyReport is the verification of every host.
type VerifyReport struct {
	Ports       []event.Verify
	NotVerified int      // open ports beyond Max
	Notes       []string // per host: what the ports not verified showed, the host's evidence
}

// Verify verifies at most cfg.Max open ports of hosts, cfg.Parallel at a
// time, and judges each by its answer and by the evidence of a SYN proxy.
func Verify(ctx context.Context, cfg VerifyConfig, hosts []VerifyHost, dial VerifyDial) VerifyReport {
	cfg = cfg.withDefaults()
	type job struct {
		h VerifyHost
		r event.Result
		i int
	}
	var jobs []job
	var rep VerifyReport
	for _, h := range hosts {
		for _, r := range h.Open {
			if len(jobs) >= cfg.Max {
				rep.NotVerified++
				continue
			}
			jobs = append(jobs, job{h, r, len(jobs)})
		}
	}
	rep.Ports = make([]event.Verify, len(jobs))
	sem := make(chan struct{}, cfg.Parallel)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				rep.Ports[j.i] = event.Verify{Host: j.h.Host, Addr: j.r.Addr, Port: j.r.Port, Verdict: event.VerifyError, Why: "interrupted before it was tried"}
				return
			}
			defer func() { <-sem }()
			rep.Ports[j.i] = verifyOne(ctx, cfg, j.h.Host, netip.AddrPortFrom(j.h.Addr, j.r.Port), dial)
		}()
	}
	wg.Wait()
	for _, h := range hosts {
		rep.Notes = append(rep.Notes, judgeHost(h, rep.Ports)...)
	}
	return rep
}

func (c VerifyConfig) withDefaults() VerifyConfig {
	if c.Wait <= 0 {
		c.Wait = DefaultVerifyWait
	}
	if c.Quiet <= 0 {
		c.Quiet = DefaultVerifyQuiet
	}
	if c.Max <= 0 {
		c.Max = DefaultVerifyMax
	}
	if c.Parallel <= 0 {
		c.Parallel = DefaultVerifyParallel
	}
	if c.Keep <= 0 {
		c.Keep = DefaultVerifyKeep
	}
	return c
}

// verifyTap keeps what a verification needs of the session's steps: the
// SYN-ACK, and the peer's FIN and RST.
type verifyTap struct {
	mu     sync.Mutex
	synAck *event.Step
	window uint16 // the peer's last window
	fin    bool
	rst    bool
}

// shut: the peer's window is 0, as a SYN proxy's is until its backend
// answers.
func (t *verifyTap) shut() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.synAck != nil && t.window == 0
}

func (t *verifyTap) Emit(e event.Event) {
	st, ok := e.(event.Step)
	if !ok || st.Direction != "received" || st.Ignored {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.window = st.Window
	switch {
	case strings.HasPrefix(st.Flags, "S") && strings.Contains(st.Flags, ".") && t.synAck == nil:
		t.synAck = &st
	case strings.Contains(st.Flags, "R"):
		t.rst = true
	case strings.Contains(st.Flags, "F"):
		t.fin = true
	}
}

// verifyOne completes the handshake with dst, sends the hello, waits for
// the answer and resets.
func verifyOne(ctx context.Context, cfg VerifyConfig, host string, dst netip.AddrPort, dial VerifyDial) event.Verify {
	v := event.Verify{Host: host, Addr: dst.Addr().String(), Port: dst.Port()}
	tap := &verifyTap{}
	s, done, err := dial(dst, tap)
	if err != nil {
		v.Verdict, v.Why = event.VerifyError, err.Error()
		return v
	}
	defer done()
	// The handshake is bounded by the session's own retries; the wait by
	// cfg.Wait; all of it by twice that again, whatever the peer does.
	ctx, cancel := context.WithTimeout(ctx, 2*cfg.Wait+5*time.Second)
	defer cancel()
	err = s.Open(ctx)
	if err == nil {
		v.Handshake = true
		start := time.Now()
		err = verifyExchange(ctx, cfg, s, tap)
		v.WaitedMs = ms(time.Since(start))
		v.Hello = s.Summary().BytesSent
	}
	v.ResetSent = s.Abort(errors.New("verified"))
	tap.mu.Lock()
	if tap.synAck != nil {
		w, isn := tap.synAck.Window, tap.synAck.Seq
		v.SynAckWindow, v.ISN, v.SynAckOptions = &w, &isn, tap.synAck.Options
	}
	v.PeerClosed, v.PeerReset = tap.fin, tap.rst || errors.Is(s.Ended(), ErrReset)
	tap.mu.Unlock()
	got := s.Received()
	v.Bytes = len(got)
	if len(got) > 0 {
		v.Data = event.Payload(slices.Clone(got[:min(len(got), cfg.Keep)]))
	}
	verdict(&v, err)
	return v
}

// verifyExchange sends the hello and waits until the peer closes or resets,
// its data stops for cfg.Quiet, or cfg.Wait has passed. While the peer's
// window is 0 the hello waits for it to open, as a kernel's data would
// (a zero-window probe at once reaches a SYN proxy before its backend's
// connection exists, and is reset).
func verifyExchange(ctx context.Context, cfg VerifyConfig, s *Session, tap *verifyTap) error {
	deadline := time.Now().Add(cfg.Wait)
	for len(cfg.Hello) > 0 && tap.shut() && s.Ended() == nil && time.Now().Before(deadline) {
		if err := s.Hold(ctx, min(10*time.Millisecond, time.Until(deadline))); err != nil {
			return err
		}
	}
	if len(cfg.Hello) > 0 && s.Ended() == nil && time.Now().Before(deadline) {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		err := s.Write(wctx, cfg.Hello)
		cancel()
		if err != nil && !errors.Is(err, ErrReset) && !errors.Is(err, ErrClosed) && s.Ended() == nil {
			return fmt.Errorf("our %d bytes were not taken: %w", len(cfg.Hello), err)
		}
	}
	last, lastAt := len(s.Received()), time.Now()
	for {
		now := time.Now()
		if s.Ended() != nil || peerClosed(s.State()) || !now.Before(deadline) {
			return nil
		}
		if n := len(s.Received()); n != last {
			last, lastAt = n, now
		} else if last > 0 && now.Sub(lastAt) >= cfg.Quiet {
			return nil // the data has stopped
		}
		if err := s.Hold(ctx, min(50*time.Millisecond, deadline.Sub(now))); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
	}
}

// peerClosed: our end's state after the peer's FIN.
func peerClosed(st tcpstate.State) bool {
	return st == tcpstate.CloseWait || st == tcpstate.LastAck || st == tcpstate.Closing ||
		st == tcpstate.TimeWait || st == tcpstate.Closed
}
