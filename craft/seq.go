package craft

// Seq is a TCP sequence or acknowledgment number. Its comparisons are done modulo 2^32, so they stay right
// when the numbers wrap around (RFC 9293 §3.4): v is "less than" w when w lies less than 2^31 ahead of v.
type Seq uint32

// LessThan reports whether v comes before w in sequence space.
func (v Seq) LessThan(w Seq) bool {
	return int32(v-w) < 0
}

// LessThanEq reports whether v comes before w in sequence space or equals it.
func (v Seq) LessThanEq(w Seq) bool {
	return v == w || v.LessThan(w)
}

// InRange reports whether a <= v < b in sequence space; the range starts at a and runs forward to b.
func (v Seq) InRange(a, b Seq) bool {
	return uint32(v-a) < uint32(b-a)
}

// InWindow reports whether first <= v < first+size in sequence space.
func (v Seq) InWindow(first Seq, size uint32) bool {
	return uint32(v-first) < size
}

// Add returns v advanced by n, wrapping around 2^32.
func (v Seq) Add(n uint32) Seq {
	return v + Seq(n)
}

// Rel returns v relative to base, as Wireshark shows relative sequence numbers: uint32(v - base).
func (v Seq) Rel(base Seq) uint32 {
	return uint32(v - base)
}

// Acceptable is the segment acceptability test of RFC 9293 §3.10.7.4. A segment of segLen octets of sequence
// space (payload plus SYN and FIN, see [Segment.Len]) starting at segSeq is acceptable to a receiver that
// expects rcvNxt next and offers a window of rcvWnd octets when:
//
//	SEG.LEN  RCV.WND  test
//	0        0        SEG.SEQ = RCV.NXT
//	0        >0       RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
//	>0       0        not acceptable
//	>0       >0       RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
//	                  or RCV.NXT =< SEG.SEQ+SEG.LEN-1 < RCV.NXT+RCV.WND
func Acceptable(segSeq Seq, segLen uint32, rcvNxt Seq, rcvWnd uint32) bool {
	switch {
	case segLen == 0 && rcvWnd == 0:
		return segSeq == rcvNxt
	case segLen == 0:
		return segSeq.InWindow(rcvNxt, rcvWnd)
	case rcvWnd == 0:
		return false
	default:
		return segSeq.InWindow(rcvNxt, rcvWnd) || segSeq.Add(segLen-1).InWindow(rcvNxt, rcvWnd)
	}
}
