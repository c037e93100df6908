package event

import (
	"fmt"
	"strings"
)

// Session views: how the steps of a connection are drawn.
const (
	ViewLadder = "ladder" // the teaching texts' figure: our column, the peer's column, an arrow per segment
	ViewList   = "list"   // one line per step
)

// ANSI colours, used only when Text.Color is set.
const (
	cReset  = "\x1b[0m"
	cSent   = "\x1b[32m"
	cRecv   = "\x1b[36m"
	cRST    = "\x1b[31m"
	cNote   = "\x1b[33m"
	cDim    = "\x1b[2m"
	cAlert  = "\x1b[1;31m"
	arrowW  = 52
	stateW  = 13
	indentW = 3 + 1 + 11 + 2 + stateW + 2
)

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
		left := "us " + e.Src
		right := "peer " + peer
		pad := indentW + arrowW + 2 + stateW - len(right) - 15
		fmt.Fprintf(t.W, "\n%-3s %11s  %-*s%s\n", "#", "t", max(pad, len(left)+1), left, right)
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
// step's Agreement (decided by the observer, never here).
func (t *Text) observed(e Step) string {
	switch e.Agreement {
	case "":
		if e.Observed == "" {
			return ""
		}
		return t.paint(cDim, "kernel: "+e.Observed)
	case Agrees:
		return t.paint(cDim, "kernel: "+e.Observed)
	case Ahead:
		return t.paint(cDim, "kernel: "+e.Observed+" (ahead)")
	case Cookie:
		return t.paint(cDim, "kernel: no socket (SYN cookie)")
	case Unknown:
		if e.Observed == "" {
			return t.paint(cNote, "kernel: not read")
		}
		return t.paint(cNote, "kernel: "+e.Observed)
	}
	return t.paint(cAlert, "kernel: "+e.Observed+" ≠ inferred")
}

// kernelStep draws a change of the peer's kernel state that no segment of
// ours caused: one dim line under the peer's column.
func (t *Text) kernelStep(e Step) {
	time := fmt.Sprintf("%.3f ms", e.TimeMs)
	fmt.Fprintf(t.W, "%-3s %11s  %-*s  %*s  %s\n", "", time, stateW, "", arrowW, "",
		t.paint(cDim, "kernel: "+e.Observed+agreementMark(e.Agreement)))
	pad := strings.Repeat(" ", indentW)
	for _, x := range e.Explain {
		fmt.Fprintf(t.W, "%s%s\n", pad, t.paint(cDim, x))
	}
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

func (t *Text) ladderStep(e Step) {
	time := fmt.Sprintf("%.3f ms", e.TimeMs)
	col := t.colourOf(e)
	switch e.Direction {
	case DirectionObserved:
		t.kernelStep(e)
		return
	case "note":
		fmt.Fprintf(t.W, "%-3s %11s  %-*s  %s  %-*s %s\n", "", time, stateW, e.Local,
			t.paint(col, strings.Repeat("┄", arrowW)), stateW, e.Remote, t.observed(e))
		t.explain(e.Explain, nil)
		return
	}
	lbl := label(e)
	if e.Retrans {
		lbl += " (retransmission)"
	}
	var arrow, line1 string
	if e.Direction == "sent" {
		line1 = lbl
		arrow = strings.Repeat("─", arrowW-1) + "▶"
	} else {
		line1 = fmt.Sprintf("%*s", arrowW, lbl)
		arrow = "◀" + strings.Repeat("─", arrowW-1)
	}
	fmt.Fprintf(t.W, "%-3d %11s  %-*s  %s\n", e.N, time, stateW, "", t.paint(col, line1))
	fmt.Fprintf(t.W, "%-3s %11s  %-*s  %s  %-*s %s\n", "", "", stateW, e.Local, t.paint(col, arrow),
		stateW, e.Remote, t.observed(e))
	t.explain(e.Explain, e.Data)
}

func (t *Text) explain(lines []string, data Payload) {
	pad := strings.Repeat(" ", indentW)
	for _, x := range lines {
		fmt.Fprintf(t.W, "%s%s\n", pad, x)
	}
	if len(data) > 0 {
		fmt.Fprintf(t.W, "%sdata: %q\n", pad, data.String())
	}
}

func (t *Text) listStep(e Step) {
	if e.Direction == DirectionObserved {
		fmt.Fprintf(t.W, "%-3s %11s  %-8s  %s   us %s · peer %s\n", "", fmt.Sprintf("%.3f ms", e.TimeMs), "kernel",
			t.paint(cDim, e.Observed+agreementMark(e.Agreement)), e.Local, e.Remote)
		for _, x := range e.Explain {
			fmt.Fprintf(t.W, "      %s\n", t.paint(cDim, x))
		}
		return
	}
	if e.Direction == "note" {
		fmt.Fprintf(t.W, "%-3s %11s  note      %s   us %s · peer %s%s\n", "", fmt.Sprintf("%.3f ms", e.TimeMs),
			t.paint(cNote, firstLine(e.Explain)), e.Local, e.Remote, paren(t.observed(e)))
		t.listExplain(e.Explain[min(1, len(e.Explain)):], nil)
		return
	}
	dir := e.Direction
	if e.Retrans {
		dir = "resent"
	}
	fmt.Fprintf(t.W, "%-3d %11s  %-8s  %s   us %s · peer %s%s\n", e.N, fmt.Sprintf("%.3f ms", e.TimeMs), dir,
		t.paint(t.colourOf(e), label(e)), e.Local, e.Remote, paren(t.observed(e)))
	t.listExplain(e.Explain, e.Data)
}

func (t *Text) listExplain(lines []string, data Payload) {
	for _, x := range lines {
		fmt.Fprintf(t.W, "      %s\n", x)
	}
	if len(data) > 0 {
		fmt.Fprintf(t.W, "      data: %q\n", data.String())
	}
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func firstLine(x []string) string {
	if len(x) == 0 {
		return ""
	}
	return x[0]
}

// sessionSummary closes a session.
func (t *Text) sessionSummary(e Summary) {
	fmt.Fprintf(t.W, "\n--- %s %s ---\n", t.peerName, e.Command)
	obs := ""
	if e.Observed != "" {
		obs = " (kernel: " + e.Observed + ")"
	}
	fmt.Fprintf(t.W, "end: us %s · peer %s%s\n", e.Local, e.Remote, obs)
	fmt.Fprintf(t.W, "%s sent, %s received, %s", plural(e.BytesSent, "byte"), plural(e.BytesReceived, "byte"), plural(e.Retransmissions, "retransmission"))
	if e.SRTTMs > 0 {
		fmt.Fprintf(t.W, ", srtt %s", fmtMs(e.SRTTMs))
	}
	fmt.Fprintf(t.W, ", time %s\n", fmtMs(e.Elapsed))
	if e.Segments != nil {
		fmt.Fprintf(t.W, "segments: %s\n", e.Segments)
	}
	if e.Outcome != "" {
		fmt.Fprintf(t.W, "outcome: %s\n", e.Outcome)
	}
}
