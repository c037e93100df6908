package event

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestViewsFitTheTerminal draws one session in both views on real
// pseudo-terminals of 80, 100, 120 and 200 columns, the width read from the
// terminal as the commands read it, and compares with the goldens. Beyond
// the goldens it checks what the views promise: no line is wider than the
// terminal, every word of every explanation is whole, and the columns stay
// where they are for any t (the fixture runs past 10 s, 100 s and a day).
func TestViewsFitTheTerminal(t *testing.T) {
	for _, view := range []string{ViewLadder, ViewList} {
		for _, cols := range []int{80, 100, 120, 200} {
			t.Run(fmt.Sprintf("%s_%d", view, cols), func(t *testing.T) {
				got := onPTY(t, cols, func(tty *os.File) {
					w := TerminalWidth(tty, "")
					if w != cols {
						t.Errorf("TerminalWidth of a %d-column pty = %d", cols, w)
					}
					txt := &Text{W: tty, View: view, Width: w}
					for _, e := range sessionFixture() {
						txt.Emit(e)
					}
				})
				golden(t, fmt.Sprintf("%s_%d.golden", view, cols), got)
				checkFits(t, string(got), cols)
				checkWords(t, string(got))
				if view == ViewLadder {
					checkLadderColumns(t, string(got))
				} else {
					checkListColumns(t, string(got))
				}
				var col bytes.Buffer
				txt := &Text{W: &col, View: view, Width: cols, Color: true}
				for _, e := range sessionFixture() {
					txt.Emit(e)
				}
				if plain := ansi.ReplaceAllString(col.String(), ""); plain != string(got) {
					t.Errorf("with colours the layout differs:\n%s", cmp.Diff(string(got), plain))
				}
			})
		}
	}
}

// checkWords: every word of every explanation and label is in the output
// whole (wrapping cut no word).
func checkWords(t *testing.T, out string) {
	t.Helper()
	have := map[string]bool{}
	for _, w := range strings.Fields(out) {
		have[w] = true
	}
	for _, e := range sessionFixture() {
		s, ok := e.(Step)
		if !ok {
			continue
		}
		texts := s.Explain
		if s.Flags != "" {
			texts = append(texts, label(s))
		}
		for _, x := range texts {
			for _, w := range strings.Fields(x) {
				if !have[w] {
					t.Errorf("the word %q (of %q) is not whole in the output", w, x)
				}
			}
		}
	}
}

// checkLadderColumns: every arrow starts and ends in the same columns, the
// peer's state starts in the same column on every line, and each segment's
// label starts under the arrow's start (sent) whatever t is.
func checkLadderColumns(t *testing.T, out string) {
	t.Helper()
	arrowAt, arrowEnd, peerAt := -1, -1, -1
	for i, l := range strings.Split(out, "\n") {
		r := []rune(l)
		start := strings.IndexFunc(l, func(c rune) bool { return strings.ContainsRune("─◀┄", c) })
		if start < 0 {
			if strings.HasPrefix(strings.TrimLeft(l, " "), "[") {
				if at := len(r) - len([]rune(strings.TrimLeft(l, " "))); at != indentW {
					t.Errorf("line %d: a sent label starts in column %d, not %d: %q", i+1, at, indentW, l)
				}
			}
			continue
		}
		s := runes(l[:start])
		e := s
		for e < len(r) && strings.ContainsRune("─◀▶┄", r[e]) {
			e++
		}
		p := e
		for p < len(r) && r[p] == ' ' {
			p++
		}
		if arrowAt < 0 {
			arrowAt, arrowEnd, peerAt = s, e, p
		}
		if s != arrowAt || e != arrowEnd || p != peerAt {
			t.Errorf("line %d: arrow in columns %d-%d, peer's state at %d; the first arrow line had %d-%d, %d: %q",
				i+1, s, e, p, arrowAt, arrowEnd, peerAt, l)
		}
		if s != indentW {
			t.Errorf("line %d: the arrow starts in column %d, not %d", i+1, s, indentW)
		}
		// A line that starts a step has its number and time in the first
		// prefixW columns, and the state column after them.
		if strings.TrimSpace(string(r[:prefixW])) != "" && r[prefixW] != ' ' {
			t.Errorf("line %d: the time runs into the state column: %q", i+1, l)
		}
	}
	if arrowAt < 0 {
		t.Fatal("no arrow drawn")
	}
}

// checkListColumns: the direction and the label start in the same columns
// on every step line.
func checkListColumns(t *testing.T, out string) {
	t.Helper()
	step := regexp.MustCompile(`^(\d*) +-?[0-9.]+ m?s  (\S+) +`)
	n := 0
	for i, l := range strings.Split(out, "\n") {
		m := step.FindStringSubmatchIndex(l)
		if m == nil {
			continue
		}
		n++
		if m[4] != prefixW+2 || m[1] != listHead {
			t.Errorf("line %d: direction at column %d, label at %d; want %d and %d: %q", i+1, m[4], m[1], prefixW+2, listHead, l)
		}
	}
	if n < len(sessionFixture())-2 {
		t.Errorf("%d step lines found, want %d", n, len(sessionFixture())-2)
	}
}

// TestTerminalWidth: COLUMNS first, then the terminal, and no limit for a
// pipe or a file.
func TestTerminalWidth(t *testing.T) {
	onPTY(t, 93, func(tty *os.File) {
		for _, tt := range []struct {
			columns string
			want    int
		}{{"", 93}, {"120", 120}, {" 70 ", 70}, {"0", 93}, {"-5", 93}, {"wide", 93}} {
			if got := TerminalWidth(tty, tt.columns); got != tt.want {
				t.Errorf("TerminalWidth(93-column pty, COLUMNS=%q) = %d, want %d", tt.columns, got, tt.want)
			}
		}
	})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if got := TerminalWidth(w, ""); got != -1 {
		t.Errorf("TerminalWidth(pipe) = %d, want -1 (no limit)", got)
	}
	if got := TerminalWidth(w, "100"); got != 100 {
		t.Errorf("TerminalWidth(pipe, COLUMNS=100) = %d, want 100", got)
	}
	if got := TerminalWidth(&bytes.Buffer{}, ""); got != -1 {
		t.Errorf("TerminalWidth(buffer) = %d, want -1", got)
	}
}

// TestViewsNoLimit: without a width (a pipe) every explanation is one line,
// whole, as scripts that grep the output expect.
func TestViewsNoLimit(t *testing.T) {
	for _, view := range []string{ViewLadder, ViewList} {
		var b bytes.Buffer
		txt := &Text{W: &b, View: view, Width: -1}
		for _, e := range sessionFixture() {
			txt.Emit(e)
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(b.String(), "\n") {
			lines[strings.TrimSpace(l)] = true
		}
		for _, e := range sessionFixture() {
			s, ok := e.(Step)
			if !ok || s.Direction == "note" {
				continue
			}
			for _, x := range s.Explain {
				if !lines[x] {
					t.Errorf("%s: %q is not a line of its own", view, x)
				}
			}
		}
	}
}
