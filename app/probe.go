package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe"
	"tcpshake/probe/guard"
)

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "is a port open, closed or filtered, and why (like hping3 and nmap --reason)",
		ArgsUsage: "HOST[:PORT] | TARGET...",
		Description: "Sends crafted segments (a SYN by default) and classifies each port by its answer:\n" +
			"  open      syn-ack        a listener answered with SYN-ACK (we reset it at once)\n" +
			"  closed    reset          the kernel answered RST: nothing listens\n" +
			"  filtered  no-response    nothing came back (after --retries retransmissions)\n" +
			"  filtered  port-unreach…  an ICMP error quoting our segment (admin-prohibited, host-unreach, …)\n" +
			"Non-SYN probes follow nmap: FIN/NULL/Xmas silence is open|filtered, an ACK probe's RST is unfiltered.\n" +
			"A scan (more than 64 probes, several TARGETs — HOST, A.B.C.D/NN, A.B.C.D-E, ADDR-ADDR —, --rate or --shard)\n" +
			"sends SYNs paced at --rate, matches answers by a SipHash cookie in the ISN, retries silent ports like nmap,\n" +
			"and lists open and filtered ports (all with -v) with nmap's 'Not shown' line and a ledger (docs/scan.md).\n" +
			"Exit status: 0 if any port is open, 1 if none, 2 on usage or runtime errors.",
		Flags: append(append(targetFlags(),
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
			&cli.StringFlag{Name: "retries", Usage: "retransmit an unanswered probe `N` times before calling it silent (default: 1; a scan: at most 10, as nmap's --max-retries, and only while retries still get answers)"},
			&cli.StringFlag{Name: "rate", Usage: "a scan sends `PPS` packets per second at most (token bucket; default 10000)"},
			&cli.BoolFlag{Name: "why", Usage: "after the results, what could explain silence: the route, interface and link state, source address, the next hop's ARP/ND entry, our own output firewall (nftables), the ICMP errors seen"},
			&cli.StringFlag{Name: "shard", Usage: "scan only part `I/N` of a fixed permutation of targets × ports (zmap's --shards; the N parts make the whole)"},
			&cli.BoolFlag{Name: "no-echo", Usage: "do not send one ICMP echo request first (its reply seeds the adaptive timeout, as nmap's host discovery does)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (docs/json.md)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only the port table and the summary"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "also show the segments sent, and every explanation"},
			writeFlag(),
		), verifyFlags()...),
		Action: runProbe,
	}
}

func runProbe(c *cli.Context) error {
	if isScan(c) {
		return runScan(c)
	}
	cfg, iface, err := probeConfig(c)
	if err != nil {
		return err
	}
	vcfg, verify, err := verifyConfig(c)
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
	env.Unreachable = unresolvedHop
	var finish func() error
	env.Sink, finish = record(c, live.Matcher, sink(c), route.IfName)
	out, err := probe.Run(c.Context, cfg, env)
	if ferr := finish(); ferr != nil && err == nil {
		err = ferr
	}
	if c.Bool("why") {
		var icmp []string
		for _, r := range out.Results {
			if r.From != "" {
				icmp = append(icmp, fmt.Sprintf("%d/tcp %s from %s", r.Port, r.Reason, r.From))
			}
		}
		printWhy(whyWriter(c), []netip.Addr{cfg.Addr}, iface, cfg.Src, icmp)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted (%v)", context.Cause(c.Context))
		}
		return err
	}
	if verify {
		if err := runVerify(c.Context, vcfg, probeVerifyHosts(cfg, out), iface, cfg.Src, verifyJSON(c), c.App.Writer); err != nil {
			return err
		}
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
	if err := probe.Sendable(tg.addr); err != nil {
		return tg, usageErr{err.Error()}
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
	cfg.Retries = 1
	if c.IsSet("retries") {
		cfg.Retries = int(p.uint("retries", 0, 10))
	}
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

// scanThreshold is the most (host, port) probes the conversation engine
// takes; beyond it, or with several targets, --rate or --shard, probe scans.
const scanThreshold = 64

// defaultRate is a scan's rate without --rate.
const defaultRate = 10000

// isScan tells whether the command line asks for a scan.
func isScan(c *cli.Context) bool {
	if c.NArg() > 1 || c.IsSet("rate") || c.IsSet("shard") {
		return true
	}
	if a := c.Args().First(); strings.Contains(a, "/") || (strings.Contains(a, "-") && probeRangeLike(a)) {
		return true
	}
	if c.IsSet("ports") {
		ps, err := craft.ParsePorts(c.String("ports"))
		return err == nil && len(ps) > scanThreshold
	}
	return false
}

// probeRangeLike tells a range (198.51.100.2-17, 2001:db8::2-2001:db8::11)
// from a host name with a dash.
func probeRangeLike(a string) bool {
	i := strings.LastIndex(a, "-")
	_, err := netip.ParseAddr(a[:i])
	return err == nil
}

// scanOnly are the flags that shape a single probe and that a scan, which
// sends plain SYNs, refuses.
var scanOnly = []string{"flags", "seq", "ack", "data", "option", "count", "interval", "write", "no-echo"}

func scanConfig(c *cli.Context) (probe.ScanConfig, string, error) {
	var cfg probe.ScanConfig
	for _, f := range scanOnly {
		if c.IsSet(f) && !(f == "flags" && isPlainSYN(c.String(f))) {
			return cfg, "", usagef("--%s shapes single probes: a scan (more than %d probes, several targets, --rate or --shard) sends plain SYNs; probe at most %d ports of one host to use it", f, scanThreshold, scanThreshold)
		}
	}
	if c.NArg() == 0 {
		return cfg, "", usagef("probe takes a HOST[:PORT] or TARGETs to scan")
	}
	if c.Bool("4") && c.Bool("6") {
		return cfg, "", usagef("-4 and -6 exclude each other")
	}
	var argPort uint16
	for _, arg := range c.Args().Slice() {
		r, port, err := scanTarget(c, arg)
		if err != nil {
			return cfg, "", err
		}
		if port != 0 {
			if argPort != 0 && argPort != port {
				return cfg, "", usagef("%s: several targets with different :PORTs; give the ports with -p", arg)
			}
			argPort = port
		}
		cfg.Ranges = append(cfg.Ranges, r)
	}
	if argPort != 0 {
		cfg.Ports = append(cfg.Ports, argPort)
	}
	if c.IsSet("ports") {
		ps, err := craft.ParsePorts(c.String("ports"))
		if err != nil {
			return cfg, "", usagef("--ports: %v", err)
		}
		cfg.Ports = append(cfg.Ports, ps...)
	}
	slices.Sort(cfg.Ports)
	cfg.Ports = slices.Compact(cfg.Ports)
	if len(cfg.Ports) == 0 {
		return cfg, "", usagef("no port: give -p PORTS (1-65535 for all)")
	}
	var hosts uint64
	for _, r := range cfg.Ranges {
		hosts += r.N
	}
	if hosts > probe.MaxScanHosts {
		return cfg, "", usagef("%d hosts: one scan takes at most %d; split the targets", hosts, probe.MaxScanHosts)
	}
	if n := hosts * uint64(len(cfg.Ports)); n > probe.MaxScanProbes {
		return cfg, "", usagef("%d hosts × %s = %d probes: one scan takes at most %d (it keeps 10 bytes for each); split the targets", hosts, plural(len(cfg.Ports), "port"), n, probe.MaxScanProbes)
	}
	p := numParser{c: c}
	cfg.Rate = defaultRate
	if c.IsSet("rate") {
		cfg.Rate = float64(p.uint("rate", 1, 100_000_000))
	}
	cfg.Retries = 10
	if c.IsSet("retries") {
		cfg.Retries = int(p.uint("retries", 0, 10))
	}
	if c.IsSet("timeout") {
		cfg.Timeout = p.duration("timeout")
	}
	cfg.Window = uint16(p.uint("window", 0, 65535))
	cfg.TTL = uint8(p.uint("ttl", 1, 255))
	cfg.SYN = synOptions(c, &p)
	cfg.SPort = uint16(p.uint("sport", 1, 65535))
	if p.err != nil {
		return cfg, "", p.err
	}
	if c.IsSet("shard") {
		if _, err := fmt.Sscanf(c.String("shard"), "%d/%d", &cfg.Shard, &cfg.Shards); err != nil ||
			cfg.Shards < 1 || cfg.Shard < 1 || cfg.Shard > cfg.Shards || fmt.Sprintf("%d/%d", cfg.Shard, cfg.Shards) != c.String("shard") {
			return cfg, "", usagef("--shard %s: want I/N with 1 ≤ I ≤ N, e.g. 2/4", c.String("shard"))
		}
	}
	cfg.Verbose = c.Bool("verbose")
	return cfg, c.String("interface"), nil
}

func isPlainSYN(s string) bool {
	f, err := craft.ParseFlags(s)
	return err == nil && f == craft.SYN
}

// scanTarget reads one target: an address, prefix or range, or a host
// name (resolved), with an optional :PORT on a host.
func scanTarget(c *cli.Context, arg string) (probe.ScanRange, uint16, error) {
	if strings.Contains(arg, "/") || (strings.Contains(arg, "-") && probeRangeLike(arg)) {
		r, err := probe.ParseScanTarget(arg)
		if err != nil {
			return r, 0, usageErr{err.Error()}
		}
		if err := scanFamily(c, r.First); err != nil {
			return r, 0, err
		}
		return r, 0, nil
	}
	host, port, err := probe.SplitTarget(arg)
	if err != nil {
		return probe.ScanRange{}, 0, usageErr{err.Error()}
	}
	family := 0
	if c.Bool("4") {
		family = 4
	} else if c.Bool("6") {
		family = 6
	}
	a, err := probe.Resolve(c.Context, host, family)
	if err != nil {
		return probe.ScanRange{}, 0, usageErr{err.Error()}
	}
	r, err := probe.ParseScanTarget(a.String())
	if err != nil {
		return r, 0, usageErr{err.Error()}
	}
	r.Name = host
	return r, port, nil
}

func scanFamily(c *cli.Context, a netip.Addr) error {
	switch {
	case c.Bool("4") && !a.Is4():
		return usagef("%v is an IPv6 address, but -4 was given", a)
	case c.Bool("6") && !a.Is6():
		return usagef("%v is an IPv4 address, but -6 was given", a)
	}
	return nil
}

// scanLive is the sockets of one scan.
type scanLive struct {
	env      probe.ScanEnv
	source   *capture.ScanSocket
	senders  []*capture.RawSender
	releases []func() error
	iface    string
}

func (l *scanLive) Close() error {
	var errs []error
	for _, s := range l.senders {
		errs = append(errs, s.Close())
	}
	for _, r := range l.releases {
		errs = append(errs, r())
	}
	if l.source != nil {
		errs = append(errs, l.source.Close())
	}
	return errors.Join(errs...)
}

// openScan finds the routes, reserves the source port on every source
// address, and opens the senders and the receiving socket. A range's route
// is the one of its first address that is not one of ours (a /24 that holds
// our own address would otherwise be sent via lo); the replies are read on
// every interface, so that a range whose addresses take different ways out
// (ours among them) loses none.
func openScan(cfg *probe.ScanConfig, bindIface string, src netip.Addr) (*scanLive, error) {
	l := &scanLive{}
	ifaces := map[string]bool{}
	local := localAddrs()
	for i := range cfg.Ranges {
		r := &cfg.Ranges[i]
		var s netip.Addr
		if src.IsValid() && src.Is4() == r.First.Is4() {
			s = src
		}
		dst := r.First
		for a, n := r.First, 0; n < 4 && uint64(n) < r.N; a, n = a.Next(), n+1 {
			if !local[a] {
				dst = a
				break
			}
		}
		route, err := lookup(dst, bindIface, s)
		if err != nil {
			l.Close()
			return nil, err
		}
		r.Src = route.Src
		ifaces[route.IfName] = true
		if cfg.SYN.MSS == 0 {
			cfg.SYN.MSS = routeMSS(route, dst)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ifaces)) {
		l.iface += map[bool]string{true: ",", false: ""}[l.iface != ""] + name
	}
	reserved := map[netip.Addr]bool{}
	for _, r := range cfg.Ranges {
		if reserved[r.Src] {
			continue
		}
		port, release, err := probe.ReservePort(r.Src, cfg.SPort)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("source port: %w", err)
		}
		reserved[r.Src], cfg.SPort = true, port
		l.releases = append(l.releases, release)
	}
	// The receive buffer holds a quarter of a second of answers (about
	// 1 KiB of kernel memory each), so a reader that stalls that long
	// loses nothing; what it still loses, PACKET_STATISTICS reports.
	rcvbuf := min(max(int(cfg.Rate/4)*1024, 4<<20), 256<<20)
	src2, err := capture.OpenScanSocket(0, cfg.SPort, rcvbuf, 64)
	if err != nil {
		l.Close()
		return nil, liveError(err)
	}
	l.source = src2
	for _, v6 := range []bool{false, true} {
		need := false
		for _, r := range cfg.Ranges {
			need = need || r.First.Is6() == v6
		}
		if !need {
			continue
		}
		s, err := capture.OpenRawSender(v6, bindIface, guard.Mark)
		if err != nil {
			l.Close()
			return nil, liveError(err)
		}
		l.senders = append(l.senders, s)
		if v6 {
			l.env.Sender6 = routeBatch{s}
		} else {
			l.env.Sender4 = routeBatch{s}
		}
	}
	l.env.Source = src2
	l.env.Clock = probe.RealClock{}
	l.env.Unreachable = unresolvedHop
	rand.Read(l.env.Key[:])
	return l, nil
}

func liveError(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: %w", probe.ErrNeedRaw, err)
	}
	return err
}

// localAddrs are this host's addresses.
func localAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				out[a.Unmap()] = true
			}
		}
	}
	return out
}

// unresolvedHop says why nothing left for host when its link is down or its
// next hop never answered ARP or neighbour discovery; "" otherwise.
func unresolvedHop(host netip.Addr) (reason, why string) {
	h, err := capture.LookupNextHop(host)
	if err == nil && h.LinkDown {
		return "link-down", fmt.Sprintf("the link %s is down (%s, no carrier): our SYNs never left this host", h.IfName, h.LinkState)
	}
	if err != nil || !h.Unresolved() {
		return "", ""
	}
	proto := "ARP"
	if h.Addr.Is6() {
		proto = "neighbour discovery"
	}
	return "no-neighbour", fmt.Sprintf("the next hop %v on %s never answered %s (neighbour %s): our SYNs never left this host (no host there, or it is down)", h.Addr, h.IfName, proto, h.State)
}

// routeBatch names the route when the kernel refuses to send.
type routeBatch struct{ *capture.RawSender }

// SendBatch sends the packets.
func (s routeBatch) SendBatch(pkts [][]byte, dsts []netip.Addr) (int, error) {
	n, err := s.RawSender.SendBatch(pkts, dsts)
	if err != nil && n < len(dsts) {
		err = capture.CheckRoute(dsts[n], err)
	}
	return n, err
}

func runScan(c *cli.Context) error {
	cfg, iface, err := scanConfig(c)
	if err != nil {
		return err
	}
	vcfg, verify, err := verifyConfig(c)
	if err != nil {
		return err
	}
	var src netip.Addr
	if s := c.String("source"); s != "" {
		if src, err = parseAddr(s); err != nil {
			return usagef("--source: %v", err)
		}
		for i := range cfg.Ranges {
			if cfg.Ranges[i].First.Is4() != src.Is4() {
				return usagef("--source %v and target %s are of different address families", src, cfg.Ranges[i].Name)
			}
		}
	}
	live, err := openScan(&cfg, iface, src)
	if err != nil {
		return err
	}
	defer live.Close()
	w := c.App.Writer
	text := !c.Bool("json")
	var js *event.JSON
	if !text {
		js = event.NewJSON(w)
	}
	r := &scanText{w: w, verbose: c.Bool("verbose"), quiet: c.Bool("quiet")}
	live.env.Emit = func(e event.Event) {
		if js != nil {
			js.Emit(e)
		}
	}
	n := 0
	for _, rg := range cfg.Ranges {
		n += int(rg.N)
	}
	probes := n * len(cfg.Ports)
	if cfg.Shards > 1 {
		probes = (probes + cfg.Shards - 1) / cfg.Shards
	}
	if js != nil {
		js.Emit(event.Start{Command: "probe", Host: strings.Join(c.Args().Slice(), " "), Addr: cfg.Ranges[0].First.String(),
			Src: cfg.Ranges[0].Src.String(), Interface: live.iface, Flags: "S", Count: 1})
	} else {
		r.start(cfg, live.iface, probes)
	}
	if eta := time.Duration(float64(probes) / cfg.Rate * float64(time.Second)); eta > 10*time.Second {
		fmt.Fprintf(c.App.ErrWriter, "note: %d probes at %g per second take at least %v; --rate raises it\n", probes, cfg.Rate, eta.Round(time.Second))
	}
	if bar := newScanBar(c.App.ErrWriter, probes); bar != nil {
		live.env.Progress = bar.update
		defer bar.done()
	}
	out, err := probe.RunScan(c.Context, cfg, live.env)
	if text {
		r.finish(out)
	}
	if verify && err == nil {
		err = runVerify(c.Context, vcfg, scanVerifyHosts(out), iface, src, js, w)
	}
	if c.Bool("why") {
		var dsts []netip.Addr
		for _, rg := range cfg.Ranges {
			dsts = append(dsts, rg.First)
		}
		icmp := map[string]int{}
		for _, res := range out.Results {
			if res.From != "" {
				icmp[res.Reason+" from "+res.From]++
			}
		}
		var seen []string
		for _, k := range slices.Sorted(maps.Keys(icmp)) {
			seen = append(seen, fmt.Sprintf("%s (%s)", k, plural(icmp[k], "port")))
		}
		printWhy(whyWriter(c), dsts, iface, src, seen)
	}
	if js != nil && js.Err() != nil && err == nil {
		err = js.Err()
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted (%v): the results so far are above", context.Cause(c.Context))
		}
		return err
	}
	if out.Ledger.Open == 0 {
		return exitCode(ExitNone)
	}
	return nil
}

// whyWriter is where --why writes: the output in text, stderr with --json
// (its lines are not events).
func whyWriter(c *cli.Context) io.Writer {
	if c.Bool("json") {
		return c.App.ErrWriter
	}
	return c.App.Writer
}

// printWhy prints the checks of --why for each destination: what this host
// does with a packet to it, and what came back.
func printWhy(w io.Writer, dsts []netip.Addr, iface string, src netip.Addr, icmp []string) {
	fmt.Fprintln(w, "\nwhy (what could keep answers away):")
	for _, dst := range dsts {
		var s netip.Addr
		if src.IsValid() && src.Is4() == dst.Is4() {
			s = src
		}
		route, err := capture.Lookup(dst, iface, s)
		if err != nil {
			fmt.Fprintf(w, "  route to %v: %v\n", dst, err)
			continue
		}
		fmt.Fprintf(w, "  route to %v: interface %s, source %v, MTU %d\n", dst, route.IfName, route.Src, route.MTU)
		h, err := capture.LookupNextHop(dst)
		switch {
		case err != nil:
			fmt.Fprintf(w, "  next hop: %v\n", err)
		default:
			hop := "the host itself, on the link"
			if h.Addr != dst {
				hop = fmt.Sprintf("gateway %v", h.Addr)
			}
			state := h.State
			if state == "" {
				state = "no entry (nothing sent there yet)"
			}
			fmt.Fprintf(w, "  link %s: %s", h.IfName, h.LinkState)
			if h.LinkDown {
				fmt.Fprint(w, " — down or no carrier: nothing leaves by it")
			}
			fmt.Fprintf(w, "\n  next hop: %s; neighbour entry %s", hop, state)
			if h.Unresolved() {
				fmt.Fprint(w, " — it never answered ARP/neighbour discovery: our packets do not leave")
			}
			fmt.Fprintln(w)
		}
	}
	chains, err := capture.OutputChains()
	switch {
	case err != nil:
		fmt.Fprintf(w, "  our output firewall: cannot read it: %v\n", err)
	case len(chains) == 0:
		fmt.Fprintln(w, "  our output firewall: no nftables chain on the output hook")
	default:
		fmt.Fprintf(w, "  our output firewall (nftables output hook, may drop what we send): %s\n", strings.Join(chains, "; "))
	}
	fmt.Fprintln(w, "  capabilities: the raw and packet sockets opened (CAP_NET_RAW)")
	if len(icmp) == 0 {
		fmt.Fprintln(w, "  ICMP errors seen: none")
	} else {
		fmt.Fprintf(w, "  ICMP errors seen: %s\n", strings.Join(icmp, ", "))
	}
}

// scanText prints a scan as nmap does: per host the open and filtered ports
// (every port with -v), the "Not shown" line, then the ledger.
type scanText struct {
	w              io.Writer
	verbose, quiet bool
	cfg            probe.ScanConfig
}

func (t *scanText) start(cfg probe.ScanConfig, iface string, probes int) {
	t.cfg = cfg
	names := make([]string, len(cfg.Ranges))
	for i, r := range cfg.Ranges {
		names[i] = r.Name
	}
	shard := ""
	if cfg.Shards > 1 {
		shard = fmt.Sprintf(", shard %d/%d", cfg.Shard, cfg.Shards)
	}
	fmt.Fprintf(t.w, "SYN scan of %s: %s × %s = %s%s, at most %g per second, from %v:%d on %s\n",
		strings.Join(names, " "), plural(int(probe.HostCount(cfg.Ranges)), "host"), plural(len(cfg.Ports), "port"),
		plural(probes, "probe"), shard, cfg.Rate, cfg.Ranges[0].Src, cfg.SPort, iface)
}

func (t *scanText) finish(out probe.ScanOutcome) {
	byHost := map[string][]event.Result{}
	for _, r := range out.Results {
		byHost[r.Addr] = append(byHost[r.Addr], r)
	}
	shown := 0
	for _, h := range out.Hosts {
		rs := byHost[h.Addr.String()]
		total := h.Open + h.Closed + h.Filtered + h.Undecided
		if total == 0 {
			continue // not in this shard
		}
		if h.Unreachable != "" && h.Open+h.Closed+h.ICMP == 0 && !t.verbose {
			fmt.Fprintf(t.w, "\n%v: %s undecided: %s\n", h.Addr, plural(total, "port"), h.Unreachable)
			continue
		}
		if h.Open+h.Closed == 0 && len(out.Hosts) > 1 && !t.verbose && h.Undecided == 0 {
			fmt.Fprintf(t.w, "\n%v: all %s filtered (%s): nothing answered\n", h.Addr, plural(total, "port"), filteredWhy(rs))
			continue
		}
		fmt.Fprintf(t.w, "\n%v", h.Addr)
		if h.Name != h.Addr.String() {
			fmt.Fprintf(t.w, " (%s)", h.Name)
		}
		fmt.Fprintln(t.w, ":")
		slices.SortFunc(rs, func(a, b event.Result) int { return int(a.Port) - int(b.Port) })
		if len(rs) > 0 {
			fmt.Fprintf(t.w, "%-9s %-10s %-17s %10s %4s %6s %s\n", "PORT", "STATE", "REASON", "RTT", "TTL", "WINDOW", "PROBES")
		}
		interrupted := 0
		for _, r := range rs {
			if r.Reason == "interrupted" && !t.verbose {
				interrupted++
				continue
			}
			rtt, ttl, win := "-", "-", "-"
			if r.RTTMs != nil {
				rtt = fmt.Sprintf("%.3f ms", *r.RTTMs)
			}
			if r.TTL != nil {
				ttl = fmt.Sprint(*r.TTL)
			}
			if r.Window != nil {
				win = fmt.Sprint(*r.Window)
			}
			reason := r.Reason
			if r.From != "" && r.From != r.Addr {
				reason += " from " + r.From
			}
			fmt.Fprintf(t.w, "%-9s %-10s %-17s %10s %4s %6s %d\n", fmt.Sprintf("%d/tcp", r.Port), r.State, reason, rtt, ttl, win, r.Sent)
			shown++
		}
		if !t.verbose && h.Closed > 0 {
			fmt.Fprintf(t.w, "Not shown: %d closed tcp %s (%s)\n", h.Closed, pluralWord(h.Closed, "port"), h.ClosedReason)
		}
		if interrupted > 0 {
			fmt.Fprintf(t.w, "Not shown: %d undecided tcp %s (interrupted before their wait ran out)\n", interrupted, pluralWord(interrupted, "port"))
		}
	}
	l := out.Ledger
	fmt.Fprintf(t.w, "\n--- scan: %s, %d open, %d closed, %d filtered, %d undecided ---\n",
		plural(l.Probes, "probe"), l.Open, l.Closed, l.Filtered, l.Undecided)
	fmt.Fprintf(t.w, "ledger: %d answered at the first probe + %d after a retry + %d silent after every retry + %d silent while our kernel dropped replies + %d silent on hosts our SYNs never left for + %d refused by our own firewall + %d interrupted = %d\n",
		l.Answered, l.AnsweredRetry, l.Silent, l.KernelDropped, l.NeverLeft, l.OurFirewall, l.Interrupted,
		l.Answered+l.AnsweredRetry+l.Silent+l.KernelDropped+l.NeverLeft+l.OurFirewall+l.Interrupted)
	fmt.Fprintf(t.w, "sent: %s (%s, at most %d to one port), the first SYNs at %.0f per second; replies our kernel dropped before we read them: %d (PACKET_STATISTICS)",
		plural(out.Sent, "SYN"), plural(l.Retransmissions, "retransmission"), l.MaxTries, l.SentPPS, l.Drops)
	if l.Duplicates > 0 {
		fmt.Fprintf(t.w, "; %s to ports already decided", plural(l.Duplicates, "duplicate answer"))
	}
	fmt.Fprintln(t.w)
	if out.RTT != nil {
		fmt.Fprintf(t.w, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", out.RTT.Min, out.RTT.Avg, out.RTT.Max, out.RTT.Mdev)
	}
	if len(out.Ignored) > 0 {
		keys := slices.Sorted(maps.Keys(out.Ignored))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %d", k, out.Ignored[k])
		}
		fmt.Fprintf(t.w, "ignored (not an answer to one of our probes): %s\n", strings.Join(parts, ", "))
	}
	if n := icmpSilenced(out.Hosts); n > 0 {
		fmt.Fprintf(t.w, "note: %s silent on hosts that answered other ports with ICMP errors: a host rate-limits its ICMP errors (Linux: one a second to one destination after a burst of 6), so some may be rejects it did not send\n", plural(n, "port"))
	}
	if l.OurFirewall > 0 {
		fmt.Fprintf(t.w, "undecided: this host's own firewall refused %s (netfilter output hook: operation not permitted); see nft list ruleset\n", plural(l.OurFirewall, "SYN"))
	}
	if l.KernelDropped > 0 {
		fmt.Fprintf(t.w, "undecided: %s stayed silent while our kernel dropped %d replies; run again with a lower --rate\n", plural(l.KernelDropped, "port"), l.Drops)
	}
}

// icmpSilenced counts the silent ports of hosts that sent ICMP errors for
// others, when there were enough errors for a peer's rate limit to begin.
func icmpSilenced(hosts []probe.ScanHost) int {
	n, icmp := 0, 0
	for _, h := range hosts {
		icmp += h.ICMP
		if h.ICMP > 0 {
			n += h.Filtered - h.ICMP
		}
	}
	if icmp < icmpBurst {
		return 0 // too few errors for a rate limit to have begun
	}
	return n
}

// icmpBurst is how many ICMP errors Linux sends to one destination before
// its rate limit (XRLIM_BURST_FACTOR).
const icmpBurst = 6

// filteredWhy is the reason common to a silent host's ports.
func filteredWhy(rs []event.Result) string {
	if len(rs) > 0 {
		return rs[0].Reason
	}
	return "no-response"
}

func pluralWord(n int, w string) string {
	if n == 1 {
		return w
	}
	return w + "s"
}

// scanBar is the progress bar on a terminal's stderr.
type scanBar struct {
	bar *progressbar.ProgressBar
}

func newScanBar(w io.Writer, total int) *scanBar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &scanBar{bar: progressbar.NewOptions(total, progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription("scan"), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))}
}

func (b *scanBar) update(sent, decided, total int) {
	b.bar.Set(max(sent, decided))
	b.bar.Describe(fmt.Sprintf("scan: %d decided", decided))
}

func (b *scanBar) done() {
	b.bar.Finish()
	b.bar.Exit()
}
