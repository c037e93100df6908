package craft

import (
	"net/netip"
	"testing"
)

// benchSegment is a Linux-style SYN with the usual options and a small payload.
func benchSegment() Segment {
	return Segment{
		Src: netip.MustParseAddrPort("198.51.100.1:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:80"),
		Seq: 100, Ack: 200, Flags: PSH | ACK, Window: 64240,
		Options: SYNOptions(SYNOptionSet{MSS: 1460, WScale: 7, SACKOK: true, Timestamp: true, TSVal: 1}),
		Payload: []byte("GET / HTTP/1.1\r\n\r\n"),
	}
}

func BenchmarkMarshal(b *testing.B) {
	seg := benchSegment()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := seg.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	seg := benchSegment()
	data := mustMarshal(b, seg)
	p := NewParser()
	var pkt Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := p.Parse(data, &pkt); err != nil {
			b.Fatal(err)
		}
	}
}
