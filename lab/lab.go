package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
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
	ClientNS, ServerNS bool // the named namespaces exist
	Link               bool // both veth ends are up and carry their addresses
	Firewall           bool // the nftables table with its chains exists in the server namespace
	LossPercent        int  // random loss set by SetLoss, 0 when none
	DaemonPID          int  // pid of a live lab daemon, 0 when none
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
	fmt.Fprintf(&b, "  namespaces: client %s, server %s\n", yes(s.ClientNS), yes(s.ServerNS))
	fmt.Fprintf(&b, "  link:       %s\n", yes(s.Link))
	fw := yes(s.Firewall)
	if s.Firewall && s.LossPercent > 0 {
		fw += fmt.Sprintf(" (random loss %d%%)", s.LossPercent)
	}
	fmt.Fprintf(&b, "  firewall:   %s\n", fw)
	if s.DaemonPID > 0 {
		fmt.Fprintf(&b, "  daemon:     running, pid %d\n", s.DaemonPID)
	} else {
		fmt.Fprintf(&b, "  daemon:     not running\n")
	}
	if len(s.Listening) == 0 {
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

// services lists the ports Serve listens on, in order.
func services() []int { return []int{PortEcho, PortHold, PortHalf, PortHTTP} }
