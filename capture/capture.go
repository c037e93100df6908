package capture

import (
	"errors"
	"net/netip"
	"time"
)

// A Frame is one IP packet as a [Source] delivers it.
type Frame struct {
	// Data is the packet from its IP header on. It is valid until the next
	// Read on the same source.
	Data []byte
	// Time is when the packet crossed the interface (the kernel's timestamp
	// for a live source, the file's for a recorded one).
	Time time.Time
	// Outgoing is true for packets this host sent.
	Outgoing bool
}

// A Source delivers IP packets one at a time. Read blocks until a packet
// arrives or the source is closed; after Close, Read returns an error that
// wraps [ErrClosed].
type Source interface {
	Read(f *Frame) error
	Close() error
}

// A Sender puts whole IP packets (IP header included) on the wire.
type Sender interface {
	Send(pkt []byte, dst netip.Addr) error
	Close() error
}

// ErrClosed is returned by Read after the source was closed.
var ErrClosed = errors.New("capture: source closed")

// A Key names one TCP conversation from our side: our address and port, and
// the peer's.
type Key struct {
	Local, Remote netip.AddrPort
}

// Reverse is the key as the peer sees it.
func (k Key) Reverse() Key { return Key{Local: k.Remote, Remote: k.Local} }

// A Route is how a packet to a destination leaves this host.
type Route struct {
	Src     netip.Addr
	IfIndex int
	IfName  string
}
