package app

import (
	"github.com/urfave/cli/v2"

	"tcpshake/craft"
	"tcpshake/probe"
)

// sessionConfig reads the session flags (sessionFlags) into the config every
// session of the command starts from, and our source port (--sport; 0: a
// free one). openWorld fills in what the route decides: the addresses, the
// MTU and, unless --mss is given, the MSS.
func sessionConfig(c *cli.Context, tg target) (probe.SessionConfig, uint16, error) {
	p := numParser{c: c}
	cfg := probe.SessionConfig{
		Host:     tg.host,
		Window:   uint16(p.uint("window", 0, 65535)),
		TTL:      uint8(p.uint("ttl", 1, 255)),
		SYN:      synOptions(c, &p),
		RTO:      p.duration("rto"),
		MaxRTO:   p.duration("rto-max"),
		Retries:  int(p.uint("retries", 1, 30)),
		TimeWait: p.durationOrZero("time-wait"),
		Timeout:  p.duration("timeout"),
		ECN:      c.Bool("ecn"),
	}
	if cfg.TimeWait == 0 {
		cfg.TimeWait = probe.NoTimeWait // --time-wait 0: skip TIME-WAIT
	}
	if c.IsSet("isn") {
		isn := craft.Seq(p.uint("isn", 0, 1<<32-1))
		cfg.ISN = &isn
	}
	sport := uint16(p.uint("sport", 1, 65535))
	if p.err != nil {
		return probe.SessionConfig{}, 0, p.err
	}
	return cfg, sport, nil
}
