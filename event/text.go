package event

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Text renders events for people, in the style of hping3 (one line per
// answer), nmap (a port table with reasons) and ping (the summary).
type Text struct {
	W       io.Writer
	Quiet   bool   // results and summary only
	Verbose bool   // also the segments we send, and every explanation
	View    string // sessions: ViewLadder or ViewList (default)
	Color   bool   // ANSI colours (terminals only, never with NO_COLOR)
	// Width is the number of columns the session views fit their lines
	// in: arrows shrink, labels and explanations wrap at word boundaries.
	// 0: W's own width if W has a Columns() int method, else no limit (a
	// pipe or a file: every step's lines whole); negative: no limit.
	Width int

	mu        sync.Mutex
	explained map[string]bool
	results   []Result
	session   bool
	peerName  string
	usName    string
	lay       layout
	laidOut   bool
}

// Emit implements Sink.
func (t *Text) Emit(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch e := e.(type) {
	case Start:
		if e.Command != "probe" {
			t.session = true
			t.sessionStart(e)
			return
		}
		t.start(e)
	case Step:
		if !e.Probe {
			t.sessionStep(e)
			return
		}
		t.step(e)
	case Result:
		t.results = append(t.results, e)
	case Summary:
		if e.Command == "rst" {
			t.scenarioTable(e)
			return
		}
		if t.session || e.Command != "probe" {
			t.sessionSummary(e)
			return
		}
		t.table()
		t.summary(e)
	case Scenario:
		t.scenario(e)
	case Profile:
		t.profile(e)
	case Warning:
		fmt.Fprintf(t.W, "warning: %s\n", e.Message)
	}
}

func (t *Text) start(e Start) {
	if t.Quiet {
		return
	}
	ports := "port"
	if len(e.Ports) != 1 {
		ports = "ports"
	}
	probes := "probe"
	if e.Count != 1 {
		probes = "probes"
	}
	fmt.Fprintf(t.W, "PROBE %s (%s) from %s via %s: flags [%s], %d %s, %d %s each, %d header + %d data bytes\n",
		e.Host, e.Addr, e.Src, e.Interface, e.Flags, len(e.Ports), ports, e.Count, probes, e.HeaderLen, e.DataLen)
}

func (t *Text) step(e Step) {
	if t.Quiet || (e.Probe && (e.Direction == "sent" || e.ICMP == "echo-reply") && !t.Verbose) {
		return
	}
	var b strings.Builder
	if e.Direction == "sent" {
		b.WriteString("  -> ")
	}
	if e.ICMP != "" {
		fmt.Fprintf(&b, "ICMP %s from %s", e.ICMP, e.Src)
	} else {
		peer := e.Src
		if e.Direction == "sent" {
			peer = e.Dst
		}
		fmt.Fprintf(&b, "[%s] %s seq=%d", e.Flags, peer, e.Seq)
		if strings.Contains(e.Flags, ".") {
			fmt.Fprintf(&b, " ack=%d", e.Ack)
		}
		fmt.Fprintf(&b, " win=%d", e.Window)
		if e.TTL != 0 && e.Direction == "received" {
			fmt.Fprintf(&b, " ttl=%d", e.TTL)
		}
		fmt.Fprintf(&b, " len=%d", e.Len)
		if e.Options != "" {
			fmt.Fprintf(&b, " options %s", e.Options)
		}
	}
	if e.RTTMs != nil {
		fmt.Fprintf(&b, " rtt=%s", fmtMs(*e.RTTMs))
	}
	if e.Retrans {
		b.WriteString(" (retransmission)")
	}
	fmt.Fprintln(t.W, b.String())
	key := e.Direction + e.Flags + e.ICMP
	if t.Verbose || !t.explained[key] {
		if t.explained == nil {
			t.explained = map[string]bool{}
		}
		t.explained[key] = true
		for _, x := range e.Explain {
			fmt.Fprintf(t.W, "     %s\n", x)
		}
	}
}

func (t *Text) table() {
	if len(t.results) == 0 {
		return
	}
	if !t.Quiet {
		fmt.Fprintln(t.W)
	}
	rows := [][]string{{"PORT", "STATE", "REASON", "RTT", "TTL", "WINDOW"}}
	for _, r := range t.results {
		reason := r.Reason
		if r.From != "" && r.From != r.Addr {
			reason += " from " + r.From
		}
		row := []string{fmt.Sprintf("%d/tcp", r.Port), r.State, reason, "-", "-", "-"}
		if r.RTTMs != nil {
			row[3] = fmtMs(*r.RTTMs)
		}
		if r.TTL != nil {
			row[4] = fmt.Sprint(*r.TTL)
		}
		if r.Window != nil {
			row[5] = fmt.Sprint(*r.Window)
		}
		rows = append(rows, row)
	}
	writeTable(t.W, rows)
	t.results = t.results[:0]
}

func (t *Text) summary(e Summary) {
	fmt.Fprintf(t.W, "\n--- %s %s statistics ---\n", e.Host, e.Command)
	fmt.Fprintf(t.W, "%s sent, %s received, %.1f%% unanswered, time %s\n",
		plural(e.Sent, "probe"), plural(e.Received, "answer"), e.LossPct, fmtMs(e.Elapsed))
	if e.RTT != nil {
		fmt.Fprintf(t.W, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", e.RTT.Min, e.RTT.Avg, e.RTT.Max, e.RTT.Mdev)
	}
	if len(e.Ignored) > 0 {
		keys := make([]string, 0, len(e.Ignored))
		for k := range e.Ignored {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %d", k, e.Ignored[k])
		}
		fmt.Fprintf(t.W, "ignored (not an answer to our probes): %s\n", strings.Join(parts, ", "))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// fmtMs prints milliseconds with precision that suits their size.
func fmtMs(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	case v < 100:
		return fmt.Sprintf("%.2f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

// writeTable left-aligns columns with two spaces between them.
func writeTable(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], runes(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(pad(c, widths[i]) + "  ")
		}
		fmt.Fprintln(w, b.String())
	}
}

// scenario prints one RST scenario's verdict under its steps.
func (t *Text) scenario(e Scenario) {
	fmt.Fprintf(t.W, "\n== %s: %s ==\n", e.Name, e.Title)
	if e.Peer != "" {
		t.field(2, "peer", e.Peer, "", "")
	}
	if e.SynCookie {
		t.field(2, "cookie", "the peer answered with a SYN cookie (RFC 4987 §3.6): "+e.SynCookieHow, "", "")
	}
	for _, c := range e.Checks {
		t.field(2, "check", c.Sent, "", "")
		t.field(4, "rule", ruleLine(c.RFC, c.Strength, c.StrengthNote, c.Rule), "", "")
		t.field(4, "expected", c.Expected, "", "")
		t.field(4, "observed", c.Observed, "", "")
		v := verdictWord(c.Verdict, c.Level)
		t.field(4, "verdict", v+" — "+c.Why, v, verdictCode(c.Verdict))
	}
	if len(e.Checks) == 0 {
		t.field(2, "rule", ruleLine(e.RFC, e.Strength, e.StrengthNote, e.Rule), "", "")
		t.field(2, "sent", e.Sent, "", "")
		t.field(2, "expected", e.Expected, "", "")
		t.field(2, "observed", e.Observed, "", "")
	}
	for _, ic := range e.ICMP {
		t.field(2, "icmp", ic, "", "")
	}
	if e.RemoteBefore != "" || e.ObservedBefore != "" {
		st := fmt.Sprintf("%s → %s inferred", orDash(e.RemoteBefore), orDash(e.RemoteAfter))
		if e.ObservedBefore != "" || e.ObservedAfter != "" {
			st += fmt.Sprintf("; %s → %s observed", orDash(e.ObservedBefore), orDash(e.ObservedAfter))
		}
		t.field(2, "states", st, "", "")
	}
	if len(e.Figures) > 0 {
		keys := make([]string, 0, len(e.Figures))
		for k := range e.Figures {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %s", k, strconv.FormatFloat(e.Figures[k], 'f', -1, 64)))
		}
		t.field(2, "figures", strings.Join(parts, ", "), "", "")
	}
	v := verdictWord(e.Verdict, e.Level)
	t.field(2, "verdict", v+" — "+e.Why, v, verdictCode(e.Verdict))
	fmt.Fprintln(t.W)
}

// field prints "label:" at indent and its value in the column after it,
// wrapped at the width under the value's start; the value's first word
// (paint, when set) in colour code.
func (t *Text) field(indent int, label, value, paint, code string) {
	const labelW = 11 // "observed:  "
	at := indent + labelW
	room := t.layout().room(at)
	for i, x := range wrap(value, room, room) {
		if i == 0 {
			if paint != "" && strings.HasPrefix(x, paint) {
				x = t.paint(code, paint) + x[len(paint):]
			}
			fmt.Fprintf(t.W, "%s%s%s\n", spaces(indent), pad(label+":", labelW), x)
			continue
		}
		fmt.Fprintf(t.W, "%s%s\n", spaces(at), x)
	}
}

// ruleLine is a rule with its source and strength.
func ruleLine(rfc, strength, note, rule string) string {
	s := rfc
	if strength != "" {
		s += " (" + strength
		if note != "" {
			s += "; " + note
		}
		s += ")"
	}
	if rule != "" {
		s += ": “" + rule + "”"
	}
	return s
}

// verdictWord is a verdict with the level of a deviation: "deviates (MUST)".
func verdictWord(v, level string) string {
	if v == "deviates" && level != "" {
		return v + " (" + level + ")"
	}
	return v
}

func verdictCode(v string) string {
	switch v {
	case "deviates":
		return cAlert
	case "inconclusive":
		return cNote
	}
	return cSent
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// scenarioTable is the final table of `tcpshake rst`.
func (t *Text) scenarioTable(e Summary) {
	// EXPECTED and OBSERVED share what the width leaves, 44 columns each
	// at most, 12 at least.
	cut := 44
	if w := t.layout().width; w > 0 {
		nameW, verdictW := len("SCENARIO"), len("VERDICT")
		for _, s := range e.Scenarios {
			nameW, verdictW = max(nameW, runes(s.Name)), max(verdictW, runes(verdictWord(s.Verdict, s.Level)))
		}
		cut = max(12, min(cut, (w-nameW-verdictW-3*2)/2))
	}
	rows := [][]string{{"SCENARIO", "EXPECTED", "OBSERVED", "VERDICT"}}
	for _, s := range e.Scenarios {
		rows = append(rows, []string{s.Name, short(s.Expected, cut), short(s.Observed, cut), verdictWord(s.Verdict, s.Level)})
	}
	fmt.Fprintln(t.W)
	writeTable(t.W, rows)
	fmt.Fprintf(t.W, "\n%s, time %s\n", e.Outcome, fmtMs(e.Elapsed))
}

// short cuts s to n runes at a word boundary.
func short(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	cut := string(r[:n-1])
	if i := strings.LastIndexByte(cut, ' '); i > n/2 {
		cut = cut[:i]
	}
	return cut + "…"
}
