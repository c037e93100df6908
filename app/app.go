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

	"tcpshake/capture"
)

// Exit codes, documented in docs/cli.md.
const (
	ExitOK      = 0 // probe: a port was open; other commands: success
	ExitNone    = 1 // probe: no port open
	ExitFailure = 2 // usage or runtime error, an interrupt, or no route to the peer
)

// New returns the application writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	a := &cli.App{
		Name:  "tcpshake",
		Usage: "craft TCP segments, watch a real peer answer, and learn the connection life cycle",
		Description: "tcpshake sends hand-made TCP segments from raw sockets and explains every answer:\n" +
			"whether a port is open, closed or filtered and why, with round-trip times taken from\n" +
			"kernel timestamps. `tcpshake lab demo` shows it all in a private two-host lab.",
		Writer:    stdout,
		ErrWriter: stderr,
		// Our own help command (helpCommand) also takes subcommands and
		// answers an unknown name with one line.
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "version", Usage: "print the version and VCS revision this binary was built from"},
			// urfave/cli adds --help only when it adds its own help
			// command; ours (helpCommand) replaces that, so the flag is
			// named here.
			cli.HelpFlag,
		},
		Action: rootAction,
		Commands: []*cli.Command{
			probeCommand(),
			handshakeCommand(),
			listenCommand(),
			shellCommand(),
			rstCommand(),
			labCommand(),
			analyzeCommand(),
			watchCommand(),
			completionCommand(),
			manCommand(),
			helpCommand(),
		},
		// Errors are printed once, by Main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
	}
	oneLineUsage(a.Commands)
	withWriteCheck(a.Commands)
	withLabPrivileges(findCommand(a.Commands, "lab"))
	return a
}

// labSetcap is what the lab needs without root, measured as an
// unprivileged user with exactly these capabilities (ambient, and as file
// capabilities): namespaces under /run/netns and their mounts
// (CAP_SYS_ADMIN), writing root's /run and the namespaces' sysctls
// (CAP_DAC_OVERRIDE), the veth pair, routes and nftables (CAP_NET_ADMIN),
// raw sockets (CAP_NET_RAW) and the server's ports below 1024
// (CAP_NET_BIND_SERVICE). CAP_SYS_ADMIN with CAP_DAC_OVERRIDE is as good as
// root, which the advice says.
const labSetcap = "cap_net_raw,cap_net_admin,cap_sys_admin,cap_dac_override,cap_net_bind_service"

// withLabPrivileges makes a refused lab command name what the lab needs:
// CAP_NET_RAW and CAP_NET_ADMIN, the usual advice, are not enough.
func withLabPrivileges(labCmd *cli.Command) {
	if labCmd == nil {
		return
	}
	for _, c := range labCmd.Subcommands {
		action, name := c.Action, c.Name
		if action == nil {
			continue
		}
		c.Action = func(ctx *cli.Context) error {
			err := action(ctx)
			var ce *capErr
			var re *capture.RouteError
			if err == nil || !errors.Is(err, os.ErrPermission) || errors.As(err, &ce) || errors.As(err, &re) {
				return err
			}
			return &capErr{
				what:   "lab " + name + " (network namespaces, their mounts under /run/netns, sysctls and a server on ports below 1024)",
				cap:    "CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE (together as good as root)",
				setcap: labSetcap,
				err:    err,
			}
		}
	}
}

// oneLineUsage makes every command report flag errors as a usage error, one
// line printed by Main, instead of urfave/cli's "Incorrect Usage" and the
// whole help page.
func oneLineUsage(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		// Without an Action urfave/cli answers an unknown subcommand
		// with "No help topic for '…'".
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = subcommandAction
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
	var re *capture.RouteError
	var ce *capErr
	switch {
	case errors.As(err, &re):
		// Not a privilege: a firewall's or a prohibit route's EPERM and
		// EACCES would otherwise draw the capability advice.
		return err.Error()
	case errors.As(err, &ce):
		return fmt.Sprintf("%v; run as root, or grant the capabilities once: sudo setcap %s+ep $(command -v tcpshake)", err, ce.setcap)
	case errors.Is(err, os.ErrPermission):
		return fmt.Sprintf("%v; run as root, or grant the capabilities once: sudo setcap cap_net_raw,cap_net_admin+ep $(command -v tcpshake)", err)
	}
	return err.Error()
}

// capErr is an operation refused because the process lacks a capability
// other than the usual CAP_NET_RAW and CAP_NET_ADMIN; its message names the
// capability.
type capErr struct {
	what   string // the operation, e.g. "--observe-netns srv: entering another network namespace"
	cap    string // e.g. "CAP_SYS_ADMIN"
	setcap string // the capability list that grants it, for setcap(8)
	err    error
}

func (e *capErr) Error() string { return fmt.Sprintf("%s needs %s: %v", e.what, e.cap, e.err) }

func (e *capErr) Unwrap() error { return e.err }

// observeError names CAP_SYS_ADMIN when opening the observer for network
// namespace ns was refused: setns(2) into another network namespace needs
// it, CAP_NET_ADMIN is not enough.
func observeError(ns string, err error) error {
	if ns != "" && errors.Is(err, os.ErrPermission) {
		return &capErr{
			what:   fmt.Sprintf("--observe-netns %s: reading the peer's sockets in another network namespace (setns)", ns),
			cap:    "CAP_SYS_ADMIN",
			setcap: "cap_net_raw,cap_net_admin,cap_sys_admin",
			err:    err,
		}
	}
	return usagef("--observe-netns: %v", err)
}
