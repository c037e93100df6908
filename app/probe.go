package app

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe"
)

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "is a port open, closed or filtered, and why (like hping3 and nmap --reason)",
		ArgsUsage: "HOST[:PORT]",
		Description: "Sends crafted segments (a SYN by default) and classifies each port by its answer:\n" +
			"  open      syn-ack        a listener answered with SYN-ACK (we reset it at once)\n" +
			"  closed    reset          the kernel answered RST: nothing listens\n" +
			"  filtered  no-response    nothing came back (after --retries retransmissions)\n" +
			"  filtered  port-unreach…  an ICMP error quoting our segment (admin-prohibited, host-unreach, …)\n" +
			"Non-SYN probes follow nmap: FIN/NULL/Xmas silence is open|filtered, an ACK probe's RST is unfiltered.\n" +
			"Exit status: 0 if any port is open, 1 if none, 2 on usage or runtime errors.",
		Flags: append(targetFlags(),
			&cli.StringFlag{Name: "ports", Aliases: []string{"p"}, Usage: "`PORTS` to probe: 80, 22,80,443 or 1000-1010"},
			&cli.StringFlag{Name: "sport", Usage: "source `PORT`, reserved while the probe runs (default: a free one the kernel picks)"},
			&cli.StringFlag{Name: "flags", Value: "S", Usage: "TCP `FLAGS`: words (syn,ack), tcpdump letters (S.) or hping3 letters (SA)"},
			&cli.StringFlag{Name: "seq", Usage: "sequence `NUMBER` (default: random per probe, from crypto/rand)"},
			&cli.StringFlag{Name: "ack", Usage: "acknowledgment `NUMBER` (default: 0, random when ACK is set)"},
			&cli.StringFlag{Name: "window", Value: "64240", Usage: "window `SIZE`"},
			&cli.StringFlag{Name: "ttl", Value: "64", Usage: "IPv4 TTL or IPv6 hop limit `N` (1-255)"},
			mssFlag("on SYNs"),
			&cli.StringFlag{Name: "wscale", Usage: "window scale option `SHIFT` on SYNs (0-14)"},
			&cli.BoolFlag{Name: "sackok", Usage: "SACK-permitted option on SYNs"},
			&cli.BoolFlag{Name: "timestamp", Usage: "timestamps option on SYNs"},
			&cli.StringSliceFlag{Name: "option", Usage: "raw option `KIND[:HEX]`, repeatable (e.g. 30:0a0b)"},
			&cli.StringFlag{Name: "data", Usage: "payload `TEXT` (escapes \\r \\n \\t \\xNN)"},
			&cli.StringFlag{Name: "count", Aliases: []string{"c"}, Value: "1", Usage: "probes per port `N`"},
			&cli.StringFlag{Name: "interval", Aliases: []string{"i"}, Value: "1s", Usage: "`DURATION` between rounds of probes (1s, 200ms)"},
			&cli.StringFlag{Name: "timeout", Usage: "wait `DURATION` for each answer (default: adaptive like nmap: 1s until a round trip is measured — an ICMP echo first, unless --no-echo — then SRTT+4·RTTVAR within 100ms-10s)"},
			&cli.StringFlag{Name: "retries", Value: "1", Usage: "retransmit an unanswered probe `N` times before calling it silent"},
			&cli.BoolFlag{Name: "no-echo", Usage: "do not send one ICMP echo request first (its reply seeds the adaptive timeout, as nmap's host discovery does)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (docs/json.md)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only the port table and the summary"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "also show the segments sent, and every explanation"},
			writeFlag(),
		),
		Action: runProbe,
	}
}

func runProbe(c *cli.Context) error {
	cfg, iface, err := probeConfig(c)
	if err != nil {
		return err
	}
	route, err := lookup(cfg.Addr, iface, cfg.Src)
	if err != nil {
		return err
	}
	cfg.Src, cfg.Iface = route.Src, route.IfName
	if !c.IsSet("mss") {
		cfg.SYN.MSS = routeMSS(route, cfg.Addr)
	}
	if err := checkProbeSize(cfg); err != nil {
		return err
	}
	// Our kernel must not hand the port to a connection of its own while we
	// probe from it, and a port a live connection uses is refused here: a
	// SYN on that connection's 4-tuple would be answered (or dropped) as
	// part of it, and look like a filtered port.
	sport, release, err := probe.ReservePort(route.Src, cfg.SPort)
	if err != nil {
		return fmt.Errorf("--sport: %w", err)
	}
	defer release()
	cfg.SPort = sport
	live, err := probe.OpenLive(cfg.Addr, route, iface)
	if err != nil {
		return err
	}
	defer live.Close()
	env := live.Env()
	env.Sender = routeSender{env.Sender}
	var finish func() error
	env.Sink, finish = record(c, live.Matcher, sink(c), route.IfName)
	out, err := probe.Run(c.Context, cfg, env)
	if ferr := finish(); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted (%v)", context.Cause(c.Context))
		}
		return err
	}
	if out.Open == 0 {
		return exitCode(ExitNone)
	}
	return nil
}

// sink picks the renderer the flags ask for.
func sink(c *cli.Context) event.Sink {
	if c.Bool("json") {
		return event.NewJSON(c.App.Writer)
	}
	return &event.Text{W: c.App.Writer, Quiet: c.Bool("quiet"), Verbose: c.Bool("verbose")}
}

// target is where a command goes and how it leaves this host.
type target struct {
	host  string
	addr  netip.Addr
	ports []uint16
	src   netip.Addr // -s, or invalid
	iface string     // -I, or ""
}

// targetFlags are the flags every command that talks to a peer shares.
func targetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "4", Usage: "IPv4 only"},
		&cli.BoolFlag{Name: "6", Usage: "IPv6 only"},
		&cli.StringFlag{Name: "interface", Aliases: []string{"I"}, Usage: "send and capture on `IFACE` (default: from the routing table)"},
		&cli.StringFlag{Name: "source", Aliases: []string{"s"}, Usage: "source `ADDR` (default: the route's preferred source)"},
	}
}

// parseTarget reads HOST[:PORT], -p, -4/-6 and -s, and resolves the host.
func parseTarget(c *cli.Context, cmd string) (target, error) {
	var tg target
	if c.NArg() != 1 {
		return tg, usagef("%s takes one HOST[:PORT] (got %s)", cmd, plural(c.NArg(), "argument"))
	}
	host, port, err := probe.SplitTarget(c.Args().First())
	if err != nil {
		return tg, usageErr{err.Error()}
	}
	if c.Bool("4") && c.Bool("6") {
		return tg, usagef("-4 and -6 exclude each other")
	}
	if port != 0 {
		tg.ports = []uint16{port}
	}
	if c.IsSet("ports") {
		ps, err := craft.ParsePorts(c.String("ports"))
		if err != nil {
			return tg, usagef("--ports: %v", err)
		}
		tg.ports = append(tg.ports, ps...)
	}
	if len(tg.ports) == 0 {
		return tg, noPort(host)
	}
	family := 0
	if c.Bool("4") {
		family = 4
	} else if c.Bool("6") {
		family = 6
	}
	if s := c.String("source"); s != "" {
		a, err := parseAddr(s)
		if err != nil {
			return tg, usagef("--source: %v", err)
		}
		tg.src = a
		if family == 0 {
			family = 4
			if a.Is6() {
				family = 6
			}
		}
	}
	tg.addr, err = probe.Resolve(c.Context, host, family)
	if err != nil {
		if tg.src.IsValid() && !c.Bool("4") && !c.Bool("6") {
			return tg, usagef("--source %v and host %s are of different address families", tg.src, host)
		}
		return tg, usageErr{err.Error()}
	}
	if tg.src.IsValid() && tg.src.Is4() != tg.addr.Is4() {
		return tg, usagef("--source %v and host %v are of different address families", tg.src, tg.addr)
	}
	tg.host, tg.iface = host, c.String("interface")
	return tg, nil
}

// noPort is the error for a target without a port. A bare IPv6 address
// whose last group looks like a port (2001:db8::2:80) is one address: the
// hint says how to write the port.
func noPort(host string) error {
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is6() || a.Is4In6() {
		return usagef("no port: give HOST:PORT or -p PORT")
	}
	i := strings.LastIndex(host, ":")
	addr, port := host[:i], host[i+1:]
	if strings.HasSuffix(addr, ":") {
		addr = host[:i+1] // 2001:db8::80 is 2001:db8:: and 80
	}
	n, perr := strconv.ParseUint(port, 10, 16)
	if b, aerr := netip.ParseAddr(addr); aerr != nil || b.IsUnspecified() || perr != nil || n == 0 {
		return usagef("no port: give [%s]:PORT or -p PORT", host)
	}
	return usagef("no port: %s is read as one IPv6 address; for port %s on %s write [%s]:%s or -p %s", host, port, addr, addr, port, port)
}

func probeConfig(c *cli.Context) (probe.Config, string, error) {
	var cfg probe.Config
	tg, err := parseTarget(c, "probe")
	if err != nil {
		return cfg, "", err
	}
	cfg.Host, cfg.Addr, cfg.Ports, cfg.Src = tg.host, tg.addr, tg.ports, tg.src
	if cfg.Flags, err = craft.ParseFlags(c.String("flags")); err != nil {
		if strings.TrimSpace(strings.Trim(c.String("flags"), ",[]")) == "" {
			return cfg, "", usagef("--flags %q: empty flag list; for a segment with no flag at all (a NULL probe) write --flags none", c.String("flags"))
		}
		return cfg, "", usagef("--flags: %v", err)
	}
	p := numParser{c: c}
	cfg.SPort = uint16(p.uint("sport", 1, 65535))
	if c.IsSet("seq") {
		s := craft.Seq(p.uint("seq", 0, 1<<32-1))
		cfg.Seq = &s
	}
	if c.IsSet("ack") {
		a := craft.Seq(p.uint("ack", 0, 1<<32-1))
		cfg.Ack = &a
	}
	cfg.Window = uint16(p.uint("window", 0, 65535))
	cfg.TTL = uint8(p.uint("ttl", 1, 255))
	cfg.SYN = synOptions(c, &p)
	cfg.NoEcho = c.Bool("no-echo")
	cfg.Count = int(p.uint("count", 1, 1<<20))
	cfg.Retries = int(p.uint("retries", 0, 10))
	cfg.Interval = p.duration("interval")
	if c.IsSet("timeout") {
		cfg.Timeout = p.duration("timeout")
	}
	if p.err != nil {
		return cfg, "", p.err
	}
	for _, o := range c.StringSlice("option") {
		opt, err := craft.ParseOption(o)
		if err != nil {
			return cfg, "", usagef("--option: %v", err)
		}
		cfg.Options = append(cfg.Options, opt)
	}
	if c.IsSet("data") {
		if cfg.Data, err = Unescape(c.String("data")); err != nil {
			return cfg, "", usagef("--data: %v", err)
		}
	}
	return cfg, tg.iface, nil
}

// checkProbeSize builds the probe as probe.Run will, so that one too large
// for an IP packet (a 70,000-byte --data) or with too many options is
// refused before the start line and the first packet.
func checkProbeSize(cfg probe.Config) error {
	seg := craft.Segment{
		Src:     netip.AddrPortFrom(cfg.Src, 1),
		Dst:     netip.AddrPortFrom(cfg.Addr, 1),
		Flags:   cfg.Flags,
		Payload: cfg.Data,
	}
	if cfg.Flags.Has(craft.SYN) {
		seg.Options = craft.SYNOptions(cfg.SYN)
	}
	seg.Options = append(seg.Options, cfg.Options...)
	if _, err := seg.Marshal(); err != nil {
		return usagef("the probe cannot be sent: %v (--data is %s)", err, plural(len(cfg.Data), "byte"))
	}
	return nil
}

// synOptions reads --mss, --wscale, --sackok and --timestamp.
func synOptions(c *cli.Context, p *numParser) craft.SYNOptionSet {
	o := craft.SYNOptionSet{
		MSS: uint16(p.uint("mss", 0, 65535)), WScale: -1,
		SACKOK: c.Bool("sackok"), Timestamp: c.Bool("timestamp"),
	}
	if c.IsSet("wscale") {
		o.WScale = int(p.uint("wscale", 0, 14))
	}
	return o
}

// numParser reads numeric flags and keeps the first error.
type numParser struct {
	c   *cli.Context
	err error
}

func (p *numParser) uint(name string, lo, hi uint64) uint64 {
	s := p.c.String(name)
	if s == "" || p.err != nil {
		return 0
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil || v < lo || v > hi {
		p.err = usagef("--%s %s: want a whole number from %d to %d", name, s, lo, hi)
		return 0
	}
	return v
}

// duration accepts Go durations (1s, 250ms, 1m) or plain seconds (0.5),
// more than zero.
func (p *numParser) duration(name string) time.Duration {
	d, ok := p.anyDuration(name)
	if ok && d <= 0 {
		p.err = usagef("--%s %s: must be more than zero", name, p.c.String(name))
		return 0
	}
	return d
}

// durationOrZero is duration, but 0 is allowed too (--time-wait 0: skip
// it).
func (p *numParser) durationOrZero(name string) time.Duration {
	d, ok := p.anyDuration(name)
	if ok && d < 0 {
		p.err = usagef("--%s %s: must not be negative", name, p.c.String(name))
		return 0
	}
	return d
}

// anyDuration parses the flag; ok is false after an error.
func (p *numParser) anyDuration(name string) (d time.Duration, ok bool) {
	s := p.c.String(name)
	if p.err != nil {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			p.err = usagef("--%s %s: want a duration like 1s or 200ms", name, s)
			return 0, false
		}
		d = time.Duration(f * float64(time.Second))
	}
	return d, true
}

// Unescape turns \r \n \t \\ \0 and \xNN into bytes.
func Unescape(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		i++
		if i == len(s) {
			return nil, fmt.Errorf("trailing backslash in %q", s)
		}
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+3 > len(s) {
				return nil, fmt.Errorf("short \\x escape in %q", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bad \\x escape in %q", s)
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c in %q", s[i], s)
		}
	}
	return out, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}
