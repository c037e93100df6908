package app

import (
	"context"
	"errors"

	"github.com/urfave/cli/v2"

	"tcpshake/probe"
)

// profileFlags are `rst --profile` and its bounds; rst's command appends
// them to its flags.
func profileFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "profile", Usage: "measure the peer's TCP stack instead of running the scenarios: its SYN-ACK retransmission schedule, challenge-ACK limit, SYN-ACK options, ISN quality (RFC 6528) and, with --profile-time-wait, its TIME-WAIT (docs/profile.md)"},
		&cli.StringFlag{Name: "profile-only", Usage: "measure only `NAME[,NAME…]`: options, isn, challenge-ack, synack-schedule, time-wait"},
		&cli.StringFlag{Name: "profile-isn", Value: "8", Usage: "`N` connections from one source port and N from as many different ones, for the ISN verdict (3-64)"},
		&cli.StringFlag{Name: "profile-synack-wait", Value: "20s", Usage: "how long to record the SYN-ACK's retransmissions after the first, `DURATION`"},
		&cli.StringFlag{Name: "profile-synack-retrans", Usage: "stop recording after `N` SYN-ACK retransmissions (default: until --profile-synack-wait)"},
		&cli.StringFlag{Name: "profile-burst", Value: "25", Usage: "`N` in-window RSTs sent back to back for the challenge-ACK limit (then as many paced, one every 100 ms, at most 20)"},
		&cli.BoolFlag{Name: "profile-time-wait", Usage: "also measure the peer's TIME-WAIT: it takes minutes (Linux 60 s, RFC 9293 240 s)"},
		&cli.StringFlag{Name: "profile-time-wait-port", Value: "80", Usage: "a `PORT` whose server answers and closes first (an HTTP/1.0 request is sent), for --profile-time-wait"},
		&cli.StringFlag{Name: "profile-time-wait-max", Value: "5m", Usage: "the most to wait for TIME-WAIT to end, `DURATION`"},
		&cli.StringFlag{Name: "profile-time-wait-every", Value: "1s", Usage: "how often to probe the TIME-WAIT 4-tuple, `DURATION`: the measurement's resolution"},
	}
}

// runProfile is `rst HOST:PORT --profile`: it measures the peer's stack and
// reports one profile event per measurement. Exit status 0 when every
// measurement conforms or is permitted, 1 when one deviates or could not
// decide, 2 on errors.
func runProfile(c *cli.Context) error {
	only, err := probe.ParseProfileOnly(c.String("profile-only"))
	if err != nil {
		return usageErr{err.Error()}
	}
	p := numParser{c: c}
	cfg := probe.ProfileConfig{
		Only:          only,
		ISNCount:      int(p.uint("profile-isn", 3, 64)),
		SynAckWait:    p.duration("profile-synack-wait"),
		SynAckRetrans: int(p.uint("profile-synack-retrans", 1, 100)),
		Burst:         int(p.uint("profile-burst", 1, 1000)),
		TimeWait:      c.Bool("profile-time-wait"),
		TimeWaitPort:  uint16(p.uint("profile-time-wait-port", 1, 65535)),
		TimeWaitMax:   p.duration("profile-time-wait-max"),
		TimeWaitEvery: p.duration("profile-time-wait-every"),
	}
	if c.IsSet("wait") {
		cfg.Wait = p.duration("wait")
	}
	if cfg.Burst < 20 {
		cfg.Paced = cfg.Burst
	}
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
	cfg.Host = w.target.host
	cfg.Session = w.cfg
	res, err := probe.RunProfile(c.Context, cfg, w.env)
	switch {
	case errors.Is(err, context.Canceled):
		return exitCode(ExitFailure) // interrupted: the events said so
	case err != nil:
		return err
	}
	for _, r := range res {
		if r.Verdict != "conforms" && r.Verdict != "permitted" {
			return exitCode(ExitNone)
		}
	}
	return nil
}
