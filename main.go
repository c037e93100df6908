// Command tcpshake crafts TCP segments, sends them from raw sockets and shows
// how a real peer answers: port probes, handshakes by hand, and a lab to try
// them in. See README.md and docs/.
package main

import (
	"context"
	"os"
	"os/signal"

	"tcpshake/app"
)

func main() {
	// Every signal of app.Signals cancels ctx; context.Cause(ctx) names it.
	ctx, stop := signal.NotifyContext(context.Background(), app.Signals()...)
	a := app.New(os.Stdout, os.Stderr)
	code := app.Main(a, func(args []string) error { return a.RunContext(ctx, args) }, os.Args)
	stop()
	os.Exit(code)
}
