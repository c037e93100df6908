package trace

import (
	"errors"
	"net/netip"
	"time"

	"tcpshake/craft"
	"tcpshake/probe/observe"
	"tcpshake/probe/tcpstate"
)

// Config chooses what the kernel reports.
type Config struct {
	// Netns is the inode of the only network namespace to watch
	// (stat(2) of /run/netns/NAME); 0 watches all.
	Netns uint32
	// Port keeps only sockets (and, with Drops, segments) with this port at
	// either end; 0 keeps all.
	Port uint16
	// Drops also reports TCP segments the kernel dropped, with its reason.
	Drops bool
}

var errClosed = errors.New("trace: closed")

// ErrClosed is returned by Next after Close.
var ErrClosed = errClosed

// SocketKind is what kind of kernel socket a change belongs to.
type SocketKind uint8

const (
	// Full is a full socket (struct sock), what an application holds.
	Full SocketKind = iota
	// TimeWait is the small socket (struct inet_timewait_sock) the kernel
	// keeps for a closed connection in TIME-WAIT (or, for an orphaned
	// socket, FIN-WAIT-2).
	TimeWait
	// Request is a listener's request socket (TCP_NEW_SYN_RECV), kept
	// between a SYN and the handshake's final ACK.
	Request
)

func (k SocketKind) String() string {
	switch k {
	case TimeWait:
		return "timewait"
	}
	return "full"
}

// A Change is one socket's state change.
type Change struct {
	// At is when the kernel made it (its CLOCK_MONOTONIC turned into wall
	// time), or for a poll, when the poll saw it.
	At time.Time
	// Netns is the network namespace's inode.
	Netns uint32
	// Local and Remote are the socket's ends as its owner sees them.
	Local, Remote netip.AddrPort
	From, To      tcpstate.State
	// FromLinux and ToLinux are the kernel's state numbers
	// (include/net/tcp_states.h).
	FromLinux, ToLinux uint8
	// Socket is the kind of socket in the new state.
	Socket SocketKind
	// Polled is set when a poll of the socket table saw the change: it
	// happened between that poll and the one before, and At is the poll's
	// time.
	Polled bool
	// Note says what a plain "From → To" would not.
	Note string
}

// A Drop is a TCP segment the kernel freed without delivering it, and why.
type Drop struct {
	At       time.Time
	Netns    uint32
	Src, Dst netip.AddrPort
	Flags    craft.Flags
	Seq, Ack uint32
	// Len is the segment's data bytes.
	Len int
	// Reason is the kernel's enum skb_drop_reason name without its
	// SKB_DROP_REASON_ prefix, e.g. "TCP_INVALID_SEQUENCE" or "NO_SOCKET".
	Reason string
	Code   uint32
	// Note explains a drop that is no loss, e.g. a segment a timewait
	// socket answered.
	Note string
}

// An Event is a Change, a Drop or a Warning (exactly one is set).
type Event struct {
	Change  *Change
	Drop    *Drop
	Warning string
}

// fromLinux maps a kernel state number to RFC 9293's state.
func fromLinux(n uint32) tcpstate.State {
	r := observe.FromLinux(uint8(n), time.Time{})
	return r.State
}
