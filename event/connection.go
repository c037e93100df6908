package event

// Connection is one TCP conversation found in a capture by `tcpshake analyze`. The client is the side that sent
// the first SYN, or, when no SYN was seen, the side that sent the first packet. Packets and bytes are counted
// each way like tshark's `-z conv,tcp` table (bytes are whole frame lengths on the wire, link header included).
type Connection struct {
	Index           int     `json:"index"` // 1 for the first conversation in the file
	Client          string  `json:"client"`
	Server          string  `json:"server"`
	PacketsToServer uint64  `json:"packets_to_server"`
	BytesToServer   uint64  `json:"bytes_to_server"`
	PacketsToClient uint64  `json:"packets_to_client"`
	BytesToClient   uint64  `json:"bytes_to_client"`
	StartMs         float64 `json:"start_ms"` // since the first packet of the capture
	DurationMs      float64 `json:"duration_ms"`
	// Opened is how the conversation began: "3-way", "simultaneous-open", "no-handshake", "refused",
	// "unanswered", "incomplete" (SYN answered, the final ACK not seen) or "icmp-REASON" (an ICMP error such as
	// icmp-port-unreach answered the SYN).
	Opened string `json:"opened"`
	// Closed is how it ended: "4-way-fin", "fin-ack-combined", "half-close", "simultaneous-close",
	// "rst-by-client", "rst-by-server", "half-closed-at-end" (one FIN only), "open-at-end" or "never-opened".
	Closed          string `json:"closed"`
	Retransmissions uint64 `json:"retransmissions"`
	OutOfOrder      uint64 `json:"out_of_order"`
	ICMP            uint64 `json:"icmp_errors,omitempty"` // ICMP errors quoting the conversation's segments
	// Segments counts the conversation's segments by phase, as the teaching texts do, with the data bytes each
	// way (BytesSent: the client's, BytesReceived: the server's); only in the story of one conversation (--conn).
	Segments *SegmentCount `json:"segments,omitempty"`
}

// EventType implements Event.
func (Connection) EventType() string { return "connection" }

// CaptureSummary closes `tcpshake analyze`: what was read from the file and what was found in it. It replaces
// Summary for analyze, whose fields are those of a probe run.
type CaptureSummary struct {
	File          string  `json:"file"`
	Format        string  `json:"format"`    // "pcap" or "pcapng"
	LinkType      string  `json:"link_type"` // of the first interface, e.g. "Ethernet", "Linux SLL2", "Raw"
	Packets       uint64  `json:"packets"`   // every packet record read
	TCPPackets    uint64  `json:"tcp_packets"`
	ICMPErrors    uint64  `json:"icmp_errors"` // ICMP errors that quote a TCP segment
	Skipped       uint64  `json:"skipped"`     // packets that are neither (ARP, UDP, fragments, ...)
	Undecodable   uint64  `json:"undecodable"` // truncated or malformed IP/TCP headers
	Conversations int     `json:"conversations"`
	Shown         int     `json:"shown"` // conversations that passed the filter
	DurationMs    float64 `json:"duration_ms"`
	// Error is the damage that stopped the reading (a truncated or corrupt file); the results before it are
	// complete.
	Error string `json:"error,omitempty"`
}

// EventType implements Event.
func (CaptureSummary) EventType() string { return "capture_summary" }
