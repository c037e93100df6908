package capture

import (
	"net/netip"

	"golang.org/x/net/bpf"
)

// ScanStats are the kernel's counters of a scan socket (PACKET_STATISTICS):
// how many packets its filter accepted, and how many of those the kernel
// dropped because the socket's buffer was full — replies that reached this
// host and that we never read.
type ScanStats struct {
	Packets, Drops uint64
}

// A BatchSender sends many IP packets in one system call.
type BatchSender interface {
	// SendBatch sends pkts[i] to dsts[i] in order and returns how many left.
	SendBatch(pkts [][]byte, dsts []netip.Addr) (int, error)
	Close() error
}

// A BatchSource reads many packets in one system call and tells how many
// its kernel dropped.
type BatchSource interface {
	// ReadBatch fills frames (each Data with room of its own) and returns
	// how many it filled. It blocks until at least one packet arrived or
	// the source is closed (then it returns an error wrapping ErrClosed).
	ReadBatch(frames []Frame) (int, error)
	// Stats returns the counters since the source was opened.
	Stats() (ScanStats, error)
	Close() error
}

// ScanFilter returns a classic BPF program that accepts IPv4 and IPv6 TCP
// segments to our port sport, and ICMP and ICMPv6 messages (errors quote
// our probes). IPv6 extension headers are not followed: a segment behind
// one is not accepted.
func ScanFilter(sport uint16) ([]bpf.RawInstruction, error) {
	a := versionDispatch()

	a.label("v4")
	a.op(bpf.LoadAbsolute{Off: 9, Size: 1})
	a.jeq(1, "accept", "")
	a.jeq(6, "", "drop")
	a.op(bpf.LoadMemShift{Off: 0}) // X = 4 * IHL
	a.op(bpf.LoadIndirect{Off: 2, Size: 2})
	a.jeq(uint32(sport), "accept", "drop")

	a.label("v6")
	a.op(bpf.LoadAbsolute{Off: 6, Size: 1})
	a.jeq(58, "accept", "")
	a.jeq(6, "", "drop")
	a.op(bpf.LoadAbsolute{Off: 40 + 2, Size: 2})
	a.jeq(uint32(sport), "accept", "drop")

	a.label("accept")
	a.op(bpf.RetConstant{Val: scanSnap})
	a.label("drop")
	a.op(bpf.RetConstant{Val: 0})
	raw, err := bpf.Assemble(a.resolve())
	if err != nil {
		return nil, err
	}
	return raw, nil
}

// scanSnap is what a scan keeps of a packet: the IP and TCP headers with
// options, or an ICMP error with the IP header and TCP ports it quotes.
const scanSnap = 256
