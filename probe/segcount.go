package probe

import (
	"tcpshake/craft"
	"tcpshake/event"
)

// segCount tallies a connection's segments by phase, the way the teaching
// texts count them ("3 (handshake) + 2 (data) + 4 (close) = 9 segments for
// 6 bytes"): SYNs, and the bare ACK that completes the handshake, belong to
// the handshake; FINs, RSTs and the bare ACKs of a FIN to the close;
// everything else (data, the ACKs of data, window updates) to the data.
type segCount struct{ c event.SegmentCount }

func (c *segCount) add(seg *craft.Segment, finAcked bool) { c.c.Add(seg, finAcked) }

// tallySent counts a segment we sent: a bare ACK after the peer's FIN
// acknowledges it.
func (s *Session) tallySent(seg *craft.Segment) {
	s.segs.add(seg, s.me.FinRcvd && seg.Ack == s.me.RcvNxt)
}

// tallyReceived counts a segment the peer sent: a bare ACK beyond our FIN
// acknowledges it.
func (s *Session) tallyReceived(seg *craft.Segment) {
	s.segs.add(seg, s.me.FinSent && s.me.FinSeq.LessThan(seg.Ack))
}

// segments is the count for the summary, nil when no segment crossed.
func (s *Session) segments() *event.SegmentCount {
	if s.segs.c.Total == 0 {
		return nil
	}
	c := s.segs.c
	c.BytesSent, c.BytesReceived = s.sentBytes, len(s.me.Delivered)
	return &c
}
