package app

import (
	"math/rand/v2"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/probe"
)

func rstCommand() *cli.Command {
	return &cli.Command{
		Name:      "rst",
		Usage:     "check how a host treats resets and unexpected segments, with verdicts against RFC 9293 and RFC 5961",
		ArgsUsage: "HOST:PORT",
		Description: "Each scenario opens a fresh connection to PORT (a listening port) with the handshake machinery,\n" +
			"sends its segment(s), and tells what it sent and why, what came back, what the RFCs say should\n" +
			"happen, the peer's state before and after (inferred, and observed with --observe-netns or for local\n" +
			"peers), and a verdict: conforms, deviates (with the difference) or inconclusive (with why).\n" +
			"Scenarios: closed-port, ack-to-listener, exact-rst, in-window-rst, out-of-window-rst, syn-in-established,\n" +
			"rst-in-syn-received, data-after-reset, ack-of-unsent-data, challenge-ack-burst, fin-in-syn-received.\n" +
			"Exit status: 0 when all conform, 1 when any deviates or is inconclusive, 2 on errors.\n" +
			"See docs/rst.md for the RFC text behind each verdict.",
		Flags: append(sessionFlags(),
			&cli.StringFlag{Name: "scenario", Value: "all", Usage: "`NAME[,NAME…]` or all"},
			&cli.StringFlag{Name: "closed-port", Usage: "a closed `PORT` for closed-port (default: a random high port, which must answer RST)"},
			&cli.StringFlag{Name: "wait", Value: "300ms", Usage: "how long to wait for the peer's answer, `DURATION`"},
		),
		Action: runRST,
	}
}

func runRST(c *cli.Context) error {
	names, err := probe.ParseScenarios(c.String("scenario"))
	if err != nil {
		return usageErr{err.Error()}
	}
	p := numParser{c: c}
	wait := p.duration("wait")
	closed := uint16(p.uint("closed-port", 1, 65535))
	if p.err != nil {
		return p.err
	}
	sink, err := sessionSink(c)
	if err != nil {
		return err
	}
	w, err := openWorld(c, "rst", sink, nil)
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
	cfg := probe.RSTConfig{Port: port, ClosedPort: closed, Wait: wait}
	res, err := probe.RunRST(c.Context, names, cfg, dial, sink, time.Now)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Verdict != probe.Conforms {
			return exitCode(ExitNone)
		}
	}
	return nil
}
