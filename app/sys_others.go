//go:build !linux

package app

import (
	"io"
)

// isTerminal is only implemented on Linux.
func isTerminal(w io.Writer) bool { return false }
