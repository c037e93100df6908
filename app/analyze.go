package app

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"

	"tcpshake/analyze"
	"tcpshake/event"
)

func analyzeCommand() *cli.Command {
	return &cli.Command{
		Name:      "analyze",
		Usage:     "the TCP conversations in a pcap or pcapng file, and the story of one of them",
		ArgsUsage: "FILE",
		Description: "Reads a capture (pcap or pcapng, plain or gzip/zstd/xz; any link or tunnel gopacket decodes, IP\n" +
			"fragments reassembled) and prints one row per TCP conversation: packets and bytes each way (as\n" +
			"tshark -z conv,tcp counts them), how it opened and closed, retransmissions and out-of-order segments.\n" +
			"--conn N (or --conn A:P,B:P) tells that conversation step by step, with relative seq/ack numbers, the\n" +
			"arithmetic in words and both ends' states. FILE - reads standard input.\n" +
			"Exit status: 0 on success, 1 when --conn or the filter matches nothing, 2 on usage errors or a\n" +
			"truncated or corrupt file (after printing what was read before the damage).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "conn", Aliases: []string{"c"}, Usage: "tell conversation `N` (from the table) or A:PORT,B:PORT step by step"},
			&cli.StringFlag{Name: "host", Usage: "only conversations with an endpoint at `ADDR`"},
			&cli.StringFlag{Name: "port", Usage: "only conversations with an endpoint on `PORT`"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (docs/analyze.md)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "with --conn: every explanation of every step"},
			svgFlag(),
			quizFlag(),
		},
		Action: runAnalyze,
	}
}

func runAnalyze(c *cli.Context) error {
	cfg, err := analyzeConfig(c)
	if err != nil {
		return err
	}
	if err := checkQuiz(c, cfg.File == "-"); err != nil {
		return err
	}
	if c.Bool("quiz") && cfg.Conn.IsZero() {
		return usagef("--quiz tells one conversation step by step: give it with --conn N")
	}
	in := os.Stdin
	if cfg.File != "-" {
		f, err := os.Open(cfg.File)
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		defer f.Close()
		in = f
	}
	// One write per row would cost a system call per conversation: buffer, and flush before any error line.
	out := bufio.NewWriterSize(c.App.Writer, 64<<10)
	var sink event.Sink = analyze.NewTable(columnsWriter{out, outputWidth(c)}, c.Bool("verbose"))
	sink = withQuiz(c, sink, out, out.Flush)
	var js *event.JSON
	if c.Bool("json") {
		js = event.NewJSON(out)
		sink = js
	}
	err = withSVG(c, sink, func(sink event.Sink) error { _, err := analyze.Run(c.Context, in, cfg, sink); return err })
	if js != nil && err == nil {
		err = js.Err()
	}
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("analyze: write output: %w", ferr)
	}
	switch {
	case errors.Is(err, analyze.ErrNotFound):
		fmt.Fprintf(c.App.ErrWriter, "tcpshake: %v\n", err)
		return exitCode(ExitNone)
	case err != nil && errors.Is(err, c.Context.Err()):
		return fmt.Errorf("interrupted")
	}
	return err
}

func analyzeConfig(c *cli.Context) (analyze.Config, error) {
	var cfg analyze.Config
	if c.NArg() != 1 {
		return cfg, usagef("analyze takes one FILE (got %d arguments)", c.NArg())
	}
	cfg.File = c.Args().First()
	cfg.Warn = c.App.ErrWriter // what was not decoded: one line each, with the packets it cost
	if c.String("svg") != "" && c.String("conn") == "" {
		return cfg, usagef("--svg draws one conversation: give --conn N (or --conn A:PORT,B:PORT)")
	}
	if s := c.String("conn"); s != "" {
		sel, err := analyze.ParseConnSelector(s)
		if err != nil {
			return cfg, usagef("--conn: %v", err)
		}
		cfg.Conn = sel
	}
	if s := c.String("host"); s != "" {
		a, err := parseAddr(s)
		if err != nil {
			return cfg, usagef("--host: %v", err)
		}
		cfg.Host = a
	}
	if s := c.String("port"); s != "" {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || p == 0 {
			return cfg, usagef("--port %s: want a port from 1 to 65535", s)
		}
		cfg.Port = uint16(p)
	}
	return cfg, nil
}
