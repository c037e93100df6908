package event

// sessionFixture is a session with everything the views must draw: long
// option lists, explanations longer than any terminal line, data, every
// kind of observation, a retransmission after t = 10 s, steps after
// t = 100 s and after a day, step numbers past 1,000, a kernel change no
// segment caused, and a reset.
func sessionFixture() []Event {
	return []Event{
		Start{Command: "handshake", Host: "198.51.100.2", Addr: "198.51.100.2", Src: "198.51.100.1:37513", Ports: []uint16{7}},
		Step{TimeMs: 0.762, Direction: "note", Local: "CLOSED", Remote: "LISTEN", Observed: "LISTEN", Agreement: Agrees,
			Explain: []string{"the peer's kernel has a socket in LISTEN on the port; our kernel's RSTs for this connection are held back by the guard"}},
		Step{N: 1, TimeMs: 0.863, Direction: "sent", Src: "198.51.100.1", Dst: "198.51.100.2", Flags: "S", Seq: 100, Window: 64240,
			Options: "[mss 1460,sackOK,TS val 2435845067 ecr 0,nop,wscale 7]", Local: "SYN-SENT", Remote: "SYN-RECEIVED",
			Observed: "SYN-RECEIVED", Agreement: Agrees,
			Explain: []string{
				"SYN: we open the connection with ISN 100 (relative 0); a SYN takes one sequence number, so our next seq is 101",
				"we offer MSS 1460: the most data we accept in one segment",
				"we: CLOSED → SYN-SENT (sent SYN: active open)",
				"peer: LISTEN → SYN-RECEIVED (received SYN: a listener answers with SYN-ACK)",
			}},
		Step{N: 2, TimeMs: 0.944, Direction: "received", Src: "198.51.100.2", Dst: "198.51.100.1", Flags: "S.", Seq: 3615022035, Ack: 101,
			RelAck: 1, Window: 65160, Options: "[mss 1460,sackOK,TS val 4267574923 ecr 2435845067,nop,wscale 7]",
			Local: "ESTABLISHED", Remote: "SYN-RECEIVED", Agreement: Cookie,
			Explain: []string{
				"SYN-ACK: the peer's ISN is 3615022035 (relative 0); ack 101 = our seq 100 + 1: a SYN takes one sequence number",
				"we: SYN-SENT → ESTABLISHED (received SYN-ACK acknowledging our SYN)",
			}},
		Step{N: 3, TimeMs: 2.074, Direction: "sent", Flags: ".", Seq: 101, Ack: 3615022036, RelSeq: 1, RelAck: 1, Window: 64240,
			Local: "ESTABLISHED", Remote: "ESTABLISHED", Observed: "ESTABLISHED", Agreement: Agrees,
			Explain: []string{"ACK: ack 3615022036 = peer seq 3615022035 + 1 (its SYN takes one sequence number); seq 101 = our ISN + 1", "the three-way handshake is complete"}},
		Step{N: 4, TimeMs: 9999.9994, Direction: "sent", Flags: "P.", Seq: 101, Ack: 3615022036, RelSeq: 1, RelAck: 1, Len: 6, Window: 64240,
			Local: "ESTABLISHED", Remote: "ESTABLISHED", Agreement: Unknown, Data: Payload("hello\n"),
			Explain: []string{"6 bytes at seq 101 (relative 1); the next byte we send will be 107 = 101 + 6"}},
		Step{N: 5, TimeMs: 12345.678, Direction: "sent", Flags: "P.", Seq: 101, Ack: 3615022036, RelSeq: 1, RelAck: 1, Len: 6, Window: 64240,
			Retrans: true, Local: "ESTABLISHED", Remote: "ESTABLISHED", Observed: "CLOSE-WAIT", Agreement: Differs,
			Explain: []string{"no ACK within the retransmission timeout (RTO 3.000 s, doubled after each retry: RFC 6298 §5.5): the segment is sent again, byte for byte"}},
		Step{N: 6, TimeMs: 12346.01, Direction: "received", Flags: "P.", Seq: 3615022036, Ack: 107, RelSeq: 1, RelAck: 7, Len: 44, Window: 64234,
			Local: "ESTABLISHED", Remote: "ESTABLISHED", Observed: "ESTABLISHED", Agreement: Agrees,
			Data:    Payload("the quick brown fox jumps over the lazy dog\n"),
			Explain: []string{"44 bytes of data from the peer (relative seq 1 to 45)"}},
		Step{TimeMs: 60000.5, Direction: DirectionObserved, Local: "ESTABLISHED", Remote: "ESTABLISHED", Observed: "CLOSE-WAIT", Agreement: Ahead,
			Explain: []string{"no step within 30 ms was observed in the new state: the peer's application closed, its FIN is on the way"}},
		Step{N: 1234, TimeMs: 150200.25, Direction: "received", Flags: "F.", Seq: 3615022080, Ack: 107, RelSeq: 45, RelAck: 7, Window: 64234,
			Local: "CLOSE-WAIT", Remote: "FIN-WAIT-1", Observed: "FIN-WAIT-1", Agreement: Ahead,
			Explain: []string{"FIN at seq 45: the peer has nothing more to send", "we: ESTABLISHED → CLOSE-WAIT (received FIN: the peer has finished sending)"}},
		Step{N: 1235, TimeMs: 150300, Direction: "received", Flags: "R", Seq: 3615022081, RelSeq: 46, Local: "CLOSED", Remote: "CLOSED",
			Explain: []string{"RST at seq 3615022081 = RCV.NXT: an exact reset (RFC 5961 §3.2); we: CLOSE-WAIT → CLOSED, the connection is gone"}},
		Step{TimeMs: 100_123_456.7, Direction: "note", Local: "CLOSED", Remote: "CLOSED",
			Explain: []string{"a day later: nothing arrived"}},
		Summary{Command: "handshake", Local: "CLOSED", Remote: "CLOSED", BytesSent: 6, BytesReceived: 44, Retransmissions: 1, Elapsed: 100_123_456.7,
			Outcome: "the peer reset the connection in CLOSE-WAIT with an exact RST (seq = RCV.NXT): nothing stays half-open on either side"},
	}
}
