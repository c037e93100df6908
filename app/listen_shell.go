package app

import (
	"context"

	"github.com/urfave/cli/v2"

	"tcpshake/event"
	"tcpshake/probe"
)

// shellListen is `shell --listen [ADDR:]PORT`: the server's side by hand.
// It waits for one client's SYN like listen (the port guarded, the SYN shown,
// our end in SYN-RECEIVED), then hands the connection to the shell's body:
// `synack` answers the SYN, and the other commands work as for a client.
func shellListen(c *cli.Context, sink event.Sink, body func(ctx context.Context, s *probe.Session) error) error {
	if c.NArg() != 0 {
		return usagef("shell --listen plays the server: no HOST:PORT (got %s)", plural(c.NArg(), "argument"))
	}
	local, err := parseListenAddr(c.String("listen"))
	if err != nil {
		return usagef("--listen: %v", err)
	}
	lc, err := listenConfig(c, local)
	if err != nil {
		return err
	}
	lc.Count, lc.Parallel, lc.Manual = 1, 1, body
	return listenWith(c, lc, sink, func() {})
}
