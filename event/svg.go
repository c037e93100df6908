package event

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// SVG draws a connection's steps as a sequence diagram in the style of the
// teaching texts and of Wireshark's Flow Graph: two lifelines (us and the
// peer, or a capture's client and server), time running down, one arrow per
// segment labelled with its flags and seq/ack numbers, each end's state
// beside its lifeline where it changes, and the arithmetic under the arrow.
// It renders the same events as Text and JSON; Emit collects them and
// WriteTo draws the picture once the story is complete.
type SVG struct {
	mu    sync.Mutex
	start *Start
	conn  *Connection
	steps []Step
}

// Emit implements Sink.
func (s *SVG) Emit(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e := e.(type) {
	case Start:
		s.start = &e
	case Connection:
		s.conn = &e
	case Step:
		if !e.Probe {
			s.steps = append(s.steps, e)
		}
	}
}

// Steps is how many steps were collected.
func (s *SVG) Steps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.steps)
}

// Geometry of the picture, in pixels.
const (
	svgWidth   = 1200
	svgLeft    = 260 // our (the client's) lifeline
	svgRight   = 860 // the peer's (the server's) lifeline
	svgTop     = 70  // where the lifelines start
	svgLine    = 15  // one line of explanation
	svgSlope   = 22  // how far an arrow falls from its tail to its head
	svgWrap    = 78  // characters of explanation per line (11 px monospace between the lifelines)
	svgFontPx  = 12
	svgSmallPx = 11
)

// Colours: sent, received, reset or ICMP, note, dim.
const (
	svgSent = "#1a7f37"
	svgRecv = "#0b5cad"
	svgRST  = "#c62828"
	svgNote = "#9a6700"
	svgDim  = "#6e7781"
)

// WriteTo draws the picture.
func (s *SVG) WriteTo(w io.Writer) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var body strings.Builder
	y := svgTop + 20
	var last drawn
	for _, st := range s.steps {
		y = s.step(&body, st, y, &last)
	}
	height := y + 30
	left, right := s.names()

	cw := &countWriter{w: bufio.NewWriter(w)}
	p := func(format string, a ...any) { fmt.Fprintf(cw, format, a...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="%d">`+"\n",
		svgWidth, height, svgWidth, height, svgFontPx)
	p(`<title>%s</title>`+"\n", esc(s.title(left, right)))
	p(`<defs>`)
	for _, c := range []string{svgSent, svgRecv, svgRST, svgDim} {
		p(`<marker id="head%s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker>`, c[1:], c)
	}
	p("</defs>\n")
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%d" y="24" font-weight="bold" font-size="14">%s</text>`+"\n", 16, esc(s.title(left, right)))
	p(`<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", svgLeft, svgTop-12, esc(left))
	p(`<text x="%d" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", svgRight, svgTop-12, esc(right))
	p(`<text x="16" y="%d" fill="%s" font-size="%d">t</text>`+"\n", svgTop-12, svgDim, svgSmallPx)
	for _, x := range []int{svgLeft, svgRight} {
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444" stroke-width="2"/>`+"\n", x, svgTop-4, x, height-20)
	}
	p("%s", body.String())
	p("</svg>\n")
	if err := cw.w.(*bufio.Writer).Flush(); err != nil && cw.err == nil {
		cw.err = err
	}
	return cw.n, cw.err
}

// names are the two lifelines' headings.
func (s *SVG) names() (left, right string) {
	switch {
	case s.start != nil && s.start.Command == "listen":
		// Our steps are drawn from our lifeline (the left) as for a
		// client: we are the server here.
		return "us (server) " + s.start.Src, "peer (client) " + s.start.Host
	case s.start != nil:
		peer := s.start.Addr + ":" + strconv.Itoa(int(first(s.start.Ports)))
		if strings.Contains(s.start.Addr, ":") {
			peer = "[" + s.start.Addr + "]:" + strconv.Itoa(int(first(s.start.Ports)))
		}
		return "us " + s.start.Src, "peer " + peer
	case s.conn != nil:
		return "client " + s.conn.Client, "server " + s.conn.Server
	}
	for _, st := range s.steps {
		switch st.Direction {
		case "sent":
			return "client " + st.Src, "server " + st.Dst
		case "received":
			return "client " + st.Dst, "server " + st.Src
		}
	}
	return "us", "peer"
}

func (s *SVG) title(left, right string) string {
	what := "connection"
	if s.start != nil {
		what = s.start.Command
	} else if s.conn != nil {
		what = "conversation " + strconv.Itoa(s.conn.Index)
	}
	return fmt.Sprintf("tcpshake %s: %s ⇄ %s", what, left, right)
}

// drawn is what is beside the lifelines so far: the states last drawn, and
// the kernel's last reading.
type drawn struct{ local, remote, kernel string }

// step draws one step from y down and returns where the next begins.
func (s *SVG) step(b *strings.Builder, st Step, y int, last *drawn) int {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	colour := svgNote
	switch {
	case strings.Contains(st.Flags, "R") || st.ICMP != "":
		colour = svgRST
	case st.Direction == "sent":
		colour = svgSent
	case st.Direction == "received":
		colour = svgRecv
	}
	p(`<g class="step" data-n="%d" data-direction="%s">`+"\n", st.N, esc(st.Direction))
	time := fmtT(st.TimeMs)
	if st.N > 0 {
		time = "#" + strconv.Itoa(st.N) + "  " + time
	}
	var end int // the y at which the states after the step are drawn
	switch st.Direction {
	case DirectionObserved:
		obs := "kernel: " + st.Observed + agreementMark(st.Agreement)
		p(`<text x="16" y="%d" fill="%s" font-size="%d">%s</text>`+"\n", y+4, svgDim, svgSmallPx, esc(time))
		p(`<circle cx="%d" cy="%d" r="4" fill="%s"/>`+"\n", svgRight, y, svgDim)
		p(`<text x="%d" y="%d" fill="%s" font-size="%d">%s</text>`+"\n", svgRight+10, y+4, svgDim, svgSmallPx, esc(obs))
		end = y + 8
	case "note":
		p(`<text x="16" y="%d" fill="%s" font-size="%d">%s</text>`+"\n", y+4, svgDim, svgSmallPx, esc(time))
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-dasharray="2,4"/>`+"\n", svgLeft, y, svgRight, y, colour)
		end = y
	default:
		lbl := svgLabel(st)
		p(`<text x="16" y="%d" fill="%s" font-size="%d">%s</text>`+"\n", y+svgSlope/2, svgDim, svgSmallPx, esc(time))
		p(`<text x="%d" y="%d" text-anchor="middle" fill="%s" font-weight="bold">%s</text>`+"\n",
			(svgLeft+svgRight)/2, y-6, colour, esc(lbl))
		x1, x2 := svgLeft, svgRight
		if st.Direction == "received" {
			x1, x2 = svgRight, svgLeft
		}
		dash := ""
		if st.Retrans || st.Ignored {
			dash = ` stroke-dasharray="7,4"`
		}
		mc := colour
		if mc == svgNote {
			mc = svgDim
		}
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s marker-end="url(#head%s)"/>`+"\n",
			x1, y, x2, y+svgSlope, mc, dash, mc[1:])
		end = y + svgSlope
		if st.Options != "" {
			end += 4
			p(`<text x="%d" y="%d" text-anchor="middle" fill="%s" font-size="%d">%s</text>`+"\n",
				(svgLeft+svgRight)/2, end+svgLine-4, svgDim, svgSmallPx, esc("options "+st.Options))
			end += svgLine - 4
		}
	}
	// Each end's state beside its lifeline, where it changes: the sender's
	// at the arrow's tail, the receiver's at its head.
	stateText := func(x, y int, anchor, state, prev string) {
		if state == "" || state == prev {
			return
		}
		p(`<text x="%d" y="%d" text-anchor="%s" font-weight="bold" class="state">%s</text>`+"\n", x, y+4, anchor, esc(state))
	}
	ly, ry := end, end
	switch st.Direction {
	case "sent":
		ly = y
	case "received":
		ry = y
	}
	stateText(svgLeft-10, ly, "end", st.Local, last.local)
	obs, _ := observed(st)
	if st.Direction == DirectionObserved {
		last.kernel = "kernel: " + st.Observed
	} else {
		stateText(svgRight+10, ry, "start", st.Remote, last.remote)
		// The kernel's reading where it changes, or when it disagrees.
		if obs == last.kernel && st.Agreement != Differs {
			obs = ""
		} else if obs != "" {
			last.kernel = obs
		}
		if obs != "" {
			c := svgDim
			if st.Agreement == Differs {
				c = svgRST
			}
			p(`<text x="%d" y="%d" fill="%s" font-size="%d">%s</text>`+"\n", svgRight+10, end+4+svgLine, c, svgSmallPx, esc(obs))
		}
	}
	if st.Local != "" {
		last.local = st.Local
	}
	if st.Remote != "" && st.Direction != DirectionObserved {
		last.remote = st.Remote
	}
	// The arithmetic, under the arrow.
	ly = end + 6
	lines := st.Explain
	if len(st.Data) > 0 {
		lines = append(lines[:len(lines):len(lines)], fmt.Sprintf("data: %q", st.Data.String()))
	}
	for _, x := range lines {
		for i, l := range wrap(x, svgWrap, svgWrap-2) {
			if i > 0 {
				l = "  " + l
			}
			ly += svgLine
			p(`<text x="%d" y="%d" font-size="%d" fill="#24292f" xml:space="preserve">%s</text>`+"\n", svgLeft+12, ly, svgSmallPx, esc(l))
		}
	}
	if obs != "" && st.Direction != DirectionObserved {
		ly = max(ly, end+4+svgLine)
	}
	p("</g>\n")
	return max(ly, end) + 26
}

// svgLabel is the arrow's label: Wireshark's flag words, then the numbers,
// absolute with the relative ones beside (as the text views show them).
func svgLabel(st Step) string {
	if st.ICMP != "" {
		return "ICMP " + st.ICMP + " from " + st.Src
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]", st.Flags)
	if st.FlagNames != "" {
		fmt.Fprintf(&b, " %s", st.FlagNames)
	}
	fmt.Fprintf(&b, "  seq %d (%d)", st.Seq, st.RelSeq)
	if strings.Contains(st.Flags, ".") {
		fmt.Fprintf(&b, "  ack %d (%d)", st.Ack, st.RelAck)
	}
	if st.Len > 0 {
		fmt.Fprintf(&b, "  len %d", st.Len)
	}
	fmt.Fprintf(&b, "  win %d", st.Window)
	if st.Retrans {
		b.WriteString("  (retransmission)")
	}
	if st.Ignored {
		b.WriteString("  (ignored)")
	}
	return b.String()
}

// esc escapes text for XML.
func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		default:
			if r < 0x20 && r != '\t' {
				continue // not allowed in XML 1.0
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// Tee sends every event to each of sinks, in order.
func Tee(sinks ...Sink) Sink {
	return SinkFunc(func(e Event) {
		for _, s := range sinks {
			s.Emit(e)
		}
	})
}
