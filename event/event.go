// Package event defines the one stream of events every tcpshake command
// produces: steps (segments sent or received, with their explanation and the
// states after them), results, scenario verdicts, connections, warnings and
// summaries. The text view, the JSON lines and the pcapng comments are three
// renderings of the same events, so they cannot tell different stories.
package event

import (
	"encoding/hex"
	"fmt"
	"unicode/utf8"
)

// An Event is one item of the stream. Type is the JSON "type" field.
type Event interface {
	EventType() string
}

// A Sink receives events in order.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(e Event) { f(e) }

// Start opens a probe run: where the probes go and how they leave.
type Start struct {
	Command   string   `json:"command"`
	Host      string   `json:"host"`
	Addr      string   `json:"addr"`
	Src       string   `json:"src"`
	Interface string   `json:"interface"`
	Ports     []uint16 `json:"ports"`
	Flags     string   `json:"flags"`
	Count     int      `json:"count"`
	HeaderLen int      `json:"header_bytes"`
	DataLen   int      `json:"data_bytes"`
	// Conn names the connection when several run at once (listen): our
	// end and the client's, "198.51.100.2:8000-198.51.100.1:40000".
	Conn string `json:"conn,omitempty"`
}

// EventType implements Event.
func (Start) EventType() string { return "start" }

// Step is one segment sent or received (or an ICMP error received), with the
// arithmetic that explains its numbers and the states after it.
type Step struct {
	N         int      `json:"n"`
	TimeMs    float64  `json:"t_ms"`
	Direction string   `json:"direction"` // "sent", "received", "note" (a timer or decision, no segment) or DirectionObserved
	Src       string   `json:"src"`
	Dst       string   `json:"dst"`
	Flags     string   `json:"flags"`      // tcpdump letters, e.g. "S."
	FlagNames string   `json:"flag_names"` // Wireshark words, e.g. "SYN, ACK"
	Seq       uint32   `json:"seq"`
	Ack       uint32   `json:"ack"`
	RelSeq    uint32   `json:"rel_seq"`
	RelAck    uint32   `json:"rel_ack"`
	Len       int      `json:"len"`
	Window    uint16   `json:"window"`
	TTL       uint8    `json:"ttl,omitempty"`
	Options   string   `json:"options,omitempty"`
	Data      Payload  `json:"data,omitempty"` // payload, text or hex
	RTTMs     *float64 `json:"rtt_ms,omitempty"`
	ICMP      string   `json:"icmp,omitempty"` // nmap-style reason of an ICMP error
	Retrans   bool     `json:"retransmission,omitempty"`
	// Analysis names what Wireshark's TCP sequence analysis finds about the
	// segment (analyze): "retransmission", "spurious-retransmission",
	// "duplicate-ack", "keep-alive", "window-update"... (docs/analyze.md).
	Analysis []string `json:"analysis,omitempty"`
	// Ignored: a received segment our end did not accept (outside the
	// window, a forged or stale ack, a non-exact RST...): it changed nothing.
	Ignored  bool     `json:"ignored,omitempty"`
	Explain  []string `json:"explain,omitempty"`
	Local    string   `json:"local_state,omitempty"`
	Remote   string   `json:"remote_state,omitempty"`
	Observed string   `json:"observed_state,omitempty"`
	// Agreement compares Observed with Remote (see [Agreement]); set by the
	// observer together with Observed.
	Agreement Agreement `json:"observed_agreement,omitempty"`
	Probe     bool      `json:"-"`              // a probe's step: the text view shows received ones only
	Conn      string    `json:"conn,omitempty"` // the connection, when several run at once (see Start.Conn)
	// ObservedMs is when the observed state was read, or, from the kernel's
	// own records (eBPF), when the kernel changed to it, in ms since the
	// start like TimeMs.
	ObservedMs *float64 `json:"observed_t_ms,omitempty"`
	// Dropped is the peer kernel's reason for dropping this segment (enum
	// skb_drop_reason without its prefix, e.g. TCP_INVALID_SEQUENCE), from
	// its drop record (--drops); empty without a record.
	Dropped string `json:"dropped,omitempty"`
}

// EventType implements Event.
func (Step) EventType() string { return "step" }

// Result is the verdict on one port.
type Result struct {
	Host     string   `json:"host"`
	Addr     string   `json:"addr"`
	Port     uint16   `json:"port"`
	State    string   `json:"state"`  // open, closed, filtered, unfiltered, open|filtered, undecided (interrupted, error)
	Reason   string   `json:"reason"` // syn-ack, reset, no-response, port-unreach, ...
	From     string   `json:"from,omitempty"`
	RTTMs    *float64 `json:"rtt_ms"`
	TTL      *uint8   `json:"ttl"`
	Window   *uint16  `json:"window"`
	Sent     int      `json:"sent"`
	Received int      `json:"received"`
}

// EventType implements Event.
func (Result) EventType() string { return "result" }

// Summary closes a run with ping-style statistics.
type Summary struct {
	Command  string            `json:"command"`
	Host     string            `json:"host"`
	Sent     int               `json:"sent"`
	Received int               `json:"received"`
	LossPct  float64           `json:"loss_pct"`
	RTT      *RTTStats         `json:"rtt_ms,omitempty"`
	Ignored  map[string]uint64 `json:"ignored,omitempty"`
	Open     int               `json:"open"`
	Elapsed  float64           `json:"elapsed_ms"`

	// Sessions (handshake, shell) report how the connection ended.
	Local           string  `json:"local_state,omitempty"`
	Remote          string  `json:"remote_state,omitempty"`
	Observed        string  `json:"observed_state,omitempty"`
	BytesSent       int     `json:"bytes_sent,omitempty"`
	BytesReceived   int     `json:"bytes_received,omitempty"`
	Retransmissions int     `json:"retransmissions,omitempty"`
	SRTTMs          float64 `json:"srtt_ms,omitempty"`
	Outcome         string  `json:"outcome,omitempty"`
	// Segments counts the connection's segments by phase, as the teaching
	// texts do (handshake, listen).
	Segments *SegmentCount `json:"segments,omitempty"`
	Conn     string        `json:"conn,omitempty"` // the connection, when several run at once (see Start.Conn)

	// rst: every scenario's verdict, for the final table.
	Scenarios []Scenario `json:"scenarios,omitempty"`

	// Scan is a scan's ledger (probe with the scan engine, docs/scan.md).
	Scan *ScanLedger `json:"scan,omitempty"`
}

// ScanLedger accounts for every (target, port) of a scan: Answered +
// AnsweredRetry + Silent + KernelDropped + NeverLeft + OurFirewall +
// Interrupted = Probes, and Open + Closed + Filtered + Undecided = Probes.
type ScanLedger struct {
	Probes          int     `json:"probes"` // targets × ports (of this shard)
	Hosts           int     `json:"hosts"`
	Ports           int     `json:"ports"`
	Answered        int     `json:"answered"`             // at the first probe
	AnsweredRetry   int     `json:"answered_after_retry"` // only after a retransmission
	Silent          int     `json:"silent"`               // nothing after every retry: filtered
	KernelDropped   int     `json:"kernel_dropped"`       // silent while our kernel dropped replies: undecided
	NeverLeft       int     `json:"never_left"`           // silent, and our SYNs never left this host (link down, no ARP/ND answer): undecided
	OurFirewall     int     `json:"our_firewall"`         // this host's output firewall dropped the SYN (EPERM): undecided
	Interrupted     int     `json:"interrupted"`          // the wait had not run out: undecided
	Open            int     `json:"open"`
	Closed          int     `json:"closed"`
	Filtered        int     `json:"filtered"`
	Undecided       int     `json:"undecided"`
	Retransmissions int     `json:"retransmissions"`
	MaxTries        int     `json:"max_tries"`    // the most SYNs one port got
	Drops           uint64  `json:"kernel_drops"` // PACKET_STATISTICS: replies our kernel dropped before we read them
	Duplicates      int     `json:"duplicates"`   // answers to a port already decided
	RatePPS         float64 `json:"rate_pps"`     // asked for
	SentPPS         float64 `json:"sent_pps"`     // achieved by the first pass
	Shard           string  `json:"shard,omitempty"`
}

// EventType implements Event.
func (Summary) EventType() string { return "summary" }

// SegmentCount is how many segments a connection took, both directions, by
// phase: the handshake (SYN, SYN-ACK and the ACK that completes it), the
// data (data segments and the ACKs of data) and the close (FIN, RST and the
// ACKs of a FIN). Retransmissions count: they crossed the wire too.
type SegmentCount struct {
	Handshake int `json:"handshake"`
	Data      int `json:"data"`
	Close     int `json:"close"`
	Total     int `json:"total"`
	// BytesSent and BytesReceived are the data bytes each way (new data,
	// not retransmitted copies).
	BytesSent     int `json:"bytes_sent"`
	BytesReceived int `json:"bytes_received"`

	synced bool // Add: the handshake's third segment has passed
}

// String is the count as the texts write it: "3 (handshake) + 2 (data) +
// 4 (close) = 9 segments for 6 bytes".
func (c SegmentCount) String() string { return c.Words("sent", "received") }

// Words is String with the words for each way's bytes: "sent" and "received" for a session, "from the client"
// and "from the server" for a capture.
func (c SegmentCount) Words(sent, received string) string {
	b := c.BytesSent + c.BytesReceived
	bytes := plural(b, "byte")
	if c.BytesSent > 0 && c.BytesReceived > 0 {
		bytes += fmt.Sprintf(" (%d %s, %d %s)", c.BytesSent, sent, c.BytesReceived, received)
	}
	return fmt.Sprintf("%d (handshake) + %d (data) + %d (close) = %s for %s", c.Handshake, c.Data, c.Close, plural(c.Total, "segment"), bytes)
}

// RTTStats are min/avg/max/mdev in milliseconds, as ping prints them.
type RTTStats struct {
	Min  float64 `json:"min"`
	Avg  float64 `json:"avg"`
	Max  float64 `json:"max"`
	Mdev float64 `json:"mdev"`
}

// Warning is something the user should know that is not an error.
type Warning struct {
	Message string `json:"message"`
	Conn    string `json:"conn,omitempty"` // the connection, when several run at once (see Start.Conn)
}

// EventType implements Event.
func (Warning) EventType() string { return "warning" }

// Scenario is the verdict of one RST-behaviour scenario (tcpshake rst).
type Scenario struct {
	Name     string `json:"name"`
	Title    string `json:"title"`
	RFC      string `json:"rfc"`      // the rule's source, e.g. "RFC 5961 §3.2"
	Sent     string `json:"sent"`     // what we sent, with the numbers chosen and why
	Expected string `json:"expected"` // what the RFC says should happen
	Observed string `json:"observed"` // what came back, and the state after
	Verdict  string `json:"verdict"`  // conforms, deviates, permitted or inconclusive
	Why      string `json:"why,omitempty"`
	// Rule is the tested rule's words, quoted from RFC (the section is in
	// RFC); Strength is its BCP 14 keyword (MUST, SHOULD or MAY), and
	// StrengthNote says how it was read when the text has no keyword.
	Rule         string `json:"rule"`
	Strength     string `json:"strength"`
	StrengthNote string `json:"strength_note,omitempty"`
	// Level is, for deviates, the strength of the rule broken (MUST or
	// SHOULD).
	Level string `json:"level,omitempty"`
	// Figures are the scenario's measurements, e.g. challenge_acks and
	// rsts for challenge-ack-burst.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Peer is what is known of the peer's stack ("Linux" only when its
	// sockets were observed through sock_diag).
	Peer string `json:"peer,omitempty"`
	// SynCookie: the peer answered the scenario's SYN with a SYN cookie
	// (RFC 4987 §3.6), and SynCookieHow says how that was recognised.
	SynCookie    bool   `json:"syn_cookie,omitempty"`
	SynCookieHow string `json:"syn_cookie_how,omitempty"`
	// ICMP lists ICMP errors that came back, as results.
	ICMP []string `json:"icmp,omitempty"`
	// Drops lists our segments the peer's kernel dropped, with its reason
	// (--drops), e.g. "[R] seq 2202267028: TCP_RESET".
	Drops []string `json:"drops,omitempty"`
	// Checks are the separate rules of a scenario that tests more than
	// one (closed-port); the scenario's verdict is the worst of them.
	Checks []ScenarioCheck `json:"checks,omitempty"`
	// The peer's state before and after: inferred from segments, and from
	// its kernel when visible.
	RemoteBefore   string `json:"remote_before,omitempty"`
	RemoteAfter    string `json:"remote_after,omitempty"`
	ObservedBefore string `json:"observed_before,omitempty"`
	ObservedAfter  string `json:"observed_after,omitempty"`
}

// EventType implements Event.
func (Scenario) EventType() string { return "scenario" }

// ScenarioCheck is one rule of a scenario checked on its own segment.
type ScenarioCheck struct {
	Sent         string `json:"sent"`
	Expected     string `json:"expected"`
	Observed     string `json:"observed"`
	RFC          string `json:"rfc"`
	Rule         string `json:"rule"`
	Strength     string `json:"strength"`
	StrengthNote string `json:"strength_note,omitempty"`
	Verdict      string `json:"verdict"`
	Level        string `json:"level,omitempty"`
	Why          string `json:"why"`
}

// Payload is a segment's data. It is shown as text when it is printable
// UTF-8 (tabs, CR and LF allowed), else as "hex:" and its hex digits; in JSON
// it is that string. It stays bytes until a renderer shows it, so the hex
// dump of a transfer costs the session's loop nothing.
type Payload []byte

// String is the payload as shown.
func (p Payload) String() string {
	if p.printable() {
		return string(p)
	}
	return "hex:" + hex.EncodeToString(p)
}

// MarshalText implements encoding.TextMarshaler: JSON quotes it as a string
// (a MarshalJSON would have its output compacted byte by byte again).
func (p Payload) MarshalText() ([]byte, error) {
	if p.printable() {
		return p, nil
	}
	b := make([]byte, 0, len("hex:")+2*len(p))
	b = append(b, "hex:"...)
	return hex.AppendEncode(b, p), nil
}

func (p Payload) printable() bool {
	if !utf8.Valid(p) {
		return false
	}
	for _, r := range string(p) {
		if r < 0x20 && r != '\r' && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}
