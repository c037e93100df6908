package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/capture"
	"tcpshake/event"
	"tcpshake/probe"
	"tcpshake/probe/guard"
)

// verifyFlags are probe's --verify, --hello, --verify-wait and --verify-max.
func verifyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "verify", Usage: "complete the handshake on each open port (our kernel's RSTs held back by the guard), send --hello if given, show what comes back (text or hex), then reset; calls out a SYN proxy or tarpit that answers SYN-ACK for every port (docs/scan.md)"},
		&cli.StringFlag{Name: "hello", Usage: "with --verify (implied): send `TEXT` after the handshake (escapes \\r \\n \\t \\xNN, e.g. 'GET / HTTP/1.0\\r\\n\\r\\n')"},
		&cli.StringFlag{Name: "verify-wait", Value: probe.DefaultVerifyWait.String(), Usage: "with --verify: wait at most `DURATION` for an answer after the handshake (less when the peer closes, or its data stops for 300ms)"},
		&cli.StringFlag{Name: "verify-max", Value: fmt.Sprint(probe.DefaultVerifyMax), Usage: "with --verify: verify at most `N` open ports (4 at a time); the others are counted, not verified"},
	}
}

// verifyConfig reads the verify flags; ok is false without --verify or
// --hello.
func verifyConfig(c *cli.Context) (cfg probe.VerifyConfig, ok bool, err error) {
	if !c.Bool("verify") && !c.IsSet("hello") {
		for _, f := range []string{"verify-wait", "verify-max"} {
			if c.IsSet(f) {
				return cfg, false, usagef("--%s goes with --verify", f)
			}
		}
		return cfg, false, nil
	}
	if c.IsSet("flags") && !isPlainSYN(c.String("flags")) {
		return cfg, false, usagef("--verify completes handshakes on the ports a SYN found open: it goes with SYN probes only")
	}
	if c.IsSet("hello") {
		if cfg.Hello, err = Unescape(c.String("hello")); err != nil {
			return cfg, false, usagef("--hello: %v", err)
		}
	}
	p := numParser{c: c}
	cfg.Wait = p.duration("verify-wait")
	cfg.Max = int(p.uint("verify-max", 1, 1024))
	cfg.Quiet, cfg.Parallel, cfg.Keep = probe.DefaultVerifyQuiet, probe.DefaultVerifyParallel, probe.DefaultVerifyKeep
	return cfg, true, p.err
}

// verifyWorld dials verification sessions: one capture per host, one guard
// for all, a reserved source port per session.
type verifyWorld struct {
	iface string
	src   netip.Addr
	wait  time.Duration
	guard *guard.Guard

	mu     sync.Mutex
	lives  map[netip.Addr]*probe.Live
	routes map[netip.Addr]capture.Route
}

func openVerifyWorld(iface string, src netip.Addr, wait time.Duration) (*verifyWorld, error) {
	g, err := guard.Open()
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("--verify: the kernel-RST guard needs CAP_NET_ADMIN: %w", err)
		}
		return nil, fmt.Errorf("--verify: %w", err)
	}
	return &verifyWorld{iface: iface, src: src, wait: wait, guard: g,
		lives: map[netip.Addr]*probe.Live{}, routes: map[netip.Addr]capture.Route{}}, nil
}

// live is the capture for host, opened the first time it is asked for.
func (w *verifyWorld) live(host netip.Addr) (*probe.Live, capture.Route, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l, ok := w.lives[host]; ok {
		return l, w.routes[host], nil
	}
	var src netip.Addr
	if w.src.IsValid() && w.src.Is4() == host.Is4() {
		src = w.src
	}
	route, err := lookup(host, w.iface, src)
	if err != nil {
		return nil, route, err
	}
	l, err := probe.OpenLive(host, route, w.iface)
	if err != nil {
		return nil, route, err
	}
	w.lives[host], w.routes[host] = l, route
	return l, route, nil
}

// dial implements probe.VerifyDial.
func (w *verifyWorld) dial(dst netip.AddrPort, sink event.Sink) (*probe.Session, func(), error) {
	l, route, err := w.live(dst.Addr())
	if err != nil {
		return nil, nil, err
	}
	lport, release, err := probe.ReservePort(route.Src, 0)
	if err != nil {
		return nil, nil, err
	}
	env := probe.SessionEnv{Env: l.Env(), Guard: w.guard}
	env.Sender = routeSender{env.Sender}
	env.Sink = sink
	cfg := probe.SessionConfig{
		Host: dst.Addr().String(), Local: netip.AddrPortFrom(route.Src, lport), Remote: dst,
		Window: 64240, TTL: 64, MTU: route.MTU,
		RTO: 500 * time.Millisecond, MaxRTO: 2 * time.Second, Retries: 2,
		TimeWait: probe.NoTimeWait, Timeout: w.wait,
	}
	cfg.SYN.MSS, cfg.SYN.WScale = routeMSS(route, dst.Addr()), -1
	return probe.NewSession(cfg, env), func() { release() }, nil
}

func (w *verifyWorld) Close() error {
	var errs []error
	for _, l := range w.lives {
		errs = append(errs, l.Close())
	}
	return errors.Join(append(errs, w.guard.Close())...)
}

// runVerify verifies the open ports of hosts and reports it: JSON events
// with js, else text to out.
func runVerify(ctx context.Context, cfg probe.VerifyConfig, hosts []probe.VerifyHost, iface string, src netip.Addr,
	js *event.JSON, out io.Writer) error {
	open := 0
	for _, h := range hosts {
		open += len(h.Open)
	}
	if open == 0 {
		if js == nil {
			fmt.Fprintln(out, "\nverify: no open port to verify")
		}
		return nil
	}
	w, err := openVerifyWorld(iface, src, cfg.Wait)
	if err != nil {
		return err
	}
	rep := probe.Verify(ctx, cfg, hosts, w.dial)
	err = w.Close()
	if js != nil {
		for _, v := range rep.Ports {
			js.Emit(v)
		}
		for _, n := range verifyNotes(cfg, rep) {
			js.Emit(event.Warning{Message: n})
		}
	} else {
		printVerify(out, cfg, rep, len(hosts) > 1)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted while verifying (%v): the ports verified so far are above", context.Cause(ctx))
	}
	return err
}

// verifyNotes are the lines after the ports: what was not verified, and
// each host's evidence.
func verifyNotes(cfg probe.VerifyConfig, rep probe.VerifyReport) []string {
	var notes []string
	if rep.NotVerified > 0 {
		notes = append(notes, fmt.Sprintf("%s not verified: --verify-max %d", plural(rep.NotVerified, "more open port"), cfg.Max))
	}
	return append(notes, rep.Notes...)
}

// printVerify is the text of a verification: one line per port (its
// address too when several hosts were probed), the evidence under it.
func printVerify(w io.Writer, cfg probe.VerifyConfig, rep probe.VerifyReport, addrs bool) {
	sent := "nothing sent"
	if len(cfg.Hello) > 0 {
		sent = "then " + probe.RenderBytes(cfg.Hello, 60)
	}
	fmt.Fprintf(w, "\nVERIFY: the handshake on %s, %s, up to %v for the answer; our RST ends each\n",
		plural(len(rep.Ports), "open port"), sent, cfg.Wait)
	ports := slices.Clone(rep.Ports)
	slices.SortStableFunc(ports, func(a, b event.Verify) int { return int(a.Port) - int(b.Port) })
	width := 9
	name := func(v event.Verify) string {
		if addrs {
			return netip.AddrPortFrom(netip.MustParseAddr(v.Addr), v.Port).String()
		}
		return fmt.Sprintf("%d/tcp", v.Port)
	}
	for _, v := range ports {
		width = max(width, len(name(v))+1)
	}
	fmt.Fprintf(w, "%-*s %-9s %s\n", width, "PORT", "VERDICT", "ANSWER")
	for _, v := range ports {
		fmt.Fprintf(w, "%-*s %-9s %s\n", width, name(v), verdictWord(v.Verdict), answerText(v))
		for _, e := range v.Evidence {
			fmt.Fprintf(w, "%*s evidence: %s\n", width, "", e)
		}
	}
	for _, n := range verifyNotes(cfg, rep) {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// verdictWord is the verdict column: "open?" for a SYN proxy.
func verdictWord(v event.VerifyVerdict) string {
	if v == event.VerifySYNProxy {
		return "open?"
	}
	return string(v)
}

// answerText is the answer column: the bytes and how the peer ended.
func answerText(v event.Verify) string {
	if v.Bytes == 0 {
		return v.Why
	}
	var parts []string
	parts = append(parts, plural(v.Bytes, "byte"))
	switch {
	case v.PeerReset:
		parts = append(parts, "then the peer reset")
	case v.PeerClosed:
		parts = append(parts, "then the peer closed")
	}
	s := strings.Join(parts, ", ") + ": " + probe.RenderBytes(v.Data, 72)
	if v.Why != "the service answered" {
		s += " (" + v.Why + ")"
	}
	return s
}

// probeVerifyHosts is what a single probe found, for --verify.
func probeVerifyHosts(cfg probe.Config, out probe.Outcome) []probe.VerifyHost {
	h := probe.VerifyHost{Host: cfg.Host, Addr: cfg.Addr, Probed: len(cfg.Ports)}
	for _, r := range out.Results {
		if r.State == "open" {
			h.Open = append(h.Open, r)
		}
	}
	return []probe.VerifyHost{h}
}

// scanVerifyHosts is what a scan found, for --verify.
func scanVerifyHosts(out probe.ScanOutcome) []probe.VerifyHost {
	open := map[string][]event.Result{}
	for _, r := range out.Results {
		if r.State == "open" {
			open[r.Addr] = append(open[r.Addr], r)
		}
	}
	var hosts []probe.VerifyHost
	for _, h := range out.Hosts {
		probed := h.Open + h.Closed + h.Filtered + h.Undecided
		if probed == 0 {
			continue
		}
		rs := open[h.Addr.String()]
		slices.SortFunc(rs, func(a, b event.Result) int { return int(a.Port) - int(b.Port) })
		hosts = append(hosts, probe.VerifyHost{Host: h.Name, Addr: h.Addr, Probed: probed, Open: rs})
	}
	return hosts
}

// verifyJSON is the JSON writer of a single probe's verification (nil for
// text).
func verifyJSON(c *cli.Context) *event.JSON {
	if c.Bool("json") {
		return event.NewJSON(c.App.Writer)
	}
	return nil
}
