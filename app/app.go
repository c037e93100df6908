// Package app builds tcpshake's command-line interface: it turns flags into
// the plain option structs of packages probe and lab, wires the live sockets
// and the chosen renderer, and maps failures to exit codes.
package app

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes, documented in docs/cli.md.
const (
	ExitOK      = 0 // probe: a port was open; other commands: success
	ExitNone    = 1 // probe: no port open
	ExitFailure = 2 // usage or runtime error
)

// New returns the application writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	a := &cli.App{
		Name:  "tcpshake",
		Usage: "craft TCP segments, watch a real peer answer, and learn the connection life cycle",
		Description: "tcpshake sends hand-made TCP segments from raw sockets and explains every answer:\n" +
			"whether a port is open, closed or filtered and why, with round-trip times taken from\n" +
			"kernel timestamps. `tcpshake lab demo` shows it all in a private two-host lab.",
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		Commands: []*cli.Command{
			probeCommand(),
			handshakeCommand(),
			shellCommand(),
			rstCommand(),
			labCommand(),
			analyzeCommand(),
		},
		// Errors are printed once, by Main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
	}
	oneLineUsage(a.Commands)
	return a
}

// oneLineUsage makes every command report flag errors as a usage error, one
// line printed by Main, instead of urfave/cli's "Incorrect Usage" and the
// whole help page.
func oneLineUsage(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		oneLineUsage(c.Subcommands)
	}
}

// usageErr is an error in what the user typed: exit code 2, one line.
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageErr{fmt.Sprintf(format, a...)} }

func usageError(_ *cli.Context, err error, _ bool) error { return usageErr{err.Error()} }

// exitCode carries a command's outcome that is not an error (probe: no port
// open).
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// Main runs the application with args and returns the process exit code,
// printing any error as one line on stderr.
func Main(app *cli.App, run func([]string) error, args []string) int {
	err := run(Permute(app, args))
	if err == nil {
		return ExitOK
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	fmt.Fprintf(app.ErrWriter, "tcpshake: %s\n", Friendly(err))
	return ExitFailure
}

// Friendly turns errors the user can fix into advice.
func Friendly(err error) string {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Sprintf("%v; run as root, or grant the capabilities once: sudo setcap cap_net_raw,cap_net_admin+ep $(command -v tcpshake)", err)
	}
	return err.Error()
}
