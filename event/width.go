package event

import (
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"
)

// TerminalWidth is the number of columns output to w should fit in, for
// Text.Width: columns (the COLUMNS environment variable) when it holds a
// positive number, as Python's shutil.get_terminal_size and GNU ls take it;
// else the width of the terminal w is (TIOCGWINSZ on its descriptor); else
// -1, no limit: w is a pipe or a file, and every line stays whole.
func TerminalWidth(w io.Writer, columns string) int {
	if n, err := strconv.Atoi(strings.TrimSpace(columns)); err == nil && n > 0 {
		return n
	}
	f, ok := w.(*os.File)
	if !ok {
		return -1
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil || cols <= 0 {
		return -1
	}
	return cols
}
