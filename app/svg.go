package app

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"tcpshake/event"
	"tcpshake/probe"
)

// svgFlag is --svg, on the commands that tell one connection.
func svgFlag() cli.Flag {
	return &cli.StringFlag{Name: "svg", Usage: "also draw the connection as an SVG sequence diagram in `FILE` (two lifelines, an arrow per segment with its flags and seq/ack, the states as they change, the arithmetic under each arrow)"}
}

// withSVG runs run with its events also drawn as a picture, written to
// --svg FILE once run has returned (whatever it returned: a refused or reset
// connection is a story too). Without --svg it is run(sink).
func withSVG(c *cli.Context, sink event.Sink, run func(event.Sink) error) error {
	path := c.String("svg")
	if path == "" {
		return run(sink)
	}
	pic := &event.SVG{}
	err := run(event.Tee(sink, pic))
	if pic.Steps() == 0 && err != nil {
		return err // nothing happened to draw (e.g. no route): leave no empty picture
	}
	werr := writeSVG(path, pic)
	var code exitCode
	if werr != nil && (err == nil || errors.As(err, &code)) {
		return werr
	}
	return err
}

func writeSVG(path string, pic *event.SVG) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	if _, err := pic.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("--svg %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--svg %s: %w", path, err)
	}
	return nil
}

// runSessionSVG is runSession with --svg.
func runSessionSVG(c *cli.Context, cmd string, sink event.Sink, step probe.Stepper,
	body func(ctx context.Context, s *probe.Session) error) error {
	return withSVG(c, sink, func(sink event.Sink) error { return runSession(c, cmd, sink, step, body) })
}
