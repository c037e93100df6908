package app

import (
	"os"
	"syscall"
)

// Signals are the signals that interrupt a command, all in the same way:
// main cancels the command's context on the first of them (the session then
// resets the peer, restores the terminal and exits with status 2), and keeps
// catching them until it exits, so that none ends the process first.
//
//   - SIGINT (Ctrl-C) and SIGTERM (kill): the user or a supervisor stops us.
//   - SIGHUP: the terminal was closed.
//   - SIGQUIT (Ctrl-\): caught, so the Go runtime neither dumps its
//     goroutines nor exits with the terminal still in raw mode.
//   - SIGPIPE: standard output is a pipe whose reader went away
//     (`tcpshake … | head -1`). Caught, a write to it fails with EPIPE
//     instead of killing the process before it could reset the peer.
func Signals() []os.Signal {
	return []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE}
}
