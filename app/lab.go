package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/lab"
)

func labCommand() *cli.Command {
	name := &cli.StringFlag{Name: "name", Value: lab.DefaultName, Usage: "lab `NAME`: namespaces NAME-client and NAME-server"}
	return &cli.Command{
		Name:  "lab",
		Usage: "a private two-host lab in network namespaces, with a real server to try everything on",
		Description: "Client 198.51.100.1 / 2001:db8::1 and server 198.51.100.2 / 2001:db8::2, joined by a veth pair.\n" +
			"Server ports: 7 echo, 9 hold (stays in CLOSE-WAIT a while after your FIN), 13 half (half-closes first),\n" +
			"80 http (answers and closes first), 81 closed (RST), 82 dropped (silence),\n" +
			"83 rejected (ICMP port-unreachable), 84 prohibited (ICMP admin-prohibited),\n" +
			"85 v4only (an echo on 0.0.0.0 only: nothing listens there over IPv6).\n" +
			"Peers (lab up --peer): linux (default), the server namespace's kernel with tcpshake's services;\n" +
			"lwip, lwIP's TCP/IP stack (Debian's liblwip) in a small C program on a TAP device bridged to the link,\n" +
			"built with the system's cc at lab up (apt-get install liblwip-dev gcc); the server kernel then holds no\n" +
			"lab address, and 82-84 are answered by nftables on the server's link. lab status says which peer runs.",
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "create the lab and start its server (idempotent)",
				Flags: []cli.Flag{name,
					&cli.IntFlag{Name: "syncookies", Value: -1, Usage: "set net.ipv4.tcp_syncookies in the server to `MODE` (0 never, 1 on SYN-queue overflow, 2 always: every SYN-ACK carries a cookie; default: the kernel's, 1)"},
					&cli.BoolFlag{Name: "forger", Usage: "join client and server through a bridge in a third namespace, NAME-forger, from which a program can see the link and put forged or stray frames on it"},
					&cli.StringFlag{Name: "peer", Value: lab.PeerLinux, Usage: "the TCP stack that serves the server's addresses: `PEER` linux (the server namespace's kernel) or lwip (lwIP on a TAP device, built with cc on first use)"},
				},
				Action: func(c *cli.Context) error {
					if err := lab.ValidatePeer(c.String("peer")); err != nil {
						return usagef("%v", err)
					}
					if c.Int("syncookies") >= 0 && c.String("peer") == lab.PeerLWIP {
						return usagef("--syncookies sets the Linux peer's net.ipv4.tcp_syncookies; the lwip peer has no SYN cookies")
					}
					if err := labUp(c.Context, c.App.Writer, c.String("name"), c.String("peer"), true, c.Bool("forger")); err != nil {
						return err
					}
					if m := c.Int("syncookies"); m >= 0 {
						if err := lab.New(c.String("name")).SetSynCookies(m); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "the server in lab %s now has net.ipv4.tcp_syncookies=%d\n", c.String("name"), m)
					}
					return nil
				},
			},
			{
				Name:  "down",
				Usage: "remove the lab: server, namespaces, firewall rules",
				Flags: []cli.Flag{name},
				Action: func(c *cli.Context) error {
					if err := lab.New(c.String("name")).Down(); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "lab %s removed\n", c.String("name"))
					return nil
				},
			},
			{
				Name:  "status",
				Usage: "what of the lab exists, and what listens in it",
				Flags: []cli.Flag{name},
				Action: func(c *cli.Context) error {
					st, err := lab.New(c.String("name")).Status()
					if err != nil {
						return err
					}
					fmt.Fprint(c.App.Writer, st.String())
					if !st.Ready() {
						return exitCode(ExitNone)
					}
					return nil
				},
			},
			{
				Name:      "loss",
				Usage:     "make the server drop PERCENT of the TCP segments it receives, at random (0 turns it off)",
				ArgsUsage: "PERCENT",
				Flags:     []cli.Flag{name},
				Action: func(c *cli.Context) error {
					p, err := strconv.Atoi(c.Args().First())
					if c.NArg() != 1 || err != nil || p < 0 || p > 100 {
						return usagef("lab loss takes one PERCENT from 0 to 100")
					}
					if err := lab.New(c.String("name")).SetLoss(p); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "the server in lab %s now drops %d%% of incoming TCP segments\n", c.String("name"), p)
					return nil
				},
			},
			{
				Name:  "demo",
				Usage: "bring the lab up, run tcpshake's main jobs in it with explanations, take it down",
				Flags: []cli.Flag{name, &cli.BoolFlag{Name: "keep", Usage: "leave the lab up afterwards"}},
				Action: func(c *cli.Context) error {
					return labDemo(c.Context, c.App.Writer, c.App.ErrWriter, c.String("name"), c.Bool("keep"))
				},
			},
			{
				Name:   "serve",
				Usage:  "run the lab server in the foreground (lab up starts it in the background)",
				Hidden: true,
				Flags:  []cli.Flag{name},
				Action: func(c *cli.Context) error {
					ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
					defer stop()
					return lab.New(c.String("name")).Serve(ctx, nil)
				},
			},
		},
	}
}

func labUp(ctx context.Context, w io.Writer, name, peer string, tell, forger bool) error {
	l := lab.New(name)
	l.Forger = forger
	l.Peer = peer
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lab: find own executable: %w", err)
	}
	// The peer program is built (when missing or stale) before anything is created, so a missing compiler or
	// library leaves no half-made lab behind.
	argv, err := l.DaemonCommand(ctx, self)
	if err != nil {
		return err
	}
	if err := l.Up(ctx); err != nil {
		return err
	}
	pid, err := l.StartDaemon(argv)
	if err != nil {
		return err
	}
	if !tell {
		return nil
	}
	fmt.Fprintf(w, "lab %s is up (server pid %d), peer %s: %s\n", name, pid, l.Peer, lab.PeerDescription(l.Peer))
	fmt.Fprintf(w, "  client %s  %v  %v\n  server %s  %v  %v\n", l.ClientNS, l.ClientV4, l.ClientV6, l.ServerNS, l.ServerV4, l.ServerV6)
	fmt.Fprintf(w, "  ports: 7 echo, 9 hold, 13 half-close, 80 http, 81 closed, 82 dropped, 83 ICMP port-unreachable, 84 ICMP admin-prohibited, 85 IPv4-only echo\n")
	fmt.Fprintf(w, "run commands as the client:\n")
	fmt.Fprintf(w, "  ip netns exec %s tcpshake probe %v -p 80,81,82,83\n", l.ClientNS, l.ServerV4)
	if l.Peer == lab.PeerLWIP {
		fmt.Fprintf(w, "the server's sockets are lwIP's, inside the peer program (ss in %s shows none); its log: %s\n",
			l.ServerNS, l.LogFile())
	} else {
		fmt.Fprintf(w, "watch the server's sockets:\n")
		fmt.Fprintf(w, "  ip netns exec %s ss -tan\n", l.ServerNS)
	}
	fmt.Fprintf(w, "remove it: tcpshake lab down")
	if name != lab.DefaultName {
		fmt.Fprintf(w, " --name %s", name)
	}
	fmt.Fprintln(w)
	return nil
}

// demoStep is one command the demo runs as the client, with what it shows.
type demoStep struct {
	title string
	says  string
	args  []string
	exit  int // the exit status the step should end with
	// server, when set, is a tcpshake command run in the server namespace
	// first (listen): the client's command runs once it is ready, and its
	// story is told after the client's.
	server []string
}

func demoSteps(l lab.Lab, pcap string) []demoStep {
	v4, v6 := l.ServerV4.String(), l.ServerV6.String()
	return []demoStep{
		{
			title: "An open port",
			says:  "A SYN to the HTTP server: it answers SYN-ACK, its ack = our ISN + 1. tcpshake then resets the half-open connection.",
			args:  []string{"probe", v4 + ":80"},
		},
		{
			title: "Every kind of port at once",
			says: "81: nothing listens, the kernel answers RST. 82: a firewall drops the SYN silently (--retries 0: no second try).\n" +
				"83 and 84: the firewall answers with an ICMP error that quotes our SYN, so we know which probe it was for.",
			args: []string{"probe", v4, "-p", "80,81,82,83,84", "--retries", "0"},
		},
		{
			title: "The same over IPv6",
			says:  "ICMPv6 destination-unreachable codes map to the same reasons.",
			args:  []string{"probe", "-6", v6, "-p", "7,81,83,84", "--retries", "0"},
		},
		{
			title: "Round-trip times",
			says:  "Five SYNs to the echo port; RTTs come from kernel timestamps of the SYN leaving and the SYN-ACK arriving.",
			args:  []string{"probe", v4 + ":7", "-c", "5", "-i", "100ms", "-q"},
		},
		{
			title: "A closed port only",
			says:  "No port open, so the exit status is 1 (scripts can test it).",
			args:  []string{"probe", v4 + ":81", "-q"},
			exit:  ExitNone,
		},
		{
			title: "A whole connection by hand",
			says: "tcpshake plays the client: SYN, SYN-ACK, ACK, six bytes to the echo server, its echo, then the\n" +
				"4-way close and TIME-WAIT. --isn 100 gives the teaching texts' numbers; the peer's state is read from\n" +
				"its kernel (--observe-netns) and compared with the one inferred from the segments.",
			args: []string{"handshake", v4 + ":7", "--isn", "100", "--send", `hello\n`, "--time-wait", "1s",
				"--observe-netns", l.ServerNS, "--view", "ladder"},
		},
		{
			title: "Both ends by hand: the teaching texts' exchange",
			says: "Two tcpshake processes, one per namespace: listen --isn 2000 plays the server from raw sockets,\n" +
				"handshake --isn 100 the client. SYN S:100 A:0, SYN+ACK S:2000 A:101, ACK S:101 A:2001, PSH+ACK\n" +
				"S:101 A:2001; the server goes LISTEN → SYN-RECEIVED → ESTABLISHED and, when the client closes,\n" +
				"CLOSE-WAIT → LAST-ACK.",
			server: []string{"listen", demoListenPort, "--isn", "2000", "--time-wait", "0", "--view", "list"},
			args: []string{"handshake", v4 + ":" + demoListenPort, "--isn", "100", "--send", `hello\n`, "--time-wait", "0",
				"--view", "list"},
		},
		{
			title: "Passive close",
			says:  "The HTTP server answers and closes first: it goes FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT; we go CLOSE-WAIT, LAST-ACK.",
			args: []string{"handshake", v4 + ":80", "--send", `GET / HTTP/1.0\r\n\r\n`, "--close", "wait",
				"--observe-netns", l.ServerNS, "--view", "list"},
		},
		{
			title: "An annotated capture",
			says: "The same kind of connection, written to a pcapng file as it crossed the wire (-w): each packet\n" +
				"carries its step as a comment, which Wireshark and tshark show as frame.comment.",
			args: []string{"handshake", v4 + ":80", "--send", `GET / HTTP/1.0\r\n\r\n`, "--close", "wait", "-w", pcap, "--view", "list"},
		},
		{
			title: "Reading a capture",
			says:  "analyze finds the conversations in any pcap/pcapng and tells one step by step, both ends' states inferred.",
			args:  []string{"analyze", pcap, "--conn", "1"},
		},
		{
			title: "Resets against RFC 9293 and RFC 5961",
			says:  "Each scenario on a fresh connection: what was sent, what came back, what the RFCs say, a verdict.",
			args: []string{"rst", v4 + ":9", "--closed-port", "81", "--echo-port", "7", "--observe-netns", l.ServerNS,
				"--view", "list"},
		},
	}
}

// demoListenPort is where the demo's tcpshake listen plays the server
// (nothing else in the lab uses it).
const demoListenPort = "8000"

func labDemo(ctx context.Context, w, ew io.Writer, name string, keep bool) (err error) {
	l := lab.New(name)
	fmt.Fprintf(w, "== tcpshake lab demo ==\nCreating lab %q: two network namespaces joined by a veth pair, a real server in one of them.\n", name)
	if err := labUp(ctx, w, name, lab.PeerLinux, false, false); err != nil {
		return err
	}
	if !keep {
		defer func() {
			if derr := l.Down(); derr != nil && err == nil {
				err = derr
			}
			fmt.Fprintf(w, "\nLab %s removed. `tcpshake lab up` keeps one running to experiment in.\n", name)
		}()
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lab demo: find own executable: %w", err)
	}
	pcap := filepath.Join(os.TempDir(), "tcpshake-demo-"+name+".pcapng")
	defer fmt.Fprintf(w, "\nThe annotated capture is %s: open it in Wireshark, or run\n  tshark -r %s -T fields -e frame.number -e frame.comment\n", pcap, pcap)
	for i, st := range demoSteps(l, pcap) {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(w, "\n-- %d. %s --\n%s\n", i+1, st.title, st.says)
		var server *demoServer
		if st.server != nil {
			fmt.Fprintf(w, "$ ip netns exec %s tcpshake %s &\n", l.ServerNS, shellJoin(st.server))
			if server, err = startDemoServer(ctx, l, self, st.server); err != nil {
				return fmt.Errorf("lab demo: %s: %w", st.title, err)
			}
		}
		fmt.Fprintf(w, "$ ip netns exec %s tcpshake %s\n", l.ClientNS, shellJoin(st.args))
		cmd := exec.CommandContext(ctx, self, st.args...)
		cmd.Stdout, cmd.Stderr = w, ew
		if err := demoExit(st, lab.Do(l.ClientNS, cmd.Run)); err != nil {
			if server != nil {
				server.cmd.Process.Kill()
				server.wait()
			}
			return err
		}
		if server != nil {
			err := server.wait()
			fmt.Fprintf(w, "\nThe server's side, as tcpshake listen told it in %s:\n%s", l.ServerNS, server.out.String())
			if err := demoExit(demoStep{title: st.title + " (listen)"}, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// demoExit checks a demo command's exit status.
func demoExit(st demoStep, runErr error) error {
	code := 0
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		code = ee.ExitCode()
	} else if runErr != nil {
		return fmt.Errorf("lab demo: %s: %w", st.title, runErr)
	}
	if code != st.exit {
		return fmt.Errorf("lab demo: %s: exit status %d, expected %d", st.title, code, st.exit)
	}
	return nil
}

// demoServer is a demo step's tcpshake listen in the server namespace.
type demoServer struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	wait func() error // Wait, once (a goroutine waits from the start)
}

// startDemoServer starts args in the server namespace and returns once it
// says it listens (its first line on stderr), at most 10 s.
func startDemoServer(ctx context.Context, l lab.Lab, self string, args []string) (*demoServer, error) {
	s := &demoServer{cmd: exec.CommandContext(ctx, self, args...)}
	first := &firstLine{c: make(chan string, 1)}
	s.cmd.Stdout, s.cmd.Stderr = &s.out, first
	if err := lab.Do(l.ServerNS, s.cmd.Start); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	s.wait = func() error { return <-exited }
	select {
	case line := <-first.c:
		if strings.Contains(line, "listening on") {
			return s, nil
		}
		s.cmd.Process.Kill()
		s.wait()
		return nil, fmt.Errorf("listen did not start: %s", line)
	case err := <-exited:
		return nil, fmt.Errorf("listen exited before listening: %v", err)
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		s.wait()
		return nil, fmt.Errorf("listen did not start within 10 s")
	}
}

// firstLine is a writer that hands over the first line written to it and
// keeps the rest.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	c    chan string
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf = append(f.buf, p...)
	if i := bytes.IndexByte(f.buf, '\n'); i >= 0 && !f.sent {
		f.sent = true
		f.c <- string(f.buf[:i])
	}
	return len(p), nil
}

// shellJoin quotes args so the printed command can be pasted into a shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:,/=") == "" {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
