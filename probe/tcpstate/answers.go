package tcpstate

import "tcpshake/craft"

// Answers reports whether got is an acceptable answer to the probe sent, by
// the rules a closed or listening RFC 9293 endpoint follows, and if not, why.
//
//   - We sent a SYN (we are in SYN-SENT, §3.10.7.3): a SYN-ACK or RST is
//     acceptable only if its ACK acknowledges our SYN (SND.UNA < SEG.ACK =<
//     SND.NXT, i.e. ack = ISN+1 for a plain SYN). An RST without ACK is
//     dropped.
//   - We sent a segment with ACK but no SYN (§3.10.7.1, CLOSED state): the
//     reset is <SEQ=SEG.ACK><CTL=RST>.
//   - We sent a segment without ACK (FIN, NULL, Xmas...): the reset is
//     <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
func Answers(sent, got *craft.Segment) (bool, string) {
	switch {
	case sent.Flags.Has(craft.SYN) && !sent.Flags.Has(craft.ACK):
		if !got.Flags.Has(craft.ACK) {
			if got.Flags.Has(craft.RST) {
				return false, "rst-without-ack"
			}
			return false, "no-ack"
		}
		if !sent.Seq.LessThan(got.Ack) || sent.End().LessThan(got.Ack) {
			return false, "bad-ack"
		}
		if got.Flags.Has(craft.RST) || got.Flags.Has(craft.SYN) {
			return true, ""
		}
		return false, "unexpected-flags"
	case sent.Flags.Has(craft.ACK):
		if !got.Flags.Has(craft.RST) {
			return false, "unexpected-flags"
		}
		if got.Seq != sent.Ack {
			return false, "bad-seq"
		}
		return true, ""
	default:
		if !got.Flags.Has(craft.RST) || !got.Flags.Has(craft.ACK) {
			return false, "unexpected-flags"
		}
		if got.Ack != sent.End() {
			return false, "bad-ack"
		}
		return true, ""
	}
}
