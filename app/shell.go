package app

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe"
)

func shellCommand() *cli.Command {
	return &cli.Command{
		Name:      "shell",
		Usage:     "drive a TCP connection by hand, one command per segment",
		ArgsUsage: "HOST:PORT",
		Description: "Commands (also read from a pipe or file, one per line; # starts a comment):\n" + shellHelp +
			"\nThe peer's segments are shown as they arrive; its data and FIN are acknowledged for you.\n" +
			"At the end of input the connection is closed as --close says.",
		Flags: append(sessionFlags(),
			&cli.StringFlag{Name: "close", Value: "fin", Usage: "how to end at quit or end of input: fin, rst, none"},
			&cli.StringFlag{Name: "listen", Usage: "play the server on `[ADDR:]PORT` instead (no HOST:PORT): wait for a client's SYN (at most --listen-timeout), then `synack` answers it"},
			&cli.StringFlag{Name: "listen-timeout", Value: "60s", Usage: "with --listen: how long to wait for the client, `DURATION`"},
			svgFlag(),
		),
		Action: runShell,
	}
}

const shellHelp = `  syn                 send our SYN and wait for the answer (SYN-ACK, RST, ICMP error, or the last timeout)
  synack              (--listen) answer the client's SYN with our SYN-ACK and wait for its ACK
  ack                 acknowledge what arrived (the handshake's third step)
  send TEXT           send data (escapes \r \n \t \xNN) and wait for its ACK (at most --timeout)
  fin                 send our FIN and wait for its ACK
  rst                 abort with RST
  rst exact|in-window|out-of-window
                      an RFC 5961 test RST, with the RFC's verdict (see tcpshake rst)
  scenario NAME       run an in-connection scenario of tcpshake rst here: exact-rst, in-window-rst,
                      out-of-window-rst, syn-in-established, data-after-reset, ack-of-unsent-data, challenge-ack-burst
  segment FLAGS [seq=N|+N|-N] [ack=N|+N|-N] [win=N] [data=TEXT]
                      any crafted segment, sent exactly as written; seq=+N is N past SND.NXT, ack=+N N past RCV.NXT;
                      unset fields are what the peer expects. A SYN in CLOSED opens the connection (and waits like
                      syn); data or a FIN at SND.NXT with the expected ack is ours to deliver (retransmitted,
                      and waits for its ACK); anything else is a test segment, sent once exactly as written
  expect FLAGS [seq=N|+N] [ack=N|+N] [len=N]
                      the peer's next segment (since the previous command began) must be this, waiting for it
                      at most --timeout; +N is relative to the peer's ISN (seq) or ours (ack), as the steps show;
                      a failed expect prints one line and ends the shell with exit status 1
  nowait CMD          run syn, send, fin or segment without waiting for the answer
  wait [DURATION]     let time pass (default 1s), showing what arrives
  state               our state, the peer's (inferred and observed), and the sequence variables
  help                this list
  quit                close (as --close says) and leave
`

func runShell(c *cli.Context) error {
	mode, err := probe.ParseCloseMode(c.String("close"))
	if err != nil || mode == probe.CloseWait || mode == probe.CloseHalf {
		return usagef("--close %s: want fin, rst or none", c.String("close"))
	}
	w := c.App.Writer
	var lines <-chan string
	intr := &interruptReader{r: os.Stdin}
	if isTerminal(os.Stdin) && isTerminal(w) {
		// Line editing and history: x/term's Terminal also redraws the
		// prompt around what the peer's segments print meanwhile. In raw
		// mode Ctrl-C is a byte, not a signal: interruptReader notices it.
		fd := int(os.Stdin.Fd())
		old, err := term.MakeRaw(fd)
		if err != nil {
			return fmt.Errorf("shell: terminal: %w", err)
		}
		defer term.Restore(fd, old)
		t := term.NewTerminal(struct {
			io.Reader
			io.Writer
		}{intr, w}, "tcpshake> ")
		w = t
		lines = terminalLines(c.Context, t)
	} else {
		lines = readLines(c.Context, os.Stdin)
	}
	sink, err := sessionSinkTo(c, w, isTerminal(c.App.Writer))
	if err != nil {
		return err
	}
	body := func(ctx context.Context, s *probe.Session) error {
		sh := &shell{s: s, w: w, ctx: ctx}
		if c.Bool("json") {
			sh.w = c.App.ErrWriter // stdout carries JSON lines only
		}
		if err := s.Interact(ctx, lines, sh.exec); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err() // a signal while a command waited: reset, exit 2
		}
		if intr.seen.Load() {
			return fmt.Errorf("Ctrl-C at the prompt: %w", context.Canceled)
		}
		if sh.failed != nil {
			return sh.failed
		}
		return sh.finish(mode)
	}
	if c.IsSet("listen") {
		return withSVG(c, sink, func(sink event.Sink) error { return shellListen(c, sink, body) }) // listen_shell.go
	}
	return runSessionSVG(c, "shell", sink, nil, func(ctx context.Context, s *probe.Session) error {
		s.ManualACK()
		if err := s.Begin("shell"); err != nil {
			return err
		}
		return body(ctx, s)
	})
}

// interruptReader passes a terminal's bytes on and remembers a Ctrl-C.
type interruptReader struct {
	r    io.Reader
	seen atomic.Bool
}

func (ir *interruptReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if bytes.IndexByte(p[:n], 3) >= 0 {
		ir.seen.Store(true)
	}
	return n, err
}

// readLines feeds input lines (a pipe or a file) to the session loop.
func readLines(ctx context.Context, in io.Reader) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(in)
		for {
			if !sc.Scan() {
				return
			}
			select {
			case out <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// terminalLines reads edited lines from a terminal; Ctrl-D or Ctrl-C ends.
func terminalLines(ctx context.Context, t *term.Terminal) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		for {
			line, err := t.ReadLine()
			if err != nil {
				return
			}
			select {
			case out <- line:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

type shell struct {
	s      *probe.Session
	w      io.Writer
	ctx    context.Context
	failed error // a failed expect: the shell stops, exit status 1
}

// exec runs one command line; it reports true to stop. Each command waits
// for what it expects before the next line is read.
func (sh *shell) exec(line string) bool {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return false
	}
	wait := true
	if fields[0] == "nowait" {
		wait = false
		fields = fields[1:]
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "nowait"))
		if len(fields) == 0 {
			fmt.Fprintln(sh.w, "nowait CMD: e.g. nowait syn")
			return false
		}
	}
	cmd, rest := fields[0], strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), fields[0]))
	if cmd != "expect" {
		sh.s.MarkCommand()
	}
	var err error
	s, ctx := sh.s, sh.ctx
	switch cmd {
	case "syn":
		if err = s.SYN(ctx); err == nil && wait {
			err = s.WaitOpen(ctx)
		}
	case "ack":
		err = s.ACK(ctx)
	case "synack":
		if err = s.SynAck(ctx); err == nil && wait {
			err = s.WaitAcked(ctx, "our SYN-ACK")
		}
	case "send":
		var data []byte
		if data, err = Unescape(rest); err == nil {
			switch {
			case len(data) == 0:
				err = fmt.Errorf("send what? e.g. send hello\\n")
			case wait:
				err = s.Send(ctx, data)
			default:
				err = s.Write(ctx, data)
			}
		}
	case "fin":
		if err = s.FIN(ctx); err == nil && wait {
			err = s.WaitAcked(ctx, "our FIN")
		}
	case "rst":
		if len(fields) > 1 {
			_, err = probe.RunInConnection(ctx, strings.TrimSuffix(fields[1], "-rst")+"-rst", s, 0)
			break
		}
		err = s.RST(ctx)
	case "scenario":
		if len(fields) != 2 {
			err = fmt.Errorf("scenario NAME: one of %s", strings.Join(probe.InConnection(), ", "))
			break
		}
		_, err = probe.RunInConnection(ctx, fields[1], s, 0)
	case "segment":
		var c probe.Crafted
		if c, err = sh.parseSegment(fields[1:], rest); err == nil {
			var res probe.CraftResult
			res, err = s.Craft(ctx, c)
			switch {
			case err != nil || !wait:
			case res == probe.CraftOpen:
				err = s.WaitOpen(ctx)
			case res == probe.CraftOwn:
				err = s.WaitAcked(ctx, "the crafted segment")
			}
		}
	case "expect":
		var e probe.Expectation
		if e, err = parseExpect(fields[1:]); err == nil {
			if err = s.Expect(ctx, e); errors.Is(err, probe.ErrExpect) {
				fmt.Fprintf(sh.w, "%v\n", err)
				sh.failed = err
				return true
			}
		}
	case "wait":
		d := time.Second
		if len(fields) > 1 {
			d, err = time.ParseDuration(fields[1])
			if err != nil || d <= 0 || d > time.Hour {
				err = fmt.Errorf("wait %s: want a duration like 500ms or 2s (at most 1h)", fields[1])
				break
			}
		}
		err = s.Hold(ctx, d)
	case "state":
		fmt.Fprintln(sh.w, s.Numbers())
	case "help", "?":
		fmt.Fprint(sh.w, shellHelp)
	case "quit", "exit":
		return true
	default:
		fmt.Fprintf(sh.w, "unknown command %q: try help\n", cmd)
		return false
	}
	if err != nil {
		if ctx.Err() != nil {
			return true // interrupted: Interact returns and the session is reset
		}
		fmt.Fprintf(sh.w, "%s: %v\n", cmd, err)
	}
	return false
}

// parseExpect reads `expect FLAGS [seq=N|+N] [ack=N|+N] [len=N]`.
func parseExpect(args []string) (probe.Expectation, error) {
	var e probe.Expectation
	if len(args) == 0 {
		return e, fmt.Errorf("expect needs flags, e.g. expect S. ack=+1")
	}
	f, err := craft.ParseFlags(args[0])
	if err != nil {
		return e, err
	}
	e.Flags, e.Text = f, strings.Join(args, " ")
	for _, a := range args[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return e, fmt.Errorf("%q: want key=value", a)
		}
		rel := strings.HasPrefix(v, "+")
		n, err := strconv.ParseUint(strings.TrimPrefix(v, "+"), 0, 32)
		if err != nil {
			return e, fmt.Errorf("%s=%s: want a number, or +N relative", k, v)
		}
		u := uint32(n)
		switch k {
		case "seq":
			e.Seq, e.SeqRel = &u, rel
		case "ack":
			e.Ack, e.AckRel = &u, rel
		case "len":
			l := int(n)
			e.Len = &l
		default:
			return e, fmt.Errorf("unknown field %q (seq, ack, len)", k)
		}
	}
	return e, nil
}

// parseSegment reads `segment FLAGS [seq=N|+N|-N] [ack=N] [win=N] [data=TEXT]`;
// data= takes the rest of the line.
func (sh *shell) parseSegment(args []string, rest string) (probe.Crafted, error) {
	var c probe.Crafted
	if len(args) == 0 {
		return c, fmt.Errorf("segment needs flags, e.g. segment PA seq=+10 data=hi")
	}
	f, err := craft.ParseFlags(args[0])
	if err != nil {
		return c, err
	}
	c.Flags = f
	if i := strings.Index(rest, "data="); i >= 0 {
		if c.Data, err = Unescape(rest[i+len("data="):]); err != nil {
			return c, err
		}
	}
	for _, a := range args[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return c, fmt.Errorf("%q: want key=value", a)
		}
		switch k {
		case "data":
			return c, nil
		case "seq":
			n, rel, err := number(v)
			if err != nil {
				return c, fmt.Errorf("seq=%s: %v", v, err)
			}
			q := craft.Seq(uint32(n))
			if rel {
				q = sh.s.SndNxt().Add(uint32(n))
			}
			c.Seq = &q
		case "ack":
			n, rel, err := number(v)
			if err != nil {
				return c, fmt.Errorf("ack=%s: %v", v, err)
			}
			q := craft.Seq(uint32(n))
			if rel {
				q = sh.s.RcvNxt().Add(uint32(n))
			}
			c.Ack = &q
		case "win":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return c, fmt.Errorf("win=%s: want 0-65535", v)
			}
			w := uint16(n)
			c.Window = &w
		default:
			return c, fmt.Errorf("unknown field %q (seq, ack, win, data)", k)
		}
	}
	return c, nil
}

// number reads N (absolute) or +N/-N (relative).
func number(v string) (int64, bool, error) {
	rel := strings.HasPrefix(v, "+") || strings.HasPrefix(v, "-")
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil || (!rel && (n < 0 || n > 1<<32-1)) {
		return 0, false, fmt.Errorf("want a number, or +N/-N relative to what the peer expects")
	}
	return n, rel, nil
}

// finish ends the connection at quit or end of input.
func (sh *shell) finish(mode probe.CloseMode) error {
	if err := sh.s.Ended(); err != nil {
		if errors.Is(err, probe.ErrAborted) {
			return nil // the user's own rst
		}
		return err // refused, reset, unreachable or unanswered: the outcome and exit status say so
	}
	return sh.s.Close(sh.ctx, mode)
}
