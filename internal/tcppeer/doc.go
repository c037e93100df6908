// Package tcppeer is a scripted TCP server for tests of whole connections: a
// [Peer] is both the [capture.Sender] a session sends through and the
// [capture.Source] it captures from, and plays the far end of one connection
// with a fixed ISN (2000 by default), so the numbers of a handshake are the
// ones a textbook prints. Nothing touches the network.
//
// The peer answers a SYN with a SYN-ACK (ack = ISN+1, an MSS option),
// acknowledges data and echoes it back in the same segment, and answers a FIN
// with FIN-ACK. Its fields change that script: drop the N-th segment it is
// sent (to make the session retransmit), send duplicate or out-of-order
// segments, reset the connection, close first, half-close, let its FIN cross
// ours (simultaneous close), never close, refuse the port or stay silent. A
// slow peer answers later (Delay, or SYNACKDelay for the SYN-ACK alone), and
// a peer with its own SYN-RECEIVED timer (SYNACKTimeout) repeats its SYN-ACK
// until our ACK arrives, as Linux does.
//
// Every frame it delivers carries a time: our own segments the time they
// were sent, its answers that time plus RTT, and frames it sends together are
// spaced by [Gap], so they never arrive at the same instant. Read waits until
// a frame's time has come. Run inside a testing/synctest bubble, where time
// only moves when every goroutine waits, this makes a whole conversation,
// retransmission timers and TIME-WAIT included, deterministic and instant.
package tcppeer
