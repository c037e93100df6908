package event

import (
	"fmt"
	"strings"
)

// Profile is one measurement of the peer's TCP stack (`tcpshake rst
// --profile`): its SYN-ACK retransmission schedule, its TIME-WAIT duration,
// its challenge-ACK limit, the options its SYN-ACK carries, or the quality of
// its initial sequence numbers. Name "summary" closes the profile.
type Profile struct {
	Name  string `json:"name"`  // synack-schedule, time-wait, challenge-ack, options, isn, summary
	Title string `json:"title"` // what was measured, in words
	Host  string `json:"host"`
	Addr  string `json:"addr"`
	Port  uint16 `json:"port"`
	// Rule is the RFC text the measurement is held against (each part with
	// its own level), Strength the strongest of them (MUST, SHOULD, MAY);
	// Level is the one a deviation broke.
	Rule     string `json:"rule,omitempty"`
	RFC      string `json:"rfc,omitempty"`
	Strength string `json:"strength,omitempty"`
	// Verdict is conforms, deviates (Level says which requirement),
	// permitted, or inconclusive (Why says what was missing).
	Verdict string `json:"verdict"`
	Level   string `json:"level,omitempty"`
	Why     string `json:"why"`
	// Class names what was found where a measurement sorts the peer into
	// kinds (isn: constant, constant-increment, time-linear,
	// keyed-hash-clock, random, …).
	Class string `json:"class,omitempty"`
	// Figures are the measured numbers, each with its unit and meaning.
	Figures []Figure `json:"figures,omitempty"`
	// Samples are the raw observations behind the figures.
	Samples []ProfileSample `json:"samples,omitempty"`
	// Explain teaches what the figures mean.
	Explain   []string `json:"explain,omitempty"`
	ElapsedMs float64  `json:"elapsed_ms"`
}

// EventType implements Event.
func (Profile) EventType() string { return "profile" }

// Figure is one measured number.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Text  string  `json:"text,omitempty"` // what it means
}

// ProfileSample is one observation: a SYN-ACK and when it came, an ISN, a
// challenge ACK, a probe of a TIME-WAIT 4-tuple.
type ProfileSample struct {
	TimeMs  float64  `json:"t_ms"`              // since the measurement began
	SPort   uint16   `json:"sport,omitempty"`   // our source port
	Flags   string   `json:"flags,omitempty"`   // what came back, tcpdump letters ("" nothing)
	Seq     *uint32  `json:"seq,omitempty"`     // its seq (the peer's ISN for a SYN-ACK)
	OurISN  *uint32  `json:"our_isn,omitempty"` // the seq of our SYN
	DeltaMs *float64 `json:"delta_ms,omitempty"`
	RTTMs   *float64 `json:"rtt_ms,omitempty"`
	Options string   `json:"options,omitempty"`
	Note    string   `json:"note,omitempty"`
}

// profile prints one measurement of a stack profile.
func (t *Text) profile(e Profile) {
	if e.Name == "summary" {
		fmt.Fprintf(t.W, "\n--- profile of %s (%s port %d) ---\n%s, time %s\n", e.Host, e.Addr, e.Port, e.Why, fmtMs(e.ElapsedMs))
		return
	}
	code := cSent
	switch e.Verdict {
	case "deviates":
		code = cAlert
	case "inconclusive", "permitted":
		code = cNote
	}
	fmt.Fprintf(t.W, "\n== profile %s: %s ==\n", e.Name, e.Title)
	if e.Class != "" {
		fmt.Fprintf(t.W, "  %-22s %s\n", "class", e.Class)
	}
	for _, f := range e.Figures {
		line := fmt.Sprintf("  %-22s %s", f.Name, figureValue(f))
		if f.Text != "" {
			line += "  — " + f.Text
		}
		fmt.Fprintln(t.W, line)
	}
	for _, x := range e.Explain {
		fmt.Fprintf(t.W, "  %s\n", x)
	}
	if e.Rule != "" {
		fmt.Fprintf(t.W, "  rule:      %s (%s, %s)\n", e.Rule, e.RFC, e.Strength)
	}
	verdict := e.Verdict
	if e.Level != "" {
		verdict += " (" + e.Level + ")"
	}
	fmt.Fprintf(t.W, "  verdict:   %s — %s   [%s]\n", t.paint(code, verdict), e.Why, fmtMs(e.ElapsedMs))
}

// figureValue prints a figure with its unit, precise enough for its size.
func figureValue(f Figure) string {
	var v string
	switch {
	case f.Value == float64(int64(f.Value)) && (f.Value < 1e15 && f.Value > -1e15):
		v = fmt.Sprintf("%d", int64(f.Value))
	case f.Value < 100 && f.Value > -100:
		v = fmt.Sprintf("%.3f", f.Value)
	default:
		v = fmt.Sprintf("%.1f", f.Value)
	}
	if f.Unit == "" {
		return v
	}
	return strings.TrimSpace(v + " " + f.Unit)
}
