package app

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/probe/observe"
	"tcpshake/probe/observe/trace"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "show every TCP state change of the kernel's sockets as it happens, with the kernel's timestamps (eBPF)",
		Description: "One line per change: the time in seconds since the first line, the socket's local and remote ends,\n" +
			"and its states by RFC 9293's names, e.g.\n" +
			"  0.000412  198.51.100.1:40000 → 198.51.100.2:80  SYN-SENT → ESTABLISHED\n" +
			"The source is the kernel tracepoint sock:inet_sock_set_state through eBPF; when a closing socket\n" +
			"hands over to a timewait socket (the tracepoint then says CLOSE), the timewait socket is read with\n" +
			"sock_diag and TIME-WAIT is shown as ss shows it, and its end too. watch changes nothing and sends\n" +
			"nothing. Without CAP_BPF and CAP_PERFMON (or when the programs cannot be loaded, or with --poll) it\n" +
			"polls the socket table with sock_diag instead and says that short-lived states can be missed.\n" +
			"--drops adds the kernel's reason for every TCP segment it drops (skb:kfree_skb).\n" +
			"It runs until Ctrl-C, --duration or --count; exit status 0, 2 on errors. See docs/watch.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "netns", Usage: "watch only the network namespace `NAME` (as ip netns names it); default: every namespace"},
			&cli.StringFlag{Name: "port", Usage: "only sockets with `PORT` at either end"},
			&cli.StringFlag{Name: "host", Usage: "only sockets with the address `ADDR` at either end"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (docs/watch.md)"},
			&cli.StringFlag{Name: "duration", Usage: "stop after `DURATION`"},
			&cli.StringFlag{Name: "count", Usage: "stop after `N` lines"},
			&cli.BoolFlag{Name: "drops", Usage: "also show TCP segments the kernel dropped, with its drop reason"},
			&cli.BoolFlag{Name: "poll", Usage: "poll sock_diag instead of eBPF (what happens without CAP_BPF)"},
			&cli.StringFlag{Name: "poll-interval", Value: "10ms", Usage: "time between two polls, `DURATION`"},
		},
		Action: runWatch,
	}
}

// stream is the eBPF source or the polling fallback.
type stream interface {
	Next() (trace.Event, error)
	Close() error
}

func runWatch(c *cli.Context) error {
	if c.NArg() != 0 {
		return usagef("watch takes no arguments (got %s); filter with --port, --host, --netns", plural(c.NArg(), "argument"))
	}
	p := numParser{c: c}
	port := uint16(p.uint("port", 1, 65535))
	count := p.uint("count", 1, 1<<62)
	var duration time.Duration
	if c.String("duration") != "" {
		duration = p.duration("duration")
	}
	every := p.duration("poll-interval")
	if p.err != nil {
		return p.err
	}
	var host netip.Addr
	if h := c.String("host"); h != "" {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return usagef("--host %s: want an IPv4 or IPv6 address", h)
		}
		host = a.Unmap()
	}
	nsName := c.String("netns")
	var ino uint32
	if nsName != "" {
		var err error
		if ino, err = trace.NetnsInode(nsName); err != nil {
			return usagef("--netns %s: %v", nsName, err)
		}
	}
	drops := c.Bool("drops")
	errw := c.App.ErrWriter
	var (
		src   stream
		namer func(uint32) string
		lost  func() uint64
	)
	where := "every network namespace"
	if nsName != "" {
		where = "network namespace " + nsName
	}
	if port != 0 {
		where += fmt.Sprintf(", port %d", port)
	}
	if host.IsValid() {
		where += ", host " + host.String()
	}
	var why error
	if !c.Bool("poll") {
		s, err := trace.Open(trace.Config{Netns: ino, Port: port, Drops: drops})
		if err == nil {
			src, namer, lost = s, s.NetnsName, s.Lost
			fmt.Fprintf(errw, "tcpshake: watching TCP state changes in %s (eBPF: sock:inet_sock_set_state%s); Ctrl-C to stop\n",
				where, map[bool]string{true: ", skb:kfree_skb"}[drops])
			for _, w := range s.Warnings() {
				fmt.Fprintf(errw, "tcpshake: warning: %s\n", w)
			}
		} else {
			why = err
		}
	}
	if src == nil {
		if drops {
			return fmt.Errorf("--drops needs eBPF (skb:kfree_skb), which is not available: %w", why)
		}
		d, err := observe.Open(nsName)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return &capErr{
					what:   fmt.Sprintf("--netns %s: reading that namespace's sockets (setns)", nsName),
					cap:    "CAP_SYS_ADMIN",
					setcap: "cap_sys_admin,cap_bpf,cap_perfmon",
					err:    err,
				}
			}
			return usagef("--netns: %v", err)
		}
		defer d.Close()
		if ino == 0 {
			ino, _ = trace.Inode("/proc/self/ns/net")
		}
		pl, err := trace.NewPoll(d, ino, port, every)
		if err != nil {
			return err
		}
		src, lost = pl, func() uint64 { return 0 }
		name := nsName
		if name == "" {
			name = "this network namespace"
			where = name + where[len("every network namespace"):]
		}
		namer = func(uint32) string { return name }
		reason := fmt.Sprintf("eBPF is not available (%v)", why)
		if errors.Is(why, os.ErrPermission) {
			reason = fmt.Sprintf("eBPF needs CAP_BPF and CAP_PERFMON (%v)", why)
		}
		if c.Bool("poll") {
			reason = "--poll"
		}
		fmt.Fprintf(errw, "tcpshake: %s: polling the socket table with sock_diag every %v in %s instead; "+
			"a state that lasts less than that between two polls is missed, and each change is timed by the poll that saw it; Ctrl-C to stop\n",
			reason, every, where)
	}
	// The source closes once more on the way out (the AfterFunc below may
	// already have closed it). That close is bounded: a watch once kept
	// running after its summary, waiting in it, and a process that exits
	// takes its eBPF programs and ring buffer with it anyway.
	defer func() {
		closed := make(chan struct{})
		go func() { src.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			fmt.Fprintln(errw, "tcpshake: warning: the kernel source did not close within 2 s; exiting anyway (the kernel frees its programs with the process)")
		}
	}()
	ctx := c.Context
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	stop := context.AfterFunc(ctx, func() { src.Close() })
	defer stop()
	// The lines go out in batches (at most watchFlushEvery late): a write
	// per line was most of what a busy watch cost.
	out := newBatchWriter(c.App.Writer, watchFlushEvery)
	defer out.Close()
	r := trace.NewRenderer(out, c.Bool("json"), namer)
	r.ShowNetns = nsName == "" && why == nil && !c.Bool("poll")
	var lines, changes, dropped uint64
	for count == 0 || lines < count {
		ev, err := src.Next()
		if err != nil {
			if errors.Is(err, trace.ErrClosed) || ctx.Err() != nil {
				break
			}
			return err
		}
		if !matchHost(ev, host) {
			continue
		}
		if ev.Change != nil {
			changes++
		}
		if ev.Drop != nil {
			dropped++
		}
		if ev.Warning == "" {
			lines++
		}
		if err := r.Event(ev); err != nil {
			return err
		}
	}
	if err := out.Close(); err != nil {
		return err
	}
	summary := fmt.Sprintf("tcpshake: %s", plural(int(changes), "state change"))
	if drops {
		summary += ", " + plural(int(dropped), "drop")
	}
	if n := lost(); n > 0 {
		summary += fmt.Sprintf(", %d kernel records lost (the ring buffer was full)", n)
	}
	fmt.Fprintln(errw, summary)
	return nil
}

// matchHost keeps events with host at either end (all when host is not
// set).
func matchHost(ev trace.Event, host netip.Addr) bool {
	if !host.IsValid() {
		return true
	}
	switch {
	case ev.Change != nil:
		return ev.Change.Local.Addr() == host || ev.Change.Remote.Addr() == host
	case ev.Drop != nil:
		return ev.Drop.Src.Addr() == host || ev.Drop.Dst.Addr() == host
	}
	return true
}
