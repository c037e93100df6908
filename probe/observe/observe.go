// Package observe reads a TCP socket's real state from the Linux kernel with
// sock_diag (NETLINK_INET_DIAG), in this network namespace or in a named one,
// so tcpshake can show the peer's state beside the one it infers.
//
// A [Diag] answers one question at a time ([Diag.Get], [Diag.Listening]); a
// [Watch] is its own goroutine that reads one socket's state and reports each
// change as a timestamped [Reading]; a [Merger] sits between a session and its
// renderers and annotates every step with the reading that belongs to it, in
// time order, without the session ever waiting for the kernel.
package observe

import (
	"fmt"
	"time"

	"tcpshake/probe/tcpstate"
)

// A Reading is one answer of the kernel about one socket.
type Reading struct {
	// At is when the kernel answered (time.Now right after the answer).
	At time.Time
	// State is the socket's state in RFC 9293's terms; CLOSED when Exists is
	// false.
	State tcpstate.State
	// Exists is false when the kernel has no socket for the 4-tuple: for the
	// peer of a connection that means CLOSED.
	Exists bool
	// Request is set for Linux's TCP_NEW_SYN_RECV: a request socket (a
	// listener's queue entry) waiting for the final ACK; State is then
	// SYN-RECEIVED.
	Request bool
	// Linux is the kernel's own state number (include/net/tcp_states.h), 0
	// when there is no socket.
	Linux uint8
	// Err is why the kernel could not be read; the other fields are then
	// meaningless.
	Err error
	// Kernel is set when the reading is a state change the kernel itself
	// reported (eBPF, sock:inet_sock_set_state): At is then the kernel's
	// time of the change, not the time of a look.
	Kernel bool
}

// String is the state as tcpshake shows it, e.g. "SYN-RECEIVED (request
// socket)", "CLOSED (no socket)" or "unknown (…)".
func (r Reading) String() string {
	switch {
	case r.Err != nil:
		return "unknown (" + r.Err.Error() + ")"
	case !r.Exists:
		return "CLOSED (no socket)"
	case r.Request:
		return "SYN-RECEIVED (request socket)"
	}
	return r.State.String()
}

// Observed is the state name a step's observed_state carries: the RFC name,
// or "unknown (…)" when the kernel could not be read.
func (r Reading) Observed() string {
	if r.Err != nil {
		return "unknown (" + r.Err.Error() + ")"
	}
	return r.State.String()
}

// same reports whether r and o say the same thing about the socket.
func (r Reading) same(o Reading) bool {
	if (r.Err == nil) != (o.Err == nil) {
		return false
	}
	if r.Err != nil {
		return r.Err.Error() == o.Err.Error()
	}
	return r.State == o.State && r.Exists == o.Exists && r.Request == o.Request && r.Linux == o.Linux
}

// linuxStates maps the kernel's TCP state numbers (include/net/tcp_states.h)
// to RFC 9293's states. TCP_CLOSE (7) is a socket that exists but is closed;
// TCP_NEW_SYN_RECV (12) is a request socket waiting for the final ACK.
var linuxStates = [...]struct {
	s  tcpstate.State
	ok bool
}{
	1: {tcpstate.Established, true}, 2: {tcpstate.SynSent, true}, 3: {tcpstate.SynReceived, true},
	4: {tcpstate.FinWait1, true}, 5: {tcpstate.FinWait2, true}, 6: {tcpstate.TimeWait, true},
	7: {tcpstate.Closed, true}, 8: {tcpstate.CloseWait, true}, 9: {tcpstate.LastAck, true},
	10: {tcpstate.Listen, true}, 11: {tcpstate.Closing, true}, 12: {tcpstate.SynReceived, true},
}

// linuxNewSynRecv is TCP_NEW_SYN_RECV, a request socket.
const linuxNewSynRecv = 12

// FromLinux turns a Linux TCP state number into a Reading of an existing
// socket taken at at; an unknown number gives a Reading with Err set.
func FromLinux(linux uint8, at time.Time) Reading {
	r := Reading{At: at, Exists: true, Linux: linux, Request: linux == linuxNewSynRecv}
	if int(linux) >= len(linuxStates) || !linuxStates[linux].ok {
		r.Err = fmt.Errorf("observe: unknown Linux TCP state %d", linux)
		return r
	}
	r.State = linuxStates[linux].s
	return r
}

// StateName returns RFC 9293's name for a Linux TCP state number.
func StateName(linux uint8) string {
	r := FromLinux(linux, time.Time{})
	if r.Err != nil {
		return fmt.Sprintf("linux-state-%d", linux)
	}
	return r.State.String()
}

// None is reported when the kernel has no socket for the 4-tuple: for the
// peer of a connection, CLOSED.
const None = "CLOSED"

// A Watcher is a source of readings about one socket: a [Watch], or a fake in
// tests.
type Watcher interface {
	// C delivers a Reading whenever the state changes (and the first at
	// once); it is closed after Close.
	C() <-chan Reading
	// Kick says a segment just crossed: look closely now. It never waits.
	Kick()
	// Close stops the watcher and waits for it.
	Close() error
}
