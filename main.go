// Command tcpshake crafts TCP segments, sends them from raw sockets and shows
// how a real peer answers: port probes, handshakes by hand, and a lab to try
// them in. See README.md and docs/.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"tcpshake/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := app.New(os.Stdout, os.Stderr)
	code := app.Main(a, func(args []string) error { return a.RunContext(ctx, args) }, os.Args)
	stop()
	os.Exit(code)
}
