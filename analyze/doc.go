// Package analyze reads pcap and pcapng captures and tells the story of the TCP conversations in them: a table of
// conversations (endpoints, packets and bytes each way as tshark's `-z conv,tcp` counts them, duration, how each
// one opened and closed, retransmissions and out-of-order segments) and, for one chosen conversation, every
// segment with Wireshark's relative numbers, the arithmetic behind them in words and both ends' states from the
// one state model, package tcpstate. It works on every system; it only reads files.
//
// # Reading
//
// [Reader] detects pcap (either byte order, micro- or nanosecond timestamps) and pcapng by their magic numbers
// (gzip-, zstd- and xz-compressed files too). The fast path strips Ethernet (with VLAN tags), Linux cooked (SLL and
// SLL2), raw IP and BSD loopback link headers itself and hands the IP packet to craft.Parser; it reuses every
// buffer, so decoding a packet of a known conversation does not allocate. Everything else (other link types, PPPoE,
// MPLS, GRE, VXLAN, Geneve, GTPv1-U, IP-in-IP, IPv6 extension headers, IP fragments) goes through gopacket's own
// layers and defragmenters, and a conversation inside a tunnel is keyed by the inner 4-tuple, as tshark keys it.
// What neither path decodes is counted and warned about, one line per link type or encapsulation.
//
// # Streaming
//
// Memory grows with the conversations open at a time, not with the file: a conversation that finished (both
// FINs acknowledged, or reset) is kept for [DefaultLinger] of capture time for late packets, then its row is
// emitted and it is forgotten. Rows of conversations still in memory at the end come in the order they began. A
// truncated or damaged file ends the reading with everything before the damage reported and one error.
//
// # Sequence analysis
//
// Every segment goes through Wireshark's sequence analysis (packet-tcp.c, tcp_analyze_sequence_number) rule by
// rule: zero window and its probes, lost and ACKed-unseen segments, keep-alives and their ACKs, window updates,
// duplicate ACKs, and spurious, fast and plain retransmissions and out-of-order segments, so that the table's
// counts and every step's flags equal tshark's tcp.analysis.* fields. testdata/corpus and its tshark oracle keep
// that true on real captures.
package analyze
