package probe

import (
	"fmt"

	"tcpshake/capture"
	"tcpshake/craft"
)

// Large segments (GSO). The kernel's own TCP does not write one MSS at a
// time: it hands the device segments of many MSS (TSO/GSO), which the
// device, or the kernel just before it, cuts into MSS-sized ones, and a
// virtual link (veth) carries whole to the other end, whose TCP takes them
// as one (as GRO would have made them). A transfer through
// --send-file does the same when SessionEnv.GSO opens a segmenter: one
// step, one write and one wire copy per large segment, the MSS kept per
// piece. Crafted segments, the handshake and every segment that fits in
// one MSS go through the raw socket as before.

// gsoPayloadMax is the most payload one large segment may carry: what an
// IPv4 total length or IPv6 payload length allows, in whole MSS.
func (s *Session) gsoPayloadMax(mss int) int {
	n := capture.GSOMax - 20 - 12 // less the TCP header data segments carry: 20 bytes and timestamps
	if !s.cfg.Remote.Addr().Is6() {
		n -= 20
	}
	return max(n/mss, 1) * mss
}

// segmentLimit is how much one segment of a transfer with more than one
// MSS still to send may carry: the MSS, or many of them once a segmenter
// is open (it is opened here, the first time it could serve).
func (s *Session) segmentLimit(mss, left int) int {
	if left <= mss || s.cfg.NoGSO || s.env.GSO == nil {
		return mss
	}
	if !s.gsoTried {
		s.gsoTried = true
		g, err := s.env.GSO()
		if err != nil {
			s.note(fmt.Sprintf("data goes one MSS (%d bytes) per write: large segments (GSO) are not available here (%v)", mss, err))
			return mss
		}
		s.gso = g
		max := s.gsoPayloadMax(mss)
		s.note(fmt.Sprintf("data goes in segments of up to %d bytes (%d × MSS %d), as the kernel's own TCP sends them (GSO): each leaves as one packet, which the kernel cuts into MSS-sized ones only where the link needs it (over veth it reaches the peer whole, and its TCP takes it as one segment); --no-gso sends one MSS at a time",
			max, max/mss, mss))
	}
	if s.gso == nil {
		return mss
	}
	return s.gsoPayloadMax(mss)
}

// put hands one marshalled segment to the kernel: a large one to the
// segmenter, or, if it fails, cut here into MSS-sized ones for the raw
// socket (PSH and FIN on the last, as segmentation does).
func (s *Session) put(seg *craft.Segment, pkt []byte) error {
	mss := s.maxSegment()
	if len(seg.Payload) <= mss {
		return s.env.Sender.Send(pkt, s.cfg.Remote.Addr())
	}
	if s.gso != nil && !seg.Flags.Has(craft.CWR) {
		err := s.gso.SendGSO(pkt, mss)
		if err == nil {
			return nil
		}
		s.gso = nil
		s.note(fmt.Sprintf("large segments (GSO) failed (%v): from now on data goes one MSS per write", err))
	}
	for off := 0; off < len(seg.Payload); off += mss {
		piece := *seg
		piece.Seq = seg.Seq.Add(uint32(off))
		piece.Payload = seg.Payload[off:min(off+mss, len(seg.Payload))]
		if off+mss < len(seg.Payload) {
			piece.Flags &^= craft.PSH | craft.FIN
		}
		if off > 0 {
			piece.Flags &^= craft.CWR
		}
		b, err := piece.Marshal()
		if err != nil {
			return err
		}
		if err := s.env.Sender.Send(b, s.cfg.Remote.Addr()); err != nil {
			return err
		}
	}
	return nil
}
