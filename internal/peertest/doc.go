// Package peertest is a scripted TCP peer for tests: a [Peer] is both the
// [capture.Sender] our code sends through and the [capture.Source] it captures
// from, and answers every segment the way a real stack would, per port, with
// deterministic round-trip times. Nothing touches the network.
//
// The peer plays the remote end like gVisor's TCP test context does: a SYN to
// an open port gets a SYN-ACK whose ack is ISN+1 and whose seq is a fixed peer
// ISN, a SYN to a closed port gets RST,ACK, and segments without SYN follow
// RFC 9293 §3.10.7.1 and §3.10.7.2 (LISTEN and CLOSED). Scripts can also make
// a port silent, answer with ICMP errors quoting the probe, or send odd
// replies (a SYN-ACK with a wrong ack before the right one, duplicates). A
// [Peer.Respond] hook takes over completely for sessions that need their own
// peer logic.
package peertest
