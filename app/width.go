package app

import (
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"tcpshake/event"
)

// outputWidth is how many columns the command's text output may use:
// $COLUMNS, else the terminal's width, else no limit (-1: a pipe or file).
func outputWidth(c *cli.Context) int {
	return event.TerminalWidth(c.App.Writer, os.Getenv("COLUMNS"))
}

// columnsWriter is a writer that tells event.Text how wide its lines may be,
// for renderers that build their Text themselves (analyze's story).
type columnsWriter struct {
	io.Writer
	cols int
}

// Columns is the width, as event.Text asks for it.
func (w columnsWriter) Columns() int { return w.cols }
