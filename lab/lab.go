package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultName is the lab name used when none is given.
const DefaultName = "tcpshake"

// Ports of the lab services in the server namespace.
const (
	PortEcho       = 7  // echo: echoes everything, closes after the peer's FIN
	PortHold       = 9  // hold: discards, stays in CLOSE-WAIT for HoldAfterEOF after the peer's FIN
	PortHalf       = 13 // half: sends a line and half-closes first
	PortHTTP       = 80 // http: answers one request and closes first
	PortClosed     = 81 // closed: nothing listens, the kernel answers RST
	PortDropped    = 82 // dropped: nftables drops SYNs silently
	PortRejected   = 83 // rejected: nftables answers ICMP port unreachable
	PortProhibited = 84 // prohibited: nftables answers ICMP administratively prohibited
	PortV4Only     = 85 // v4only: an echo service on 0.0.0.0 only, so IPv6 finds nothing listening
)

// Defaults of the tunable fields of Lab.
const (
	DefaultHoldAfterEOF = 3 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
	DefaultRunDir       = "/run/tcpshake"
)

// maxNameLen bounds lab names so that derived names (namespaces, pidfiles) stay short and readable.
const maxNameLen = 24

// tableName is the nftables inet table in the server namespace that holds every lab rule.
const tableName = "tcpshake_lab"

// Lab describes one two-namespace lab. It is a plain value: New fills in names and addresses and does no I/O;
// the methods act on the system.
type Lab struct {
	Name               string // prefix of every name that belongs to the lab
	ClientNS, ServerNS string // "<name>-client", "<name>-server"
	// ForgerNS is the third namespace, "<name>-forger", that exists only when Forger is set.
	ForgerNS           string
	ClientIf, ServerIf string // veth interface inside each namespace
	ClientV4, ServerV4 netip.Addr
	ClientV6, ServerV6 netip.Addr

	// HoldAfterEOF is how long the hold service (port 9) keeps a connection open after the peer's FIN, so that
	// the server socket is observably in CLOSE-WAIT. Zero means DefaultHoldAfterEOF.
	HoldAfterEOF time.Duration
	// IdleTimeout closes a service connection on which nothing was read for this long. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// RunDir holds the daemon's pidfile and log. Empty means DefaultRunDir.
	RunDir string
	// Peer is the TCP stack that serves the server's addresses: PeerLinux (empty means it) or PeerLWIP. Status
	// and Down find out which one a lab runs by themselves.
	Peer string
	// Forger makes Up join client and server through a bridge in ForgerNS instead of one veth pair, so that
	// a program in the forger namespace sees every frame of the lab link and can put its own frames on it
	// (see Flood and Forge). The client and server ends keep their names and addresses.
	Forger bool
}

// Prefix lengths of the lab subnets.
const (
	prefixV4 = 24
	prefixV6 = 64
)

// New returns the lab called name with its namespace names, interface names and addresses filled in. An empty name
// means DefaultName. New does no I/O and does not validate; every method that acts on the system first checks the
// name with ValidateName.
func New(name string) Lab {
	if name == "" {
		name = DefaultName
	}
	return Lab{
		Name:         name,
		ClientNS:     name + "-client",
		ServerNS:     name + "-server",
		ForgerNS:     name + "-forger",
		ClientIf:     "veth0",
		ServerIf:     "veth0",
		ClientV4:     netip.MustParseAddr("198.51.100.1"),
		ServerV4:     netip.MustParseAddr("198.51.100.2"),
		ClientV6:     netip.MustParseAddr("2001:db8::1"),
		ServerV6:     netip.MustParseAddr("2001:db8::2"),
		HoldAfterEOF: DefaultHoldAfterEOF,
		IdleTimeout:  DefaultIdleTimeout,
		RunDir:       DefaultRunDir,
	}
}

// ScanAddrs are the server's further addresses, for scans of many hosts: 198.51.100.3-17 and 2001:db8::3-11
// (with ServerV4 and ServerV6, 16 hosts of each family). Nothing listens on them: every port is closed, but
// for the ports the lab's firewall drops or rejects (82, 83, 84), whose rules match every server address.
func (l Lab) ScanAddrs() []netip.Addr {
	var out []netip.Addr
	v4, v6 := l.ServerV4, l.ServerV6
	for range 15 {
		v4, v6 = v4.Next(), v6.Next()
		out = append(out, v4, v6)
	}
	return out
}

// ValidateName reports whether name can name a lab: 1 to 24 characters from [a-z0-9-], not starting or ending
// with '-'.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("lab: invalid name: empty")
	case len(name) > maxNameLen:
		return fmt.Errorf("lab: invalid name %q: longer than %d characters", name, maxNameLen)
	case strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-"):
		return fmt.Errorf("lab: invalid name %q: starts or ends with '-'", name)
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return fmt.Errorf("lab: invalid name %q: only a-z, 0-9 and '-' are allowed", name)
		}
	}
	return nil
}

// check validates the lab before it touches the system.
func (l Lab) check() error {
	if err := ValidateName(l.Name); err != nil {
		return err
	}
	if l.ClientNS == "" || l.ServerNS == "" || l.ClientNS == l.ServerNS {
		return fmt.Errorf("lab: %s: client and server namespaces must be set and differ", l.Name)
	}
	if l.Forger && (l.ForgerNS == "" || l.ForgerNS == l.ClientNS || l.ForgerNS == l.ServerNS) {
		return fmt.Errorf("lab: %s: the forger namespace must be set and differ from client and server", l.Name)
	}
	if err := ValidatePeer(l.Peer); err != nil {
		return err
	}
	if l.ClientIf == "" || l.ServerIf == "" {
		return fmt.Errorf("lab: %s: interface names must be set", l.Name)
	}
	for _, a := range []netip.Addr{l.ClientV4, l.ServerV4, l.ClientV6, l.ServerV6} {
		if !inLabRange(a) {
			return fmt.Errorf("lab: %s: address %v is outside the lab ranges 198.51.100.0/24 and 2001:db8::/64",
				l.Name, a)
		}
	}
	return nil
}

// inLabRange reports whether a lies in one of the only subnets a lab may use: the documentation ranges
// 198.51.100.0/24 and 2001:db8::/64, which are never routed.
func inLabRange(a netip.Addr) bool {
	return a.IsValid() && (netip.MustParsePrefix("198.51.100.0/24").Contains(a) ||
		netip.MustParsePrefix("2001:db8::/64").Contains(a))
}

func (l Lab) holdAfterEOF() time.Duration {
	if l.HoldAfterEOF <= 0 {
		return DefaultHoldAfterEOF
	}
	return l.HoldAfterEOF
}

func (l Lab) idleTimeout() time.Duration {
	if l.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return l.IdleTimeout
}

func (l Lab) runDir() string {
	if l.RunDir == "" {
		return DefaultRunDir
	}
	return l.RunDir
}

// PIDFile is the path of the file that holds the lab daemon's process id.
func (l Lab) PIDFile() string { return filepath.Join(l.runDir(), l.Name+".pid") }

// LogFile is the path of the file that receives the lab daemon's standard output and error.
func (l Lab) LogFile() string { return filepath.Join(l.runDir(), l.Name+".log") }

// Status describes what of a lab exists on the system.
type Status struct {
	Name               string
	Peer               string // the stack that serves the server's addresses: PeerLinux or PeerLWIP
	ClientNS, ServerNS bool   // the named namespaces exist
	Link               bool   // both veth ends are up and carry their addresses
	Firewall           bool   // the nftables table with its chains exists in the server namespace
	LossPercent        int    // random loss set by SetLoss, 0 when none
	SynCookies         int    // the server namespace's net.ipv4.tcp_syncookies (0 off, 1 on overflow, 2 always)
	ForgerNS           bool   // the forger namespace exists (the lab link runs through its bridge)
	DaemonPID          int    // pid of a live lab daemon, 0 when none
	Listening          []netip.AddrPort
	Missing            []string // what Up or Serve would still have to create, in words
}

// Ready reports whether the lab exists completely and every service listens.
func (s Status) Ready() bool { return len(s.Missing) == 0 }

// String returns a human summary of several lines.
func (s Status) String() string {
	var b strings.Builder
	yes := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "missing"
	}
	fmt.Fprintf(&b, "lab %s\n", s.Name)
	if s.Peer != "" {
		fmt.Fprintf(&b, "  peer:       %s (%s)\n", s.Peer, PeerDescription(s.Peer))
	}
	fmt.Fprintf(&b, "  namespaces: client %s, server %s\n", yes(s.ClientNS), yes(s.ServerNS))
	fmt.Fprintf(&b, "  link:       %s\n", yes(s.Link))
	fw := yes(s.Firewall)
	if s.Firewall && s.LossPercent > 0 {
		fw += fmt.Sprintf(" (random loss %d%%)", s.LossPercent)
	}
	fmt.Fprintf(&b, "  firewall:   %s\n", fw)
	if s.SynCookies == 2 {
		fmt.Fprintf(&b, "  syncookies: always (net.ipv4.tcp_syncookies=2 in the server)\n")
	}
	if s.ForgerNS {
		fmt.Fprintf(&b, "  forger:     namespace %s-forger bridges the link\n", s.Name)
	}
	if s.DaemonPID > 0 {
		fmt.Fprintf(&b, "  daemon:     running, pid %d\n", s.DaemonPID)
	} else {
		fmt.Fprintf(&b, "  daemon:     not running\n")
	}
	if s.Peer == PeerLWIP && s.DaemonPID > 0 {
		fmt.Fprintf(&b, "  listening:  lwIP's own sockets (not visible to ss): ports 7 9 13 80, 85 over IPv4 only\n")
	} else if s.Peer == PeerLWIP {
		fmt.Fprintf(&b, "  listening:  nothing (the lwip peer is not running)\n")
	} else if len(s.Listening) == 0 {
		fmt.Fprintf(&b, "  listening:  nothing\n")
	} else {
		ls := make([]string, len(s.Listening))
		for i, ap := range s.Listening {
			ls[i] = ap.String()
		}
		fmt.Fprintf(&b, "  listening:  %s\n", strings.Join(ls, " "))
	}
	if len(s.Missing) == 0 {
		fmt.Fprintf(&b, "  ready\n")
	} else {
		fmt.Fprintf(&b, "  not ready, missing:\n")
		for _, m := range s.Missing {
			fmt.Fprintf(&b, "    - %s\n", m)
		}
	}
	return b.String()
}

// namespaces lists the lab's namespaces: client, server and, with Forger, the forger.
func (l Lab) namespaces() []string {
	if l.Forger {
		return []string{l.ClientNS, l.ServerNS, l.ForgerNS}
	}
	return []string{l.ClientNS, l.ServerNS}
}

// parseNetstat reads the counters of the lines starting with prefix in /proc/net/netstat format: a line of names
// followed by a line of values, both starting with prefix.
func parseNetstat(text, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	var names []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		if len(f)-1 != len(names) {
			return nil, fmt.Errorf("lab: netstat: %d values for %d names under %s", len(f)-1, len(names), prefix)
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("lab: netstat: %s %s: %w", names[i], v, err)
			}
			out[names[i]] = n
		}
		names = nil
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lab: netstat: no %s counters", prefix)
	}
	return out, nil
}

// services lists the ports Serve listens on, in order.
func services() []int { return []int{PortEcho, PortHold, PortHalf, PortHTTP} }
