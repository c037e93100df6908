// Package capture receives TCP and ICMP packets on Linux packet sockets and
// matches them to the probes and connections that asked for them.
//
// A [PacketSource] is an AF_PACKET socket bound to one interface with a
// classic BPF filter in the kernel (see [Filter]), so unrelated traffic never
// wakes the process. It sees both directions as they cross the interface, each
// packet with its kernel timestamp: the timestamp of our own outgoing segment
// and of the peer's reply are taken at the same point where tcpdump takes
// them, which is what makes the reported round-trip times wire-accurate.
//
// A [RawSender] writes whole IP packets (built by package craft) to an
// IPPROTO_RAW socket. A [Matcher] dispatches received packets to waiters
// registered before the packet was sent, keyed by the 4-tuple.
//
// Everything that touches the operating system sits behind the [Source] and
// [Sender] interfaces, so tests can use recorded or scripted packets instead.
package capture
