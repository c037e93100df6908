package probe

// rule is an RFC's rule as a scenario quotes it.
type rule struct {
	rfc      string // the section, e.g. "RFC 9293 §3.10.7.1"
	words    string // the rule, quoted exactly
	strength string // MUST, SHOULD or MAY
	note     string // how the strength was read when the words have no BCP 14 keyword
}

// impliedMust is the note of a rule of RFC 9293's event processing, which
// says what a TCP does in the indicative, without a keyword.
const impliedMust = "no BCP 14 keyword: RFC 9293 §3.10.7 states what a TCP does, read as MUST"

// The rules the scenarios test (functions: no package-level state).

func ruleClosedNoACK() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.1",
		words:    "An incoming segment not containing a RST causes a RST to be sent in response. […] If the ACK bit is off, sequence number zero is used, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>",
		strength: "MUST", note: impliedMust,
	}
}

func ruleClosedACK() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.1",
		words:    "An incoming segment not containing a RST causes a RST to be sent in response. […] If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>",
		strength: "MUST", note: impliedMust,
	}
}

func ruleListenACK() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.2",
		words:    "Any acknowledgment is bad if it arrives on a connection still in the LISTEN state. An acceptable reset segment should be formed for any arriving ACK-bearing segment. The RST should be formatted as follows: <SEQ=SEG.ACK><CTL=RST>",
		strength: "SHOULD", note: "a lower-case \"should\", not a BCP 14 keyword: read as SHOULD",
	}
}

func ruleExactRST() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.4 (RFC 5961 §3.2)",
		words:    "If the RST bit is set and the sequence number exactly matches the next expected sequence number (RCV.NXT), then TCP endpoints MUST reset the connection in the manner prescribed below according to the connection state.",
		strength: "MUST",
	}
}

func ruleInWindowRST() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.4 (RFC 5961 §3.2)",
		words:    "If the RST bit is set and the sequence number does not exactly match the next expected sequence value, yet is within the current receive window, TCP endpoints MUST send an acknowledgment (challenge ACK): <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> After sending the challenge ACK, TCP endpoints MUST drop the unacceptable segment and stop processing the incoming packet further.",
		strength: "MUST",
	}
}

func ruleOutOfWindowRST() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.4 (RFC 5961 §3.2)",
		words:    "If the RST bit is set and the sequence number is outside the current receive window, silently drop the segment.",
		strength: "MUST", note: "no BCP 14 keyword: the check is stated as what the TCP does, read as MUST",
	}
}

func ruleSYNInSync() rule {
	return rule{
		rfc:      "RFC 5961 §4.2",
		words:    "If the SYN bit is set, irrespective of the sequence number, TCP MUST send an ACK (also referred to as challenge ACK) to the remote peer: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> After sending the acknowledgment, TCP MUST drop the unacceptable segment and stop processing further.",
		strength: "MUST",
	}
}

func ruleRSTSynRcvd() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.4 (SYN-RECEIVED)",
		words:    "If this connection was initiated with a passive OPEN (i.e., came from the LISTEN state), then return this connection to LISTEN state and return.",
		strength: "MUST", note: impliedMust,
	}
}

func ruleAckUnsent() rule {
	return rule{
		rfc:      "RFC 5961 §5.2 / RFC 9293 §3.10.7.4",
		words:    "All incoming segments whose ACK value doesn't satisfy the above condition MUST be discarded and an ACK sent back. (RFC 9293: If the ACK acks something not yet sent (SEG.ACK > SND.NXT), then send an ACK, drop the segment, and return.)",
		strength: "MUST",
	}
}

func ruleThrottle() rule {
	return rule{
		rfc:      "RFC 5961 §7",
		words:    "An implementation SHOULD include an ACK throttling mechanism to be conservative. […] For example, in any 5 second window, no more than 10 challenge ACKs should be sent.",
		strength: "SHOULD",
	}
}

func ruleFINSynRcvd() rule {
	return rule{
		rfc:      "RFC 9293 §3.10.7.4 (eighth, check the FIN bit)",
		words:    "If the FIN bit is set, signal the user \"connection closing\" and return any pending RECEIVEs with same message, advance RCV.NXT over the FIN, and send an acknowledgment for the FIN. […] SYN-RECEIVED STATE, ESTABLISHED STATE: Enter the CLOSE-WAIT state.",
		strength: "MUST", note: impliedMust,
	}
}
