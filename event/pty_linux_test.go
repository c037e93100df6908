package event

import (
	"os"
	"testing"

	"tcpshake/internal/ptytest"
)

// onPTY writes through a real pseudo-terminal of cols columns: render gets
// the terminal's side (a *os.File, as stdout is), and what the terminal
// received is returned.
func onPTY(t *testing.T, cols int, render func(tty *os.File)) []byte {
	t.Helper()
	m, s := ptytest.Open(t, cols)
	done := ptytest.ReadAll(m)
	render(s)
	s.Close()
	return <-done
}
