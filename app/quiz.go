package app

import (
	"bufio"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"tcpshake/event"
)

// quizFlag is --quiz, the learner's mode, on the commands that tell one connection.
func quizFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiz", Usage: "before each segment is shown, ask for its seq and ack and the state each end moves to " +
		"(answers one a line on standard input, a terminal or a pipe; an empty line skips), then show it with the arithmetic; a score at the end"}
}

// checkQuiz refuses --quiz where it cannot work: with --json (a machine's output) or --step (which also reads
// standard input), and, for analyze, with the capture read from standard input.
func checkQuiz(c *cli.Context, stdinTaken bool) error {
	if !c.Bool("quiz") {
		return nil
	}
	switch {
	case c.Bool("json"):
		return usagef("--quiz asks questions in the text view: it cannot go with --json")
	case c.Bool("step"):
		return usagef("--quiz and --step both read standard input: choose one")
	case stdinTaken:
		return usagef("--quiz reads its answers from standard input, where the capture is: give the capture as a file")
	}
	return nil
}

// withQuiz puts the quiz in front of sink when --quiz is set; w is where sink renders (its prompts go there too,
// so they come in order) and flush makes them visible before each answer is read.
func withQuiz(c *cli.Context, sink event.Sink, w io.Writer, flush func() error) event.Sink {
	if !c.Bool("quiz") {
		return sink
	}
	return &event.Quiz{In: bufio.NewReader(os.Stdin), Out: w, Next: sink, Flush: flush, OurISN: c.IsSet("isn"), Echo: !isTerminal(os.Stdin)}
}
