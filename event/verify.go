package event

// VerifyVerdict is what the verification of one open port found.
type VerifyVerdict string

// Verdicts of a verification.
const (
	VerifyAnswered    VerifyVerdict = "answered"     // the handshake completed and data came back
	VerifySilent      VerifyVerdict = "silent"       // the handshake completed, nothing came back
	VerifyReset       VerifyVerdict = "reset"        // the handshake completed, the peer reset without data
	VerifySYNProxy    VerifyVerdict = "syn-proxy"    // open?: a SYN proxy or tarpit answers here
	VerifyNoHandshake VerifyVerdict = "no-handshake" // this time the SYN-ACK did not come (or a RST did)
	VerifyError       VerifyVerdict = "error"        // could not be tried (no port, no socket)
)

// Verify is the "verify" event (probe --verify): one open port, its
// handshake completed, what came back, and what it looks like.
type Verify struct {
	Host          string        `json:"host"`
	Addr          string        `json:"addr"`
	Port          uint16        `json:"port"`
	Verdict       VerifyVerdict `json:"verdict"`
	Handshake     bool          `json:"handshake"` // the three-way handshake completed
	SynAckWindow  *uint16       `json:"synack_window"`
	SynAckOptions string        `json:"synack_options"` // as tcpdump shows them, "" for none
	ISN           *uint32       `json:"isn"`            // the peer's
	Hello         int           `json:"hello_bytes"`    // what we sent after the handshake
	Bytes         int           `json:"bytes"`          // what came back
	Data          Payload       `json:"data,omitempty"` // its first bytes (text, or "hex:…")
	PeerClosed    bool          `json:"peer_closed"`    // the peer sent FIN
	PeerReset     bool          `json:"peer_reset"`     // the peer sent RST
	ResetSent     bool          `json:"reset_sent"`     // we ended it with RST
	WaitedMs      float64       `json:"waited_ms"`      // from the handshake's end to the last look
	Evidence      []string      `json:"evidence,omitempty"`
	Why           string        `json:"why"`
}

// EventType implements Event.
func (Verify) EventType() string { return "verify" }
