package app

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"github.com/urfave/cli/v2"

	"tcpshake/capture"
	"tcpshake/event"
	"tcpshake/probe"
	"tcpshake/probe/guard"
)

// listenSessionFlags are the session flags that make sense for a server:
// sessionFlags without the target's and the client's own (-p, --sport,
// --ecn, -4/-6, -s), and --no-gso: a listener's data goes one MSS per
// segment (its clients come from anywhere, each behind its own next hop).
func listenSessionFlags() []cli.Flag {
	skip := []string{"ports", "sport", "ecn", "4", "6", "source", "no-gso"}
	var out []cli.Flag
	for _, f := range sessionFlags() {
		if !slices.Contains(skip, f.Names()[0]) {
			out = append(out, f)
		}
	}
	return out
}

func listenCommand() *cli.Command {
	return &cli.Command{
		Name:      "listen",
		Usage:     "play the server from raw sockets: a real client connects, each step explained from the server's side",
		ArgsUsage: "[ADDR:]PORT",
		Description: "tcpshake answers a client (curl, nc, a kernel connect(), tcpshake handshake) on a port where no\n" +
			"kernel socket listens: the passive open LISTEN → SYN-RECEIVED → ESTABLISHED, the data (--echo,\n" +
			"--reply), and the close (--close wait: the client closes first, CLOSE-WAIT → LAST-ACK; fin: we\n" +
			"close after replying; half; rst). Each step shows seq/ack with the arithmetic, our state and the\n" +
			"client's state inferred from RFC 9293. An nftables table owned by the process holds back our own\n" +
			"kernel's RSTs for the port while we listen, then for each connection's 4-tuple; it vanishes when\n" +
			"tcpshake exits. It serves --count connections, one at a time, and stops by itself when no client\n" +
			"comes within --listen-timeout.\n" +
			"Exit status: 0 when every connection ran as asked, 1 when one was reset, timed out or no client came, 2 on errors.",
		Flags: append(listenSessionFlags(),
			&cli.BoolFlag{Name: "echo", Usage: "send back every byte the client sends"},
			&cli.StringFlag{Name: "reply", Usage: "send `TEXT` once, after the client's first data (escapes \\r \\n \\t \\xNN)"},
			&cli.StringFlag{Name: "close", Value: "wait", Usage: "how to end: wait (the client closes first: CLOSE-WAIT, LAST-ACK), fin (we close after replying), half (our FIN, then keep receiving), rst, none"},
			&cli.StringFlag{Name: "count", Value: "1", Usage: "serve `N` connections, then exit"},
			&cli.StringFlag{Name: "parallel", Usage: "serve up to `N` connections at once, each in its own lane (default: all of --count, at most 64; -w: 1, so that each packet's comment names its step)"},
			&cli.StringFlag{Name: "listen-timeout", Value: "60s", Usage: "stop when no client connects within `DURATION`"},
			&cli.StringFlag{Name: "drop-syn", Value: "0", Usage: "ignore each client's first `N` SYNs, so its kernel retransmits them (1 s, 2 s, 4 s…: RFC 6298's backoff)"},
			&cli.BoolFlag{Name: "no-ack", Usage: "leave the client's first data segment unacknowledged, as if it were lost: its kernel retransmits it"},
			&cli.BoolFlag{Name: "step", Usage: "before each segment we send, show it and wait for Enter (connections one at a time)"},
			&cli.BoolFlag{Name: "syn-cookie", Usage: "answer each SYN with a SYN cookie (RFC 4987) and keep no state until the client's ACK brings it back; the cookie's bits are explained"},
			quizFlag(),
		),
		Action: runListen,
	}
}

// parseListenAddr reads [ADDR:]PORT: a port, ADDR:PORT, or [ADDR6]:PORT.
func parseListenAddr(arg string) (netip.AddrPort, error) {
	if n, err := strconv.ParseUint(arg, 10, 16); err == nil {
		if n == 0 {
			return netip.AddrPort{}, fmt.Errorf("port 0: want 1-65535")
		}
		return netip.AddrPortFrom(netip.Addr{}, uint16(n)), nil
	}
	host, p, err := net.SplitHostPort(arg)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want PORT or ADDR:PORT ([ADDR]:PORT for IPv6), got %q", arg)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Errorf("bad port %q: want 1-65535", p)
	}
	var a netip.Addr
	if host != "" && host != "*" {
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("listen takes an address of this host, not a name: %q", host)
		}
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}

func runListen(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("listen takes one [ADDR:]PORT (got %s)", plural(c.NArg(), "argument"))
	}
	local, err := parseListenAddr(c.Args().First())
	if err != nil {
		return usagef("listen: %v", err)
	}
	lc, err := listenConfig(c, local)
	if err != nil {
		return err
	}
	// Rendered off the loops (as handshake's); connections served at once
	// each get a lane of their own in the text (their lines prefixed with
	// their number), and in JSON every event names its connection.
	bw := bufio.NewWriterSize(c.App.Writer, 64<<10)
	tty := isTerminal(c.App.Writer)
	inner, err := sessionSinkTo(c, bw, tty)
	if err != nil {
		return err
	}
	if err := checkQuiz(c, false); err != nil {
		return err
	}
	if c.Bool("quiz") {
		// One connection at a time: the questions follow one story.
		lc.Parallel = 1
		inner = withQuiz(c, inner, bw, bw.Flush)
	}
	if c.Bool("step") {
		// --step prompts between steps: the story is rendered as it comes,
		// one connection at a time.
		lc.Parallel = 1
		plain, err := sessionSinkTo(c, c.App.Writer, tty)
		if err != nil {
			return err
		}
		lc.Stepper = newStepper(c.Context, c.App.ErrWriter, os.Stdin)
		return listenWith(c, lc, plain, func() {})
	}
	if lc.Parallel > 1 && !c.Bool("json") {
		inner = &laneRouter{lanes: map[string]event.Sink{}, whole: inner,
			make: func(prefix string) (event.Sink, error) {
				return sessionSinkTo(c, &prefixWriter{prefix: prefix, w: bw}, tty)
			}}
	}
	a := event.NewAsync(inner, bw.Flush)
	defer a.Close()
	return listenWith(c, lc, a, a.Flush)
}

// listenWith plays the server as lc says, its events into sink (flush:
// everything emitted is out): listen, and shell --listen.
func listenWith(c *cli.Context, lc probe.ListenConfig, sink event.Sink, flush func()) error {
	local := lc.Local

	// The port is bound (not listening) while we play it, so no kernel
	// socket can take it; a socket that already has it makes this fail.
	bindAddr := local.Addr()
	if !bindAddr.IsValid() {
		bindAddr = netip.IPv6Unspecified() // dual-stack: both families
	}
	_, unbind, err := probe.ReservePort(bindAddr, local.Port())
	if err != nil {
		return fmt.Errorf("listen: port %d: %w (is a kernel socket using it?)", local.Port(), err)
	}
	defer unbind()

	ifindex, ifname := 0, "any"
	if name := c.String("interface"); name != "" {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return usagef("-I %s: %v", name, err)
		}
		ifindex, ifname = ifc.Index, name
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	l := probe.NewListener(lc)
	live, err := probe.OpenListenLive(l, local.Addr(), ifindex, c.String("interface"))
	if err != nil {
		return err
	}
	closers = append(closers, live.Close)
	env := probe.ListenEnv{SessionEnv: probe.SessionEnv{Env: live.Env(), Stepper: lc.Stepper}}
	var finish func() error
	env.Sink, finish = record(c, live.Matcher, sink, ifname)
	if rec, ok := env.Sink.(*probe.Recorder); ok {
		env.Record, env.Tap = rec.Pair, rec.Tap
	}
	if !c.Bool("no-guard") {
		g, err := guard.Open()
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return fmt.Errorf("the kernel-RST guard needs CAP_NET_ADMIN: %w", err)
			}
			return err
		}
		closers = append(closers, g.Close)
		env.Guard, env.PortGuard = g, g
	}
	next := env.Sink
	env.Lane = func(n int, k capture.Key) event.Sink {
		conn := k.Local.String() + "-" + k.Remote.String()
		return event.SinkFunc(func(e event.Event) { next.Emit(tagConn(e, conn)) })
	}
	if ns := c.String("observe-netns"); ns != "" || local.Addr().IsLoopback() {
		o, closeObs, err := openObserver(c, ns)
		if err != nil {
			return err
		}
		closers = append(closers, closeObs)
		env.Observer = o
	} else if err := noDrops(c); err != nil {
		return err
	}

	env.Ready = func() { fmt.Fprintf(c.App.ErrWriter, "tcpshake: %s\n", probe.ListenNote(lc)) }
	runErr := l.Run(c.Context, env, func(e probe.Ended) {
		sum := e.Session.Summary()
		sum.Outcome = outcome(e.Err, e.Before, e.Reset)
		e.Sink.Emit(sum)
	})
	if n := l.Backlogged(); n > 0 {
		sink.Emit(event.Warning{Message: fmt.Sprintf("%s from other clients were dropped: the backlog (SYNs waiting while a connection is served) was full", plural(int(n), "SYN"))})
	}
	flush()
	if err := finish(); err != nil && runErr == nil {
		runErr = err
	}
	if errors.Is(runErr, probe.ErrNoClient) {
		fmt.Fprintf(c.App.ErrWriter, "tcpshake: listen: %v\n", runErr)
		return exitCode(ExitNone)
	}
	return sessionExit(runErr)
}

// listenConfig reads listen's flags.
func listenConfig(c *cli.Context, local netip.AddrPort) (probe.ListenConfig, error) {
	mode, err := probe.ParseCloseMode(c.String("close"))
	if err != nil {
		return probe.ListenConfig{}, usageErr{err.Error()}
	}
	cfg, _, err := sessionConfig(c, target{})
	if err != nil {
		return probe.ListenConfig{}, err
	}
	cfg.Host = ""
	lc := probe.ListenConfig{Local: local, Session: cfg, Echo: c.Bool("echo"), Close: mode}
	if c.IsSet("reply") {
		if lc.Reply, err = Unescape(c.String("reply")); err != nil {
			return lc, usagef("--reply: %v", err)
		}
	}
	p := numParser{c: c}
	lc.Count = int(p.uint("count", 1, 1<<20))
	lc.Parallel = min(lc.Count, 64)
	if c.IsSet("parallel") {
		lc.Parallel = int(p.uint("parallel", 1, 64))
	}
	if c.String("write") != "" {
		lc.Parallel = 1 // the recorder pairs frames with steps by their numbers, one story at a time
	}
	lc.Wait = p.duration("listen-timeout")
	lc.DropSYN = int(p.uint("drop-syn", 0, 6))
	if c.Bool("no-ack") {
		lc.NoAck = 1
	}
	if lc.SynCookie = c.Bool("syn-cookie"); lc.SynCookie && c.IsSet("isn") {
		return lc, usagef("--syn-cookie makes our ISN the cookie: --isn cannot be given with it")
	}
	if p.err != nil {
		return lc, p.err
	}
	mssSet, iface := c.IsSet("mss"), c.String("interface")
	routes := map[[2]netip.Addr]capture.Route{} // the listener calls Prepare from one goroutine
	lc.Prepare = func(s *probe.SessionConfig) {
		// The route back to the client decides the MTU, and the MSS we
		// offer unless --mss says otherwise. A lookup (netlink) is about
		// 0.3 ms on the way to our SYN-ACK, so each client's is kept.
		k := [2]netip.Addr{s.Remote.Addr(), s.Local.Addr()}
		r, ok := routes[k]
		if !ok {
			var err error
			if r, err = capture.Lookup(s.Remote.Addr(), iface, s.Local.Addr()); err != nil {
				return
			}
			routes[k] = r
		}
		s.MTU = r.MTU
		if !mssSet {
			s.SYN.MSS = routeMSS(r, s.Remote.Addr())
		}
	}
	return lc, nil
}

// tagConn names the connection an event belongs to.
func tagConn(e event.Event, conn string) event.Event {
	e, _ = eventConn(e, &conn)
	return e
}

// eventConn returns the event with its Conn set to *set (nil: unchanged),
// and its Conn.
func eventConn(e event.Event, set *string) (event.Event, string) {
	pick := func(c *string) string {
		if set != nil {
			*c = *set
		}
		return *c
	}
	var conn string
	switch v := e.(type) {
	case event.Start:
		conn = pick(&v.Conn)
		e = v
	case event.Step:
		conn = pick(&v.Conn)
		e = v
	case event.Summary:
		conn = pick(&v.Conn)
		e = v
	case event.Warning:
		conn = pick(&v.Conn)
		e = v
	}
	return e, conn
}

// laneRouter renders each connection's events with a text renderer of its
// own (its header, its steps, its summary), whose lines carry the
// connection's number: connections served at once keep their stories apart.
type laneRouter struct {
	whole event.Sink // events of no connection
	make  func(prefix string) (event.Sink, error)
	lanes map[string]event.Sink
}

func (r *laneRouter) Emit(e event.Event) {
	_, conn := eventConn(e, nil)
	if conn == "" {
		r.whole.Emit(e)
		return
	}
	lane, ok := r.lanes[conn]
	if !ok {
		var err error
		if lane, err = r.make(fmt.Sprintf("%d│ ", len(r.lanes)+1)); err != nil {
			lane = r.whole
		}
		r.lanes[conn] = lane
	}
	lane.Emit(e)
}

// prefixWriter starts every line with prefix.
type prefixWriter struct {
	prefix string
	w      io.Writer
	mid    bool // inside a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	n := len(b)
	var out []byte
	for len(b) > 0 {
		if !p.mid {
			out = append(out, p.prefix...)
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out, b, p.mid = append(out, b...), nil, true
			break
		}
		out, b, p.mid = append(out, b[:i+1]...), b[i+1:], false
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}
