// Package analyze reads pcap and pcapng captures and tells the story of the TCP conversations in them: a table of
// conversations (endpoints, packets and bytes each way as tshark's `-z conv,tcp` counts them, duration, how each
// one opened and closed, retransmissions and out-of-order segments) and, for one chosen conversation, every
// segment with Wireshark's relative numbers, the arithmetic behind them in words and both ends' states from the
// one state model, package tcpstate. It works on every system; it only reads files.
//
// # Reading
//
// [Reader] detects pcap (either byte order, micro- or nanosecond timestamps) and pcapng by their magic numbers
// (gzip-compressed files too), strips Ethernet (with VLAN tags), Linux cooked (SLL and SLL2), raw IP and BSD
// loopback link headers itself and hands the IP packet to craft.Parser. The loop reuses every buffer: decoding a
// packet of a known conversation does not allocate.
//
// # Streaming
//
// Memory grows with the conversations open at a time, not with the file: a conversation that finished (both
// FINs acknowledged, or reset) is kept for [DefaultLinger] of capture time for late packets, then its row is
// emitted and it is forgotten. Rows of conversations still in memory at the end come in the order they began. A
// truncated or damaged file ends the reading with everything before the damage reported and one error.
//
// # Retransmissions
//
// The sequence analysis is Wireshark's basic one (packet-tcp.c): a segment that carries data, SYN or FIN and
// starts below the highest sequence number its sender already used is a retransmission, unless it comes within
// the handshake's round trip (3 ms when unknown) of that highest segment and does not end where it did, which
// makes it out of order; keep-alives are neither. Wireshark's tcp.analysis.retransmission also covers its "fast"
// and "spurious" retransmissions, which are retransmissions here too.
package analyze
