// Package craft builds and parses TCP segments for IPv4 and IPv6 as plain values, with no I/O of any kind.
//
// A [Segment] is one TCP segment together with the addresses and the hop limit of the IP packet that carries
// it. [Segment.Marshal] turns it into a complete IP packet with correct checksums, ready for a raw socket, and
// [Parser.Parse] turns a captured IP packet back into a [Packet]: a TCP segment, an ICMP error that quotes one
// of our segments, or something else.
//
// # Pieces
//
//   - [Seq] is a sequence number with wrap-safe comparisons (RFC 9293 §3.4) and [Acceptable] is the segment
//     acceptability test of RFC 9293 §3.10.7.4.
//   - [Flags] are the TCP control bits, rendered the way tcpdump, Wireshark and JSON show them, and parsed
//     from words, tcpdump letters or hping3 letters by [ParseFlags].
//   - [Option] and [Options] are TCP options with builders, accessors and tcpdump-style text; [SYNOptions]
//     lays them out the way Linux does in its SYN.
//   - [ParsePorts] reads port lists such as "22,80-82".
package craft
