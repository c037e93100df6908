package event

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Session views: how the steps of a connection are drawn.
const (
	ViewLadder = "ladder" // the teaching texts' figure: our column, the peer's column, an arrow per segment
	ViewList   = "list"   // one line per step
)

// ANSI colours, used only when Text.Color is set.
const (
	cReset = "\x1b[0m"
	cSent  = "\x1b[32m"
	cRecv  = "\x1b[36m"
	cRST   = "\x1b[31m"
	cNote  = "\x1b[33m"
	cDim   = "\x1b[2m"
	cAlert = "\x1b[1;31m"
)

// The columns of the session views. A line starts with the step's number
// and time in prefixW columns; the ladder then has our state, the arrow and
// the peer's state, and every explanation starts under the arrow.
const (
	prefixW   = 15 // "#" and t: "12     1.234 ms", "1500 9999.999 ms"
	stateW    = 13 // the longest state name (SYN-RECEIVED) and one space
	indentW   = prefixW + 2 + stateW + 2
	arrowMax  = 52 // the arrow when the width allows it (or has no limit)
	arrowMin  = 12
	obsBeside = 28 // the shortest arrow that still leaves the kernel's state beside the peer's
	obsTypW   = len("kernel: SYN-RECEIVED")
	listHead  = prefixW + 2 + 8 + 2 // where a list line's label starts
	listIndW  = 6                   // a list step's explanations
	hangW     = 2                   // the extra indent of a wrapped line's continuation
)

// layout is the geometry of one session's ladder, fixed for the whole
// session so the columns never move.
type layout struct {
	width int // columns a line must fit in; 0: no limit
	arrow int
}

// peerCol is where the peer's state starts.
func (l layout) peerCol() int { return indentW + l.arrow + 2 }

// newLayout fits the ladder into width columns: the arrow shrinks first,
// from arrowMax down to obsBeside while the kernel's state still fits beside
// the peer's; below that the kernel's state goes on a line of its own and the
// arrow takes what remains, down to arrowMin.
func newLayout(width int) layout {
	if width <= 0 {
		return layout{arrow: arrowMax}
	}
	// A line ends with the peer's state (12 columns), optionally followed by
	// one space and the kernel's state.
	beside := width - (indentW + 2 + stateW + 1 + obsTypW)
	if beside >= obsBeside {
		return layout{width: width, arrow: min(arrowMax, beside)}
	}
	return layout{width: width, arrow: max(arrowMin, min(arrowMax, width-(indentW+2+stateW-1)))}
}

func (t *Text) layout() layout {
	if !t.laidOut {
		t.laidOut = true
		t.lay = newLayout(t.width())
	}
	return t.lay
}

// width is Text.Width, or the width W reports when it knows its own.
func (t *Text) width() int {
	if t.Width != 0 {
		return max(t.Width, 0)
	}
	if s, ok := t.W.(interface{ Columns() int }); ok {
		return s.Columns()
	}
	return 0
}

func (t *Text) paint(code, s string) string {
	if !t.Color || s == "" {
		return s
	}
	return code + s + cReset
}

// sessionStart prints the header of a handshake, shell or rst session.
func (t *Text) sessionStart(e Start) {
	peer := fmt.Sprintf("%s:%d", e.Addr, first(e.Ports))
	if strings.Contains(e.Addr, ":") {
		peer = fmt.Sprintf("[%s]:%d", e.Addr, first(e.Ports))
	}
	if e.Command == "listen" {
		// We are the server: the header names our port and the client.
		fmt.Fprintf(t.W, "LISTEN %s: a connection from %s\n", e.Src, peer)
	} else {
		fmt.Fprintf(t.W, "%s %s (%s) from %s\n", strings.ToUpper(e.Command), e.Host, peer, e.Src)
	}
	t.peerName = peer
	t.usName = e.Src
	if t.View == ViewLadder {
		l := t.layout()
		left := prefix("#", "t") + "  us " + e.Src
		right := "peer " + peer
		end := l.peerCol() + stateW - 1 // the right end of the peer's column
		fmt.Fprintln(t.W)
		if gap := end - runes(left) - runes(right); gap >= 1 || l.width == 0 {
			fmt.Fprintln(t.W, left+spaces(max(gap, 1))+right)
			return
		}
		// Both names do not fit on one line: the peer's goes under, ending
		// where its column ends.
		fmt.Fprintln(t.W, left)
		fmt.Fprintln(t.W, spaces(max(0, min(end, l.width)-runes(right)))+right)
	}
}

func first(p []uint16) uint16 {
	if len(p) == 0 {
		return 0
	}
	return p[0]
}

// sessionStep draws one step of a session.
func (t *Text) sessionStep(e Step) {
	if t.View == ViewList {
		t.listStep(e)
		return
	}
	t.ladderStep(e)
}

// fmtT is a step's time in at most 11 columns for any t: milliseconds to
// the microsecond below 10 s, seconds to the millisecond up to a day and
// beyond, whole seconds from 100,000 s.
func fmtT(ms float64) string {
	switch a := max(ms, -ms); {
	case a < 10_000:
		return strconv.FormatFloat(ms, 'f', 3, 64) + " ms"
	case a < 100_000_000:
		return strconv.FormatFloat(ms/1000, 'f', 3, 64) + " s"
	default:
		return strconv.FormatFloat(ms/1000, 'f', 0, 64) + " s"
	}
}

// prefix is a line's first prefixW columns: the step's number on the left,
// its time on the right (one space between them at least).
func prefix(n, time string) string {
	return n + spaces(max(1, prefixW-len(n)-len(time))) + time
}

func stepPrefix(e Step) string {
	n := ""
	if e.N > 0 {
		n = strconv.Itoa(e.N)
	}
	return prefix(n, fmtT(e.TimeMs))
}

// label is a segment's flags and numbers, absolute with relative beside.
func label(e Step) string {
	if e.ICMP != "" {
		return "ICMP " + e.ICMP + " from " + e.Src
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] seq %d (rel %d)", e.Flags, e.Seq, e.RelSeq)
	if strings.Contains(e.Flags, ".") {
		fmt.Fprintf(&b, " ack %d (rel %d)", e.Ack, e.RelAck)
	}
	if e.Len > 0 {
		fmt.Fprintf(&b, " len %d", e.Len)
	}
	fmt.Fprintf(&b, " win %d", e.Window)
	if e.Options != "" {
		fmt.Fprintf(&b, " %s", e.Options)
	}
	return b.String()
}

func (t *Text) colourOf(e Step) string {
	switch {
	case strings.Contains(e.Flags, "R") || e.ICMP != "":
		return cRST
	case e.Direction == "sent":
		return cSent
	case e.Direction == "received":
		return cRecv
	}
	return cNote
}

// observed is the kernel's state beside the inferred one, marked by the
// step's Agreement (decided by the observer, never here), and its colour.
func observed(e Step) (text, colour string) {
	switch e.Agreement {
	case "", Agrees:
		if e.Observed == "" {
			return "", ""
		}
		return "kernel: " + e.Observed, cDim
	case Ahead:
		return "kernel: " + e.Observed + " (ahead)", cDim
	case Cookie:
		return "kernel: no socket (SYN cookie)", cDim
	case Unknown:
		if e.Observed == "" {
			return "kernel: not read", cNote
		}
		return "kernel: " + e.Observed, cNote
	}
	return "kernel: " + e.Observed + " ≠ inferred", cAlert
}

// agreementMark is the short word after an observed step's state.
func agreementMark(a Agreement) string {
	switch a {
	case Ahead:
		return " (ahead)"
	case Differs:
		return " (≠ inferred)"
	}
	return ""
}

// kernelStep draws a change of the peer's kernel state that no segment of
// ours caused: one dim line under the peer's column.
func (t *Text) kernelStep(e Step) {
	l := t.layout()
	p := stepPrefix(e)
	s := "kernel: " + e.Observed + agreementMark(e.Agreement)
	col := l.peerCol()
	if l.width > 0 && col+runes(s) > l.width {
		col = max(runes(p)+2, l.width-runes(s))
	}
	fmt.Fprintf(t.W, "%s%s%s\n", p, spaces(col-runes(p)), t.paint(cDim, s))
	t.explain(e.Explain, nil, cDim)
}

func (t *Text) ladderStep(e Step) {
	col := t.colourOf(e)
	l := t.layout()
	switch e.Direction {
	case DirectionObserved:
		t.kernelStep(e)
		return
	case "note":
		t.statesLine(prefix("", fmtT(e.TimeMs)), e, t.paint(col, strings.Repeat("┄", l.arrow)))
		t.explain(e.Explain, nil, "")
		return
	}
	lbl := label(e)
	if e.Retrans {
		lbl += " (retransmission)"
	}
	var arrow string
	head := stepPrefix(e) + spaces(indentW-prefixW)
	if e.Direction == "sent" {
		arrow = strings.Repeat("─", l.arrow-1) + "▶"
	} else {
		arrow = "◀" + strings.Repeat("─", l.arrow-1)
		if n := runes(lbl); n <= l.arrow {
			lbl = spaces(l.arrow-n) + lbl
		}
	}
	for i, x := range wrap(lbl, l.room(indentW), l.room(indentW)) {
		if i > 0 {
			head = spaces(indentW)
		}
		fmt.Fprintf(t.W, "%s%s\n", head, t.paint(col, x))
	}
	t.statesLine(spaces(prefixW), e, t.paint(col, arrow))
	t.explain(e.Explain, e.Data, "")
}

// room is how many columns a line starting at column at has (0: no limit);
// at least 20, so a too narrow terminal still gets words, not letters.
func (l layout) room(at int) int {
	if l.width == 0 {
		return 0
	}
	return max(20, l.width-at)
}

// statesLine draws our state, the arrow (already painted) and the peer's
// state, with the kernel's state beside the peer's when it fits, else on a
// line of its own under it.
func (t *Text) statesLine(pre string, e Step, arrow string) {
	l := t.layout()
	line := pre + "  " + pad(e.Local, stateW) + " " + " " + arrow + "  " + e.Remote
	obs, code := observed(e)
	if obs == "" {
		fmt.Fprintln(t.W, line)
		return
	}
	at := l.peerCol() + stateW + 1
	if l.width == 0 || at+runes(obs) <= l.width {
		fmt.Fprintf(t.W, "%s%s%s\n", line, spaces(at-l.peerCol()-runes(e.Remote)), t.paint(code, obs))
		return
	}
	fmt.Fprintln(t.W, line)
	at = l.peerCol()
	if at+runes(obs) > l.width {
		at = max(indentW, l.width-runes(obs))
	}
	fmt.Fprintf(t.W, "%s%s\n", spaces(at), t.paint(code, obs))
}

// explain prints a step's explanations and data under the arrow, each
// wrapped at word boundaries, its continuation lines indented a little more.
func (t *Text) explain(lines []string, data Payload, code string) {
	l := t.layout()
	t.block(lines, data, indentW, l.room(indentW), l.room(indentW+hangW), code)
}

// block prints lines (and data) at indent, wrapped to first and rest
// columns (0: no limit).
func (t *Text) block(lines []string, data Payload, indent, first, rest int, code string) {
	pad := spaces(indent)
	emit := func(s string) {
		for i, x := range wrap(s, first, rest) {
			if i > 0 {
				x = spaces(hangW) + x
			}
			fmt.Fprintf(t.W, "%s%s\n", pad, t.paint(code, x))
		}
	}
	for _, x := range lines {
		emit(x)
	}
	if len(data) > 0 {
		emit(fmt.Sprintf("data: %q", data.String()))
	}
}

func (t *Text) listStep(e Step) {
	l := t.layout()
	var dir, body, code string
	switch e.Direction {
	case DirectionObserved:
		dir, code = "kernel", cDim
		body = e.Observed + agreementMark(e.Agreement)
	case "note":
		dir, code = "note", cNote
		body = firstLine(e.Explain)
	default:
		dir, code = e.Direction, t.colourOf(e)
		if e.Retrans {
			dir = "resent"
		}
		body = label(e)
	}
	states := []string{"us " + e.Local + " · peer " + e.Remote}
	if obs, _ := observed(e); obs != "" && e.Direction != DirectionObserved {
		states = append(states, "("+obs+")")
	}
	head := stepPrefix(e) + "  " + pad(dir, 8) + "  "
	room := l.room(listHead)
	lines := wrap(body, room, room-hangW)
	last := lines[len(lines)-1]
	if len(lines) > 1 {
		last = spaces(hangW) + last
	}
	for i, x := range lines[:len(lines)-1] {
		if i > 0 {
			x = spaces(hangW) + x
		}
		fmt.Fprintf(t.W, "%s%s\n", head, t.paint(code, x))
		head = spaces(listHead)
	}
	all := strings.Join(states, " ")
	switch {
	case room == 0 || runes(last)+3+runes(all) <= room:
		fmt.Fprintf(t.W, "%s%s   %s\n", head, t.paint(code, last), all)
	case runes(all) <= room:
		fmt.Fprintf(t.W, "%s%s\n%s%s\n", head, t.paint(code, last), spaces(listHead), all)
	default:
		// Our and the peer's states on one line, the kernel's on the next.
		fmt.Fprintf(t.W, "%s%s\n", head, t.paint(code, last))
		for _, s := range states {
			for _, x := range wrap(s, room, room) {
				fmt.Fprintf(t.W, "%s%s\n", spaces(listHead), x)
			}
		}
	}
	rest, data, xcode := e.Explain, e.Data, ""
	switch e.Direction {
	case DirectionObserved:
		xcode = cDim
	case "note":
		rest = e.Explain[min(1, len(e.Explain)):]
	}
	t.block(rest, data, listIndW, l.room(listIndW), l.room(listIndW+hangW), xcode)
}

func firstLine(x []string) string {
	if len(x) == 0 {
		return ""
	}
	return x[0]
}

// wrap breaks s at spaces into lines of at most first runes, then rest
// runes (0: no limit); a word longer than a line is cut.
func wrap(s string, first, rest int) []string {
	w := first
	var out []string
	for w > 0 && runes(s) > w {
		r := []rune(s)
		cut := -1
		for i := w; i > 0; i-- {
			if r[i] == ' ' {
				cut = i
				break
			}
		}
		if cut < 0 {
			out = append(out, string(r[:w]))
			s = string(r[w:])
		} else {
			out = append(out, strings.TrimRight(string(r[:cut]), " "))
			s = strings.TrimLeft(string(r[cut+1:]), " ")
		}
		w = rest
	}
	return append(out, s)
}

func runes(s string) int { return utf8.RuneCountInString(s) }

func spaces(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat(" ", n)
}

// pad left-aligns s in n columns.
func pad(s string, n int) string { return s + spaces(n-runes(s)) }

// sessionSummary closes a session, its lines wrapped like the steps'.
func (t *Text) sessionSummary(e Summary) {
	fmt.Fprintf(t.W, "\n--- %s %s ---\n", t.peerName, e.Command)
	obs := ""
	if e.Observed != "" {
		obs = " (kernel: " + e.Observed + ")"
	}
	lines := []string{fmt.Sprintf("end: us %s · peer %s%s", e.Local, e.Remote, obs)}
	counts := fmt.Sprintf("%s sent, %s received, %s", plural(e.BytesSent, "byte"), plural(e.BytesReceived, "byte"), plural(e.Retransmissions, "retransmission"))
	if e.SRTTMs > 0 {
		counts += ", srtt " + fmtMs(e.SRTTMs)
	}
	lines = append(lines, counts+", time "+fmtMs(e.Elapsed))
	if e.Segments != nil {
		lines = append(lines, fmt.Sprintf("segments: %s", e.Segments))
	}
	if e.Outcome != "" {
		lines = append(lines, "outcome: "+e.Outcome)
	}
	l := t.layout()
	t.block(lines, nil, 0, l.room(0), l.room(hangW), "")
}
