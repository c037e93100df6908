package event

import (
	"bufio"
	"strings"
	"testing"
)

// TestQuiz plays the teaching texts' exchange with right, wrong and skipped
// answers from a pipe, and checks the verdicts, what is not asked, and the
// score.
func TestQuiz(t *testing.T) {
	steps := []Step{
		{N: 1, Direction: "sent", Flags: "S", Seq: 100, Local: "SYN-SENT", Remote: "SYN-RECEIVED"},
		{N: 2, Direction: "received", Flags: "S.", Seq: 2000, Ack: 101, RelAck: 1, Local: "ESTABLISHED", Remote: "SYN-RECEIVED"},
		{N: 3, Direction: "sent", Flags: ".", Seq: 101, Ack: 2001, RelSeq: 1, RelAck: 1, Local: "ESTABLISHED", Remote: "ESTABLISHED"},
		{N: 4, Direction: "note", Explain: []string{"a note"}},
		{N: 5, Direction: "sent", Flags: "P.", Seq: 101, Ack: 2001, RelSeq: 1, RelAck: 1, Len: 6, Local: "ESTABLISHED", Remote: "ESTABLISHED"},
	}
	answers := strings.Join([]string{
		"100", "syn_sent", "syn-recv", // step 1: seq, our state, the peer's (netstat's spelling)
		"101", "established", "SYN RECEIVED", // step 2: ack (no seq: the peer's ISN), states
		"102", "", "estab", "estab", // step 3: seq wrong, ack skipped, states
		"1", // step 5: seq right in relative numbers, then the input ends
	}, "\n") + "\n"
	var out strings.Builder
	var shown []string
	q := &Quiz{In: bufio.NewReader(strings.NewReader(answers)), Out: &out, OurISN: true,
		Next: SinkFunc(func(e Event) {
			switch e := e.(type) {
			case Step:
				out.WriteString("STEP " + e.Flags + "\n")
				shown = append(shown, e.Direction)
			case Summary:
				out.WriteString("SUMMARY\n")
			}
		})}
	for _, st := range steps {
		q.Emit(st)
	}
	q.Emit(Summary{})
	got := out.String()
	for _, want := range []string{
		"quiz: step 1, we send [S]\n  seq? ",
		"right: 100 (relative 0)",
		"right: SYN-SENT",
		"quiz: step 2, the peer sends [S.]\n  ack? ",
		"not quite: you said 102, it is 101 (relative 1)",
		"skipped: 2001 (relative 1)",
		"quiz: step 5, we send [P.] with 6 bytes",
		"right: 101 (relative 1)",
		"quiz: no more answers (end of input)",
		"quiz: 9 of 10 answers right (90%)\nSUMMARY",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "step 2, the peer sends [S.]\n  seq?") {
		t.Errorf("asked for the peer's ISN")
	}
	if len(shown) != len(steps) {
		t.Errorf("%d steps shown, want all %d (the quiz only asks first)", len(shown), len(steps))
	}
	if i, j := strings.Index(got, "right: SYN-SENT"), strings.Index(got, "STEP S\n"); i < 0 || j < i {
		t.Errorf("step 1 shown before its questions were answered:\n%s", got)
	}
}
