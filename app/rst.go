package app

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/probe"
)

func rstCommand() *cli.Command {
	return &cli.Command{
		Name:      "rst",
		Usage:     "check how a host treats resets and unexpected segments, with verdicts from the words of RFC 9293 and RFC 5961",
		ArgsUsage: "HOST:PORT",
		Description: "Each scenario opens a fresh connection to PORT (a listening port) with the handshake machinery,\n" +
			"sends its segment(s), and tells the rule it tests (quoted from the RFC, with its strength: MUST,\n" +
			"SHOULD or MAY), what it sent and why, what came back (ICMP errors too), the peer's state before and\n" +
			"after (inferred, and observed with --observe-netns or for local peers), a SYN cookie when the peer\n" +
			"answered with one, and a verdict: conforms, deviates (with the level broken, MUST or SHOULD, and the\n" +
			"field that differs), permitted (a behaviour the RFC's text allows) or inconclusive (with what was\n" +
			"missing). No scenario leaves a connection open on the peer.\n" +
			"Scenarios: closed-port, ack-to-listener, exact-rst, in-window-rst, out-of-window-rst, syn-in-established,\n" +
			"rst-in-syn-received, data-after-reset, ack-of-unsent-data (on --echo-port, or with --drops), challenge-ack-burst,\n" +
			"fin-in-syn-received. --profile measures the peer's stack instead (see docs/rst.md).\n" +
			"Exit status: 0 when all conform or are permitted, 1 when any deviates or is inconclusive, 2 on errors.\n" +
			"See docs/rst.md for the RFC text behind each verdict.",
		Flags: append(append(sessionFlags(),
			&cli.StringFlag{Name: "scenario", Value: "all", Usage: "`NAME[,NAME…]` or all"},
			&cli.StringFlag{Name: "closed-port", Usage: "a closed `PORT` for closed-port (default: a random high port, which must answer RST)"},
			&cli.StringFlag{Name: "wait", Value: "300ms", Usage: "how long to wait for the peer's answer, `DURATION`"},
			&cli.StringFlag{Name: "echo-port", Usage: "an echo service's `PORT` for ack-of-unsent-data, which checks that the test segment's data and window were dropped (default: PORT)"},
		), profileFlags()...),
		Action: runRST,
	}
}

func runRST(c *cli.Context) error {
	if c.Bool("profile") {
		return runProfile(c)
	}
	names, err := probe.ParseScenarios(c.String("scenario"))
	if err != nil {
		return usageErr{err.Error()}
	}
	p := numParser{c: c}
	wait := p.duration("wait")
	closed := uint16(p.uint("closed-port", 1, 65535))
	echo := uint16(p.uint("echo-port", 1, 65535))
	if p.err != nil {
		return p.err
	}
	sink, err := sessionSink(c)
	if err != nil {
		return err
	}
	tap := probe.NewRSTTap(sink)
	w, err := openWorld(c, "rst", tap, nil)
	if err != nil {
		return err
	}
	defer w.close()
	port := w.cfg.Remote.Port()
	if closed == 0 {
		closed = uint16(40000 + rand.IntN(20000))
		if closed == port {
			closed++
		}
	}
	dial := func(pt uint16) (*probe.Session, func(), error) {
		s, release, err := w.conn(pt)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { release() }, nil
	}
	cfg := probe.RSTConfig{Port: port, ClosedPort: closed, EchoPort: echo, Wait: wait, Tap: tap, Drops: c.Bool("drops")}
	if w.env.Observer == nil {
		// Without the peer's kernel in view, SYN cookies show in the options
		// of two SYN-ACKs (probe.CookieFromOptions).
		cfg.CheckCookies = func(ctx context.Context) (probe.CookieEvidence, error) {
			return probe.CheckCookies(ctx, probe.ProfileConfig{Session: w.cfg, Wait: max(wait, time.Second)}, w.env)
		}
	}
	res, err := probe.RunRST(c.Context, names, cfg, dial, sink, time.Now)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Verdict != probe.Conforms && r.Verdict != probe.Permitted {
			return exitCode(ExitNone)
		}
	}
	return nil
}
