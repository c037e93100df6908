// Package probe runs tcpshake's conversations with a peer: SYN (or any
// crafted) probes that tell whether a port is open, closed or filtered and
// why, with RTT statistics.
//
// A conversation sends [craft.Segment] values through a [capture.Sender],
// receives the peer's answers from a [capture.Matcher], and reports what
// happened as [event.Event] values: the same events feed the text view, the
// JSON lines and pcapng comments. Everything that touches the system is
// passed in ([Env]), so tests drive the same code with a scripted peer and a
// fixed clock.
package probe
