package app

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"tcpshake/craft"
	"tcpshake/lab"
	"tcpshake/probe"
	"tcpshake/probe/observe"
	"tcpshake/probe/observe/trace"
)

// sessionConfig reads the session flags (sessionFlags) into the config every
// session of the command starts from, and our source port (--sport; 0: a
// free one). openWorld fills in what the route decides: the addresses, the
// MTU and, unless --mss is given, the MSS.
func sessionConfig(c *cli.Context, tg target) (probe.SessionConfig, uint16, error) {
	p := numParser{c: c}
	cfg := probe.SessionConfig{
		Host:     tg.host,
		Window:   uint16(p.uint("window", 0, 65535)),
		TTL:      uint8(p.uint("ttl", 1, 255)),
		SYN:      synOptions(c, &p),
		RTO:      p.duration("rto"),
		MaxRTO:   p.duration("rto-max"),
		Retries:  int(p.uint("retries", 1, 30)),
		TimeWait: p.durationOrZero("time-wait"),
		Timeout:  p.duration("timeout"),
		ECN:      c.Bool("ecn"),
		NoGSO:    c.Bool("no-gso"),
	}
	if cfg.TimeWait == 0 {
		cfg.TimeWait = probe.NoTimeWait // --time-wait 0: skip TIME-WAIT
	}
	if c.IsSet("isn") {
		isn := craft.Seq(p.uint("isn", 0, 1<<32-1))
		cfg.ISN = &isn
	}
	sport := uint16(p.uint("sport", 1, 65535))
	if p.err != nil {
		return probe.SessionConfig{}, 0, p.err
	}
	return cfg, sport, nil
}

// observeFlags are the flags of how the peer's kernel is read (with
// --observe-netns, or for a local peer).
func observeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "drops", Usage: "with the peer's kernel in view (a local peer or --observe-netns): say when it dropped a segment of ours, and why (its drop reason, eBPF skb:kfree_skb)"},
		&cli.BoolFlag{Name: "observe-poll", Usage: "read the peer's kernel by polling sock_diag only, not with eBPF's tracepoint (whose changes carry the kernel's own times)"},
		&cli.BoolFlag{Name: "observe-ebpf", Usage: "wait for the eBPF programs to load (about 50 ms) before the first segment, so that every change of the peer's kernel carries the kernel's own time; without it the connection starts at once and eBPF joins sock_diag when loaded (--drops always waits)"},
	}
}

// openObserver opens what reads the peer's kernel in network namespace ns
// ("" for ours): sock_diag, joined by the eBPF tracepoint when it can be
// loaded (and not --observe-poll), so the peer's changes carry the kernel's
// own times; which one is said once, in the first step. --drops needs the
// tracepoint. close releases it all.
func openObserver(c *cli.Context, ns string) (probe.Observer, func() error, error) {
	if ns != "" {
		// The lab's lwIP peer answers in that namespace from user space:
		// its kernel holds none of the peer's sockets, and drops nothing of
		// its segments. Reading it would show a peer with no socket: wrong,
		// not unknown.
		if socks, err := (lab.Lab{ServerNS: ns}).LWIPSockets(); err == nil {
			return nil, nil, usagef("--observe-netns %s: the peer there is lwIP, a TCP in a user-space program (lab up --peer lwip; %s): its sockets and drops are not in that namespace's kernel, so they are not observable; leave out --observe-netns and --drops", ns, plural(len(socks), "pcb"))
		}
	}
	d, err := observe.Open(ns)
	if err != nil {
		return nil, nil, observeError(ns, err)
	}
	where := "its network namespace " + ns
	if ns == "" {
		where = "our own network namespace"
	}
	drops := c.Bool("drops")
	if c.Bool("observe-poll") {
		if c.Bool("observe-ebpf") {
			d.Close()
			return nil, nil, usagef("--observe-ebpf waits for eBPF, and --observe-poll asks for sock_diag only")
		}
		if drops {
			d.Close()
			return nil, nil, usagef("--drops needs eBPF, and --observe-poll asks for sock_diag only")
		}
		return probe.PolledObserver(d, "the peer's kernel is read in "+where+" by polling sock_diag (--observe-poll): the times of its changes are those of the readings"), d.Close, nil
	}
	ino, err := netnsInode(ns)
	if err == nil && !drops && !c.Bool("observe-ebpf") {
		return startedKernelObserver(c, d, ns, where, ino)
	}
	var hub *trace.Hub
	if err == nil {
		hub, err = trace.OpenHub(trace.Config{Netns: ino, Drops: drops})
	}
	if err != nil {
		if drops {
			d.Close()
			return nil, nil, fmt.Errorf("--drops needs eBPF (skb:kfree_skb), which is not available: %w", err)
		}
		if c.Bool("observe-ebpf") {
			d.Close()
			return nil, nil, fmt.Errorf("--observe-ebpf: eBPF is not available: %w", err)
		}
		return probe.PolledObserver(d, fmt.Sprintf("the peer's kernel is read in %s by polling sock_diag: eBPF is not available (%v), so the times of its changes are those of the readings", where, err)), d.Close, nil
	}
	what := "sock:inet_sock_set_state"
	if drops {
		what += " and skb:kfree_skb"
	}
	note := fmt.Sprintf("the peer's kernel is read in %s through eBPF (%s: its changes at the kernel's own times) and sock_diag (what the tracepoint does not report: request sockets, no socket behind a SYN cookie)", where, what)
	for _, w := range hub.Warnings() {
		note += "; " + w
	}
	closeAll := func() error { return errors.Join(hub.Close(), d.Close()) }
	return probe.KernelObserver(d, hub, drops, note, nil), closeAll, nil
}

// startedKernelObserver is the observer without --drops: the eBPF source
// loads in the background (50-90 ms: the kernel's BTF, the verifier, the
// attaching), so the connection does not wait for it, and joins sock_diag
// once it is open; the note says so, and if it never opens, a line on
// stderr at the end says that sock_diag alone was read. (--drops waits for
// it: a drop before it is open would be missed, which is not the same as
// no drop.)
func startedKernelObserver(c *cli.Context, d *observe.Diag, ns, where string, ino uint32) (probe.Observer, func() error, error) {
	begin := make(chan struct{})
	hub := trace.StartHubAfter(trace.Config{Netns: ino}, begin)
	note := fmt.Sprintf("the peer's kernel is read in %s through sock_diag, joined by eBPF (sock:inet_sock_set_state: its changes at the kernel's own times) as soon as its programs are loaded, which begins after the handshake and which the connection does not wait for (a change before that carries its reading's time); sock_diag also shows what the tracepoint does not report (request sockets, no socket behind a SYN cookie)", where)
	closeAll := func() error {
		select {
		case <-hub.Ready():
			if err := hub.Err(); err != nil {
				fmt.Fprintf(c.App.ErrWriter, "tcpshake: eBPF could not be used (%v): the peer's kernel in %s was read by sock_diag alone, at the readings' times\n", err, where)
			}
		default:
		}
		return errors.Join(hub.Close(), d.Close())
	}
	return probe.KernelObserver(d, hub, false, note, func() { close(begin) }), closeAll, nil
}

// netnsInode is the inode of network namespace ns as ip netns names it,
// or of our own for "".
func netnsInode(ns string) (uint32, error) {
	if ns == "" {
		return trace.Inode("/proc/self/ns/net")
	}
	return trace.NetnsInode(ns)
}

// noDrops refuses --drops where the peer's kernel is not in view.
func noDrops(c *cli.Context) error {
	if c.Bool("drops") {
		return usagef("--drops needs the peer's kernel in view: a local peer, or --observe-netns NAME for a peer in a network namespace")
	}
	return nil
}
