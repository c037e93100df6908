package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/capture"
	"tcpshake/event"
	"tcpshake/probe"
	"tcpshake/probe/guard"
	"tcpshake/probe/tcpstate"
)

// sessionFlags are shared by handshake and shell.
func sessionFlags() []cli.Flag {
	flags := append(targetFlags(),
		&cli.StringFlag{Name: "ports", Aliases: []string{"p"}, Usage: "the peer's `PORT` (or HOST:PORT)"},
		&cli.StringFlag{Name: "sport", Usage: "our source `PORT` (default: a free random one, reserved while we run)"},
		&cli.StringFlag{Name: "isn", Usage: "our initial sequence `NUMBER` (default: random from crypto/rand)"},
		&cli.StringFlag{Name: "window", Value: "64240", Usage: "our receive window `SIZE`"},
		&cli.StringFlag{Name: "ttl", Value: "64", Usage: "IPv4 TTL or IPv6 hop limit `N`"},
		mssFlag("in our SYN"),
		&cli.StringFlag{Name: "wscale", Usage: "window scale option `SHIFT` in our SYN (0-14)"},
		&cli.BoolFlag{Name: "sackok", Usage: "SACK-permitted option in our SYN"},
		&cli.BoolFlag{Name: "timestamp", Usage: "timestamps option in our SYN (then on every segment)"},
		&cli.BoolFlag{Name: "ecn", Usage: "send an ECN-setup SYN (ECE and CWR, RFC 3168 §6.1.1) and explain the peer's answer"},
		&cli.BoolFlag{Name: "no-gso", Usage: "send data one MSS per segment (default: on Ethernet links, segments of up to 64 KiB that the kernel cuts into MSS-sized ones where the link needs it, as its own TCP does: GSO)"},
		&cli.StringFlag{Name: "rto", Value: "1s", Usage: "initial retransmission timeout `DURATION` (RFC 6298; doubles on each retry)"},
		&cli.StringFlag{Name: "rto-max", Value: "60s", Usage: "the most the retransmission timeout may grow to, `DURATION` (RFC 6298 §2.5 allows a cap of 60 s or more; less is a deliberate deviation, e.g. for very lossy labs)"},
		&cli.StringFlag{Name: "retries", Value: "6", Usage: "retransmissions of one segment `N` before giving up"},
		&cli.StringFlag{Name: "time-wait", Value: "2s", Usage: "how long TIME-WAIT lasts here, `DURATION` (RFC 9293: 2·MSL = 4 min; 0: skip it)"},
		&cli.StringFlag{Name: "timeout", Value: "10s", Usage: "how long to wait for the peer's data or FIN, `DURATION`"},
		&cli.StringFlag{Name: "observe-netns", Usage: "read the peer's real socket state in network namespace `NAME` (automatic for local peers)"},
	)
	flags = append(flags, observeFlags()...)
	return append(flags,
		&cli.BoolFlag{Name: "no-guard", Usage: "do not hold back our kernel's RSTs (to see why the guard exists)"},
		&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (docs/json.md)"},
		&cli.StringFlag{Name: "view", Usage: "`ladder` (default on a terminal) or list"},
		writeFlag(),
	)
}

// writeFlag is -w, shared by every command that talks to a peer.
func writeFlag() cli.Flag {
	return &cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: "also write what crossed the wire to pcapng `FILE`, each packet with its step as a comment"}
}

// record sets up -w: every frame of the run is kept with the steps that
// explain it; the returned finish writes the file (call it before the
// capture closes).
func record(c *cli.Context, m *capture.Matcher, sink event.Sink, ifname string) (event.Sink, func() error) {
	path := c.String("write")
	if path == "" {
		return sink, func() error { return nil }
	}
	rec := &probe.Recorder{Next: sink}
	m.SetTap(rec.Tap)
	return rec, func() error {
		rec.Settle(20 * time.Millisecond)
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("-w: %w", err)
		}
		if err := rec.WriteTo(f, ifname); err != nil {
			f.Close()
			return fmt.Errorf("-w %s: %w", path, err)
		}
		return f.Close()
	}
}

func handshakeCommand() *cli.Command {
	return &cli.Command{
		Name:      "handshake",
		Usage:     "perform a TCP connection by hand: 3-way handshake, data, 4-way close, each step explained",
		ArgsUsage: "HOST:PORT",
		Description: "tcpshake plays the client from raw sockets: it sends the SYN, acknowledges the SYN-ACK, sends data,\n" +
			"acknowledges the peer's data and closes, retransmitting what is not acknowledged (RFC 6298).\n" +
			"Each step shows seq/ack (absolute and relative), the arithmetic in words, our state, the peer's state\n" +
			"inferred from RFC 9293, and the peer's real state from its kernel when visible (sock_diag).\n" +
			"While it runs, an nftables table owned by the process holds back our own kernel's RSTs for this\n" +
			"connection only; it vanishes when tcpshake exits, however it exits.\n" +
			"Exit status: 0 when the connection ran as asked, 1 when refused, filtered, reset or unfinished, 2 on errors.",
		Flags: append(sessionFlags(),
			&cli.StringFlag{Name: "send", Usage: "send `TEXT` after the handshake (escapes \\r \\n \\t \\xNN)"},
			&cli.StringFlag{Name: "send-file", Usage: "send the contents of `FILE` after the handshake"},
			&cli.StringFlag{Name: "close", Value: "fin", Usage: "how to end: fin (active close), wait (passive: the peer closes first), half (FIN, keep receiving), rst, none"},
			&cli.StringFlag{Name: "hold", Usage: "stay established for `DURATION` before closing, acknowledging what arrives"},
			&cli.BoolFlag{Name: "step", Usage: "before each segment we send, show it and wait for Enter"},
			svgFlag(),
			quizFlag(),
		),
		Action: runHandshake,
	}
}

// tuneRuntime sets the Go runtime for a connection's work, where the
// environment (GOMAXPROCS, GOGC) does not say otherwise:
//   - more Ps than CPUs (at least 4): a goroutine in a blocking system call
//     keeps its P until the runtime takes it back, and a background eBPF
//     load (--observe-netns) holds a P while it decodes the kernel's BTF.
//     With one P per CPU on a two-CPU machine the connection's goroutines
//     waited for a P behind them (6 ms in a trace at exit, when the sockets'
//     closes still blocked for an RCU grace period; see lateclose). The
//     operating system still schedules the threads: the eBPF loader's runs
//     at SCHED_IDLE.
//   - the garbage collector at 400 % (heap goal five times the live heap,
//     a few tens of MB at most: the windows bound what a session holds): a
//     transfer's segments are short-lived, and at 100 % collecting and
//     returning their memory was a quarter of a 1 MB echo's CPU.
//
// Interleaved A/B, 1 MB echo in the lab: 67.7 -> 63.2 ms (Ps), 67.5 -> 59.6
// ms (GC).
func tuneRuntime() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 2*runtime.NumCPU(), 4))
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// world is what the sessions of one command share: the target, the raw
// sockets and capture, the kernel-RST guard and the observer.
type world struct {
	cfg     probe.SessionConfig // the per-session fields are filled by conn
	target  target
	sport   uint16
	env     probe.SessionEnv
	closers []func() error
}

// openWorld resolves the target, opens the sockets, the guard and the
// observer.
func openWorld(c *cli.Context, cmd string, sink event.Sink, step probe.Stepper) (*world, error) {
	tg, err := parseTarget(c, cmd)
	if err != nil {
		return nil, err
	}
	if len(tg.ports) != 1 {
		return nil, usagef("%s talks to one port (got %d)", cmd, len(tg.ports))
	}
	cfg, sport, err := sessionConfig(c, tg)
	if err != nil {
		return nil, err
	}
	w := &world{target: tg, sport: sport}
	tuneRuntime()
	route, err := lookup(tg.addr, tg.iface, tg.src)
	if err != nil {
		return nil, err
	}
	// Our segments never exceed the route's MTU, and the MSS we offer is
	// what fits in it unless --mss says otherwise.
	cfg.MTU = route.MTU
	if !c.IsSet("mss") {
		cfg.SYN.MSS = routeMSS(route, tg.addr)
	}
	cfg.Local = netip.AddrPortFrom(route.Src, 0)
	cfg.Remote = netip.AddrPortFrom(tg.addr, tg.ports[0])
	w.cfg = cfg
	fail := func(err error) (*world, error) {
		w.close()
		return nil, err
	}
	live, err := probe.OpenLive(tg.addr, route, tg.iface)
	if err != nil {
		return fail(err)
	}
	w.closers = append(w.closers, live.Close)
	w.env = probe.SessionEnv{Env: live.Env(), Stepper: step}
	w.env.Sender = routeSender{w.env.Sender}
	w.env.GSO = live.GSO
	var finish func() error
	w.env.Sink, finish = record(c, live.Matcher, sink, route.IfName)
	if rec, ok := w.env.Sink.(*probe.Recorder); ok {
		w.env.Record = rec.Pair // the session pairs each frame with its step as it happens
	}
	if !c.Bool("no-guard") {
		g, err := guard.Open()
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return fail(fmt.Errorf("the kernel-RST guard needs CAP_NET_ADMIN: %w", err))
			}
			return fail(err)
		}
		w.closers = append(w.closers, g.Close)
		w.env.Guard = g
	}
	if ns := c.String("observe-netns"); ns != "" || isLocalPeer(tg.addr, route) {
		o, closeObs, err := openObserver(c, ns)
		if err != nil {
			return fail(err)
		}
		w.closers = append(w.closers, closeObs)
		w.env.Observer = o
	} else if err := noDrops(c); err != nil {
		return fail(err)
	}
	w.closers = append(w.closers, finish)
	return w, nil
}

// close releases the world. The -w file (the last closer) is written first,
// while the capture still runs; the sockets are then closed at the same
// time: closing the packet socket and the guard's netlink socket each wait
// for the kernel (synchronize_net, the owner table's removal, about 10 and
// 20 ms), and one after the other that is most of a short run's wall time.
func (w *world) close() error {
	cs := w.closers
	w.closers = nil
	if len(cs) == 0 {
		return nil
	}
	errs := make([]error, len(cs))
	last := len(cs) - 1
	errs[last] = cs[last]()
	var wg sync.WaitGroup
	for i := range cs[:last] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cs[i]()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// conn reserves a source port and prepares a session to port (0: the
// target's port). release frees the port.
func (w *world) conn(port uint16) (s *probe.Session, release func() error, err error) {
	cfg := w.cfg
	lport, release, err := probe.ReservePort(cfg.Local.Addr(), w.sport)
	if err != nil {
		return nil, nil, err
	}
	cfg.Local = netip.AddrPortFrom(cfg.Local.Addr(), lport)
	if port != 0 {
		cfg.Remote = netip.AddrPortFrom(cfg.Remote.Addr(), port)
	}
	return probe.NewSession(cfg, w.env), release, nil
}

// isLocalPeer: the peer's sockets live in our own network namespace (its
// address is ours, so the route to it is the loopback interface).
func isLocalPeer(a netip.Addr, route capture.Route) bool {
	return a.IsLoopback() || route.IfName == "lo"
}

// sessionSink picks the renderer for a session.
func sessionSink(c *cli.Context) (event.Sink, error) {
	return sessionSinkTo(c, c.App.Writer, isTerminal(c.App.Writer))
}

// asyncSessionSink is sessionSink rendered off the session's loop, through a
// buffer flushed whenever the loop has nothing more to say: the loop never
// waits for the terminal or pipe, nor for JSON encoding and hex dumps (for a
// 1 MB transfer, about 1,500 steps and 4.7 MB of JSON).
func asyncSessionSink(c *cli.Context) (*event.Async, error) {
	bw := bufio.NewWriterSize(c.App.Writer, 64<<10)
	sink, err := sessionSinkTo(c, bw, isTerminal(c.App.Writer))
	if err != nil {
		return nil, err
	}
	// The quiz waits for answers in the renderer's goroutine, never in the session's loop.
	return event.NewAsync(withQuiz(c, sink, bw, bw.Flush), bw.Flush), nil
}

// sessionSinkTo is sessionSink writing to w; tty says whether w is a terminal.
func sessionSinkTo(c *cli.Context, w io.Writer, tty bool) (event.Sink, error) {
	if c.Bool("json") {
		return event.NewJSON(w), nil
	}
	view := event.ViewList
	if tty {
		view = event.ViewLadder
	}
	switch v := c.String("view"); v {
	case "":
	case event.ViewLadder, event.ViewList:
		view = v
	default:
		return nil, usagef("--view %s: want ladder or list", v)
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	return &event.Text{W: w, View: view, Color: tty && !noColor, Width: outputWidth(c)}, nil
}

func runHandshake(c *cli.Context) error {
	mode, err := probe.ParseCloseMode(c.String("close"))
	if err != nil {
		return usageErr{err.Error()}
	}
	var data []byte
	if c.IsSet("send") {
		if data, err = Unescape(c.String("send")); err != nil {
			return usagef("--send: %v", err)
		}
	}
	if f := c.String("send-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return usagef("--send-file: %v", err)
		}
		data = append(data, b...)
	}
	var hold time.Duration
	if c.IsSet("hold") {
		p := numParser{c: c}
		if hold = p.duration("hold"); p.err != nil {
			return p.err
		}
	}
	if err := checkQuiz(c, false); err != nil {
		return err
	}
	var step probe.Stepper
	var sink event.Sink
	if c.Bool("step") {
		// --step prompts between steps: the story must be on the screen
		// before each question, so it is rendered as it comes.
		step = newStepper(c.Context, c.App.ErrWriter, os.Stdin)
		if sink, err = sessionSink(c); err != nil {
			return err
		}
	} else {
		a, err := asyncSessionSink(c)
		if err != nil {
			return err
		}
		defer a.Close()
		sink = a
	}
	return runSessionSVG(c, "handshake", sink, step, func(ctx context.Context, s *probe.Session) error {
		if err := s.Open(ctx); err != nil {
			return err
		}
		if len(data) > 0 {
			if err := s.Send(ctx, data); err != nil {
				return err
			}
		}
		if hold > 0 {
			if err := s.Hold(ctx, hold); err != nil {
				return err
			}
		}
		return s.Close(ctx, mode)
	})
}

// runSession opens the world and one connection, runs body on it, resets
// the peer if body failed or was interrupted (nothing stays half-open),
// reports the summary and maps the outcome to the exit status.
func runSession(c *cli.Context, cmd string, sink event.Sink, step probe.Stepper,
	body func(ctx context.Context, s *probe.Session) error) error {
	w, err := openWorld(c, cmd, sink, step)
	if err != nil {
		return err
	}
	defer w.close()
	s, release, err := w.conn(0)
	if err != nil {
		return err
	}
	defer release()
	err = body(c.Context, s)
	before := s.State()
	reset := false
	if err != nil {
		reset = s.Abort(err)
	}
	s.End()
	sum := s.Summary()
	sum.Outcome = outcome(err, before, reset)
	sink.Emit(sum)
	return sessionExit(err)
}

// outcome words how the session ended, true to what was sent.
func outcome(err error, before tcpstate.State, reset bool) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled) && reset:
		return fmt.Sprintf("interrupted in %s: we sent RST so nothing stays half-open on the peer", before)
	case errors.Is(err, context.Canceled) && before == tcpstate.TimeWait:
		return "interrupted in TIME-WAIT: the connection had already closed cleanly on both sides; nothing was sent"
	case errors.Is(err, context.Canceled):
		return fmt.Sprintf("interrupted in %s: no connection on the peer to reset", before)
	case reset:
		return err.Error() + "; we sent RST so nothing stays half-open on the peer"
	default:
		return err.Error()
	}
}

// sessionExit maps how a session ended to the exit status.
func sessionExit(err error) error {
	var unreach *probe.UnreachableError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, probe.ErrRefused), errors.Is(err, probe.ErrNoAnswer), errors.Is(err, probe.ErrReset),
		errors.Is(err, probe.ErrPeerStays), errors.Is(err, probe.ErrExpect), errors.As(err, &unreach):
		return exitCode(ExitNone)
	case errors.Is(err, context.Canceled):
		return exitCode(ExitFailure)
	}
	return err
}

// stepper is --step: it prints the segment the plan will send next and
// hands each Enter to the session, which keeps running meanwhile.
type stepper struct {
	w io.Writer
	c chan error
}

func newStepper(ctx context.Context, w io.Writer, in io.Reader) *stepper {
	st := &stepper{w: w, c: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(in)
		for {
			_, err := r.ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				err = fmt.Errorf("--step: %w", err)
			} else if err != nil {
				err = fmt.Errorf("--step: end of input: nothing more will be sent")
			}
			select {
			case st.c <- err:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return st
}

// Ask implements probe.Stepper.
func (st *stepper) Ask(next event.Step) {
	fmt.Fprintf(st.w, "will send [%s] seq %d ack %d len %d — press Enter to send it (Ctrl-C stops) ", next.Flags, next.Seq, next.Ack, next.Len)
}

// C implements probe.Stepper.
func (st *stepper) C() <-chan error { return st.c }
