package event

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Quiz is the learner's mode (--quiz): before each segment's step is shown,
// it asks for the segment's seq and ack and for the state each end moves to,
// reads the answers from In, says which were right, and then lets the step
// through to Next, whose explanation is the arithmetic behind the answer. At
// the summary it gives the score. Answers come one a line (a terminal or a
// pipe); an empty line skips a question; at the end of In it stops asking
// and the rest of the story is shown as usual.
//
// What cannot be worked out from the segments before is not asked: the
// peer's ISN (the seq of its SYN), and ours unless OurISN says it was chosen
// (--isn).
type Quiz struct {
	In     *bufio.Reader
	Out    io.Writer // the prompts and verdicts (the same writer as Next's, so they interleave in order)
	Next   Sink
	Flush  func() error // makes the prompts visible before an answer is read (a buffered Out's Flush); may be nil
	OurISN bool
	Echo   bool // write each answer after its prompt (answers from a pipe, which a terminal does not echo)

	asked, right int
	done         bool // In ended
}

// question is one thing asked about a step.
type question struct {
	prompt string
	want   string   // the answer shown
	ok     []string // answers taken as right (normalised)
	state  bool
}

// Emit implements Sink.
func (q *Quiz) Emit(ev Event) {
	switch e := ev.(type) {
	case Step:
		if !q.done && (e.Direction == "sent" || e.Direction == "received") && e.Flags != "" {
			q.ask(e)
		}
	case Summary:
		if q.asked > 0 {
			fmt.Fprintf(q.Out, "quiz: %d of %d answers right (%.0f%%)\n", q.right, q.asked, 100*float64(q.right)/float64(q.asked))
		}
	}
	q.Next.Emit(ev)
}

// questions are what can be asked of st.
func (q *Quiz) questions(st Step) []question {
	var qs []question
	syn := strings.Contains(st.Flags, "S")
	num := func(what string, abs, rel uint32) question {
		return question{prompt: what, want: fmt.Sprintf("%d (relative %d)", abs, rel), ok: []string{strconv.FormatUint(uint64(abs), 10), strconv.FormatUint(uint64(rel), 10)}}
	}
	switch {
	case syn && st.Direction == "received":
		// the peer's ISN: its own choice
	case syn && !q.OurISN:
		// our random ISN
	default:
		qs = append(qs, num("seq", st.Seq, st.RelSeq))
	}
	if strings.Contains(st.Flags, ".") {
		qs = append(qs, num("ack", st.Ack, st.RelAck))
	}
	if st.Local != "" {
		qs = append(qs, question{prompt: "our state after it", want: st.Local, ok: []string{normState(st.Local)}, state: true})
	}
	if st.Remote != "" {
		qs = append(qs, question{prompt: "the peer's state after it", want: st.Remote, ok: []string{normState(st.Remote)}, state: true})
	}
	return qs
}

func (q *Quiz) ask(st Step) {
	qs := q.questions(st)
	if len(qs) == 0 {
		return
	}
	who := "we send"
	if st.Direction == "received" {
		who = "the peer sends"
	}
	fmt.Fprintf(q.Out, "quiz: step %d, %s [%s]%s\n", st.N, who, st.Flags, lenWords(st.Len))
	for _, x := range qs {
		fmt.Fprintf(q.Out, "  %s? ", x.prompt)
		if q.Flush != nil {
			q.Flush()
		}
		line, err := q.In.ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintf(q.Out, "\nquiz: no more answers (end of input); the rest is shown as usual\n")
			q.done = true
			return
		}
		a := strings.TrimSpace(line)
		if q.Echo {
			fmt.Fprintln(q.Out, a)
		}
		if a == "" {
			fmt.Fprintf(q.Out, "  skipped: %s\n", x.want)
			continue
		}
		q.asked++
		got := a
		if x.state {
			got = normState(a)
		}
		if contains(x.ok, got) {
			q.right++
			fmt.Fprintf(q.Out, "  right: %s\n", x.want)
		} else {
			fmt.Fprintf(q.Out, "  not quite: you said %s, it is %s\n", a, x.want)
		}
	}
}

func lenWords(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " with 1 byte"
	}
	return fmt.Sprintf(" with %d bytes", n)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// normState reads a state as a learner may write it — RFC 9293's names in
// any case, with "_" or " " for "-", or netstat's and ss's short forms — as
// RFC 9293's name.
func normState(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	s = strings.NewReplacer("_", "-", " ", "-").Replace(s)
	switch s {
	case "SYN-RECV", "SYN-RCVD", "SYN-RECEIVE":
		return "SYN-RECEIVED"
	case "ESTAB":
		return "ESTABLISHED"
	case "FIN-WAIT1":
		return "FIN-WAIT-1"
	case "FIN-WAIT2":
		return "FIN-WAIT-2"
	case "CLOSE":
		return "CLOSED"
	}
	return s
}
