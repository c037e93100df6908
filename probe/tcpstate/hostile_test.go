package tcpstate_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"tcpshake/craft"
	"tcpshake/probe/tcpstate"
)

// Our end as a receiver under hostile input: the endpoint is configured as
// a session's own (ModelWindow, KeepData) and fed segments a forger, a
// confused peer or a replay could send. RFC 9293 §3.10.7.4 and RFC 5961
// say what must happen to each; whatever arrives, the held bytes stay
// within our window and RCV.NXT never moves back.

// ourEnd is our endpoint after the handshake (ISS iss, the peer's ISN
// peerISN), advertising window wnd, with sent bytes of our data
// outstanding.
func ourEnd(t *testing.T, peerISN craft.Seq, wnd uint16, sent int) *tcpstate.Endpoint {
	t.Helper()
	e := tcpstate.NewActive()
	e.ModelWindow, e.KeepData = true, true
	e.Send(&craft.Segment{Flags: craft.SYN, Seq: iss, Window: wnd})
	rx := e.Input(&craft.Segment{Flags: craft.SYN | craft.ACK, Seq: peerISN, Ack: iss + 1, Window: 65535})
	if rx.Verdict != tcpstate.Accepted || e.State != tcpstate.Established {
		t.Fatalf("handshake: %v, %v", rx.Verdict, e.State)
	}
	e.Send(&craft.Segment{Flags: craft.ACK, Seq: iss + 1, Ack: peerISN + 1, Window: wnd})
	if sent > 0 {
		e.Send(&craft.Segment{Flags: craft.PSH | craft.ACK, Seq: iss + 1, Ack: peerISN + 1, Window: wnd, Payload: make([]byte, sent)})
	}
	return e
}

// peerData is n bytes of the peer's stream from offset off (counted from
// its ISN + 1): byte i of the stream is byte(i*7 + 3), so misplaced bytes
// show.
func peerData(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off+i)*7 + 3)
	}
	return b
}

func TestReceiverOutOfWindow(t *testing.T) {
	const wnd = 1000
	e := ourEnd(t, irs, wnd, 0)
	nxt := e.RcvNxt
	for _, tc := range []struct {
		name    string
		seq     craft.Seq
		n       int
		verdict tcpstate.Verdict
		held    int
	}{
		{"beyond the window", nxt.Add(wnd), 500, tcpstate.NotAcceptable, 0},
		{"far beyond", nxt.Add(1 << 20), 1400, tcpstate.NotAcceptable, 0},
		{"in the window, out of order", nxt.Add(100), 500, tcpstate.Accepted, 500},
		{"more than the window can hold", nxt.Add(700), 600, tcpstate.Accepted, 500},
		{"old", nxt.Add(^uint32(0) - 2000), 1000, tcpstate.NotAcceptable, 500},
	} {
		d := peerData(int(tc.seq-nxt), tc.n)
		rx := e.Input(&craft.Segment{Flags: craft.PSH | craft.ACK, Seq: tc.seq, Ack: e.SndNxt, Window: 65535, Payload: d})
		if rx.Verdict != tc.verdict || e.HeldBytes() != tc.held || e.RcvNxt != nxt || len(e.Delivered) != 0 {
			t.Errorf("%s: %v, %d held, RCV.NXT %d, %d delivered; want %v, %d held, RCV.NXT %d, nothing delivered",
				tc.name, rx.Verdict, e.HeldBytes(), e.RcvNxt, len(e.Delivered), tc.verdict, tc.held, nxt)
		}
		if rx.Verdict == tcpstate.NotAcceptable && !rx.AckDue {
			t.Errorf("%s: an unacceptable segment is answered with an ACK (RFC 9293 §3.10.7.4)", tc.name)
		}
	}
	if rx := e.Input(&craft.Segment{Flags: craft.PSH | craft.ACK, Seq: nxt.Add(700), Ack: e.SndNxt, Window: 65535, Payload: peerData(700, 600)}); !rx.HeldFull {
		t.Errorf("the segment that would overflow the window: %+v, want HeldFull", rx)
	}
	// The gap filled: what was held is delivered in order.
	rx := e.Input(&craft.Segment{Flags: craft.PSH | craft.ACK, Seq: nxt, Ack: e.SndNxt, Window: 65535, Payload: peerData(0, 100)})
	if rx.Filled != 500 || !bytes.Equal(e.Delivered, peerData(0, 600)) || e.HeldBytes() != 0 {
		t.Errorf("gap filled: %d filled, %d delivered, %d held; want 500, the stream's first 600 bytes, 0", rx.Filled, len(e.Delivered), e.HeldBytes())
	}
}

// TestReceiverOldAck: data whose ack is further below SND.UNA than the
// largest window the peer ever advertised is discarded (RFC 5961 §5.2),
// with an ACK; at the edge it is taken.
func TestReceiverOldAck(t *testing.T) {
	for _, tc := range []struct {
		below   uint32
		verdict tcpstate.Verdict
	}{
		{65535, tcpstate.Accepted},
		{65536, tcpstate.OldAck},
		{1 << 30, tcpstate.OldAck},
	} {
		e := ourEnd(t, irs, 65535, 3000)
		e.Input(&craft.Segment{Flags: craft.ACK, Seq: irs + 1, Ack: iss + 1 + 2000, Window: 65535}) // SND.UNA 2101
		una, nxt := e.SndUna, e.RcvNxt
		rx := e.Input(&craft.Segment{Flags: craft.PSH | craft.ACK, Seq: nxt, Ack: una - craft.Seq(tc.below), Window: 65535, Payload: peerData(0, 10)})
		if rx.Verdict != tc.verdict {
			t.Errorf("ack %d below SND.UNA (MAX.SND.WND 65535): %v, want %v", tc.below, rx.Verdict, tc.verdict)
		}
		if tc.verdict == tcpstate.OldAck {
			if !rx.AckDue || e.RcvNxt != nxt || len(e.Delivered) != 0 || e.SndUna != una {
				t.Errorf("ack %d below: AckDue %v, RCV.NXT %d (was %d), %d delivered, SND.UNA %d (was %d): want an ACK and nothing else",
					tc.below, rx.AckDue, e.RcvNxt, nxt, len(e.Delivered), e.SndUna, una)
			}
		} else if len(e.Delivered) != 10 {
			t.Errorf("ack at the edge of MAX.SND.WND: %d delivered, want 10", len(e.Delivered))
		}
	}
}

// TestReceiverAckUnsent: an ACK of something not yet sent is answered with
// an ACK and the segment dropped (RFC 9293 §3.10.7.4).
func TestReceiverAckUnsent(t *testing.T) {
	e := ourEnd(t, irs, 65535, 100)
	una, nxt := e.SndUna, e.RcvNxt
	for _, ack := range []craft.Seq{e.SndNxt + 1, e.SndNxt + 1<<20} {
		rx := e.Input(&craft.Segment{Flags: craft.PSH | craft.ACK, Seq: nxt, Ack: ack, Window: 65535, Payload: peerData(0, 10)})
		if rx.Verdict != tcpstate.AckUnsent || !rx.AckDue || e.SndUna != una || e.RcvNxt != nxt || len(e.Delivered) != 0 {
			t.Errorf("ack %d (SND.NXT %d): %v AckDue %v, SND.UNA %d, RCV.NXT %d, %d delivered; want ack-unsent, an ACK, nothing moved",
				ack, e.SndNxt, rx.Verdict, rx.AckDue, e.SndUna, e.RcvNxt, len(e.Delivered))
		}
	}
	if rx := e.Input(&craft.Segment{Flags: craft.ACK, Seq: nxt, Ack: e.SndNxt, Window: 65535}); rx.Verdict != tcpstate.Accepted || e.SndUna != e.SndNxt {
		t.Errorf("ack = SND.NXT: %v, SND.UNA %d; want accepted, %d", rx.Verdict, e.SndUna, e.SndNxt)
	}
}

// TestReceiverResets: only an RST at RCV.NXT aborts; one elsewhere in the
// window draws a challenge ACK (RFC 5961 §3.2); one outside is dropped
// silently.
func TestReceiverResets(t *testing.T) {
	const wnd = 1000
	for _, tc := range []struct {
		name    string
		off     uint32
		flags   craft.Flags
		verdict tcpstate.Verdict
		ackDue  bool
		state   tcpstate.State
	}{
		{"exact", 0, craft.RST, tcpstate.ExactReset, false, tcpstate.Closed},
		{"exact with ACK", 0, craft.RST | craft.ACK, tcpstate.ExactReset, false, tcpstate.Closed},
		{"in the window", 1, craft.RST, tcpstate.ChallengeReset, true, tcpstate.Established},
		{"at the window's last byte", wnd - 1, craft.RST | craft.ACK, tcpstate.ChallengeReset, true, tcpstate.Established},
		{"just beyond the window", wnd, craft.RST, tcpstate.NotAcceptable, false, tcpstate.Established},
		{"before RCV.NXT", ^uint32(0), craft.RST, tcpstate.NotAcceptable, false, tcpstate.Established},
		{"with SYN, in the window", 5, craft.RST | craft.SYN, tcpstate.ChallengeReset, true, tcpstate.Established},
	} {
		e := ourEnd(t, irs, wnd, 0)
		nxt := e.RcvNxt
		rx := e.Input(&craft.Segment{Flags: tc.flags, Seq: nxt.Add(tc.off), Ack: e.SndNxt})
		if rx.Verdict != tc.verdict || rx.AckDue != tc.ackDue || e.State != tc.state || e.RcvNxt != nxt {
			t.Errorf("RST %s: %v AckDue %v, %v, RCV.NXT moved %d; want %v, %v, %v, not moved",
				tc.name, rx.Verdict, rx.AckDue, e.State, e.RcvNxt-nxt, tc.verdict, tc.ackDue, tc.state)
		}
	}
}

// TestReceiverSYNs: a SYN in a synchronized state changes nothing and draws
// a challenge ACK (RFC 5961 §4.2), in every synchronized state; the peer's
// own SYN-ACK repeated (seq = IRS) is acknowledged again.
func TestReceiverSYNs(t *testing.T) {
	reach := map[string]func(e *tcpstate.Endpoint){
		"ESTABLISHED": func(e *tcpstate.Endpoint) {},
		"FIN-WAIT-1": func(e *tcpstate.Endpoint) {
			e.Send(&craft.Segment{Flags: craft.FIN | craft.ACK, Seq: e.SndNxt, Ack: e.RcvNxt, Window: 65535})
		},
		"CLOSE-WAIT": func(e *tcpstate.Endpoint) {
			e.Input(&craft.Segment{Flags: craft.FIN | craft.ACK, Seq: e.RcvNxt, Ack: e.SndNxt, Window: 65535})
		},
	}
	for name, to := range reach {
		for _, tc := range []struct {
			what    string
			flags   craft.Flags
			seq     func(e *tcpstate.Endpoint) craft.Seq
			verdict tcpstate.Verdict
		}{
			{"a new SYN", craft.SYN, func(e *tcpstate.Endpoint) craft.Seq { return e.RcvNxt + 12345 }, tcpstate.ChallengeSYN},
			{"a SYN at RCV.NXT", craft.SYN, func(e *tcpstate.Endpoint) craft.Seq { return e.RcvNxt }, tcpstate.ChallengeSYN},
			{"a SYN-ACK, other ISN", craft.SYN | craft.ACK, func(e *tcpstate.Endpoint) craft.Seq { return e.IRS + 1 }, tcpstate.ChallengeSYN},
			{"its SYN-ACK again", craft.SYN | craft.ACK, func(e *tcpstate.Endpoint) craft.Seq { return e.IRS }, tcpstate.RepeatedSYN},
		} {
			e := ourEnd(t, irs, 65535, 0)
			to(e)
			st, nxt, una := e.State, e.RcvNxt, e.SndUna
			rx := e.Input(&craft.Segment{Flags: tc.flags, Seq: tc.seq(e), Ack: e.SndNxt, Window: 65535, Payload: []byte("zz")})
			if rx.Verdict != tc.verdict || !rx.AckDue || e.State != st || e.RcvNxt != nxt || e.SndUna != una || len(e.Delivered) != 0 {
				t.Errorf("%s in %s: %v AckDue %v, %v, RCV.NXT %+d, %d delivered; want %v, an ACK, nothing changed",
					tc.what, name, rx.Verdict, rx.AckDue, e.State, int32(e.RcvNxt-nxt), len(e.Delivered), tc.verdict)
			}
		}
	}
}

// TestReceiverNoACK: a segment without ACK in a synchronized state is
// dropped, its data not taken (RFC 9293 §3.10.7.4, fifth check).
func TestReceiverNoACK(t *testing.T) {
	e := ourEnd(t, irs, 65535, 0)
	nxt := e.RcvNxt
	rx := e.Input(&craft.Segment{Flags: craft.PSH, Seq: nxt, Window: 65535, Payload: peerData(0, 10)})
	if rx.Verdict != tcpstate.NoACK || e.RcvNxt != nxt || len(e.Delivered) != 0 {
		t.Errorf("data without ACK: %v, RCV.NXT %+d, %d delivered; want no-ack, nothing taken", rx.Verdict, int32(e.RcvNxt-nxt), len(e.Delivered))
	}
}

// TestReceiverDataAfterFIN: once the peer's FIN is consumed, more text
// from it is not taken: RFC 9293 §3.10.7.4 (eighth check, "process the
// segment text") says for CLOSE-WAIT, CLOSING, LAST-ACK and TIME-WAIT
// "this should not occur since a FIN has been received from the remote
// side. Ignore the segment text." RCV.NXT stays one past the FIN.
func TestReceiverDataAfterFIN(t *testing.T) {
	reach := map[string]func(e *tcpstate.Endpoint){
		"CLOSE-WAIT": func(e *tcpstate.Endpoint) {},
		"LAST-ACK": func(e *tcpstate.Endpoint) {
			e.Send(&craft.Segment{Flags: craft.FIN | craft.ACK, Seq: e.SndNxt, Ack: e.RcvNxt, Window: 65535})
		},
	}
	for name, to := range reach {
		e := ourEnd(t, irs, 65535, 0)
		e.Input(&craft.Segment{Flags: craft.PSH | craft.FIN | craft.ACK, Seq: e.RcvNxt, Ack: e.SndNxt, Window: 65535, Payload: peerData(0, 4)})
		if e.State != tcpstate.CloseWait || !e.FinRcvd {
			t.Fatalf("after the peer's FIN: %v", e.State)
		}
		to(e)
		nxt := e.RcvNxt
		e.Input(&craft.Segment{Flags: craft.PSH | craft.ACK, Seq: nxt, Ack: e.SndUna, Window: 65535, Payload: []byte("after the FIN")})
		if e.RcvNxt != nxt || !bytes.Equal(e.Delivered, peerData(0, 4)) {
			t.Errorf("%s: data after the peer's FIN moved RCV.NXT by %d and delivered %q (want nothing: RFC 9293 §3.10.7.4 ignores the text)",
				name, int32(e.RcvNxt-nxt), e.Delivered[min(4, len(e.Delivered)):])
		}
	}
}

// TestReceiverFlood feeds thousands of random segments (any seq around the
// window, any length, FIN only where the stream really ends, valid, old
// and unsent acks, RSTs and SYNs now and then) at ISNs that wrap, and
// checks after each: the held bytes never exceed the window, RCV.NXT never
// moves back, what is delivered is a prefix of the peer's true stream, and
// RCV.NXT = IRS + 1 + delivered (+ 1 for a FIN).
func TestReceiverFlood(t *testing.T) {
	for _, peerISN := range []craft.Seq{irs, 0xffff_f000, 0x7fff_fff0} {
		for _, wnd := range []uint16{1, 1000, 65535} {
			r := rand.New(rand.NewPCG(uint64(peerISN), uint64(wnd)))
			e := ourEnd(t, peerISN, wnd, 5000)
			const streamLen = 20000
			last := e.RcvNxt
			for i := range 5000 {
				base := int(e.RcvNxt - peerISN - 1)
				off := base + r.IntN(3*int(wnd)+4000) - 2000 - int(wnd)/2
				off = max(off, 0)
				n := r.IntN(1500)
				if off+n > streamLen {
					n = max(streamLen-off, 0)
				}
				flags := craft.ACK
				if r.IntN(2) == 0 {
					flags |= craft.PSH
				}
				if off+n == streamLen && r.IntN(4) == 0 {
					flags |= craft.FIN
				}
				ack := e.SndNxt
				switch r.IntN(10) {
				case 0:
					ack = e.SndUna - craft.Seq(r.Uint32N(1<<31))
				case 1:
					ack = e.SndNxt + craft.Seq(1+r.Uint32N(1<<20))
				case 2:
					ack = e.SndUna + craft.Seq(r.Uint32N(uint32(e.SndNxt-e.SndUna)+1))
				}
				seq := peerISN.Add(1 + uint32(off))
				var payload []byte
				if off <= streamLen {
					payload = peerData(off, n)
				}
				switch r.IntN(50) {
				case 0:
					flags = craft.RST | craft.ACK
					seq = e.RcvNxt.Add(1 + r.Uint32N(uint32(wnd)+10))
					payload = nil
				case 1:
					flags = craft.SYN | craft.ACK
					seq = craft.Seq(r.Uint32())
				}
				seg := craft.Segment{Flags: flags, Seq: seq, Ack: ack, Window: uint16(r.Uint32()), Payload: payload}
				rx := e.Input(&seg)
				if e.HeldBytes() > int(max(e.RcvWnd, 1)) {
					t.Fatalf("ISN %d wnd %d, segment %d: %d bytes held, window %d", peerISN, wnd, i, e.HeldBytes(), e.RcvWnd)
				}
				if e.RcvNxt.LessThan(last) {
					t.Fatalf("ISN %d wnd %d, segment %d (%v): RCV.NXT moved back from %d to %d", peerISN, wnd, i, rx.Verdict, last, e.RcvNxt)
				}
				last = e.RcvNxt
				if !bytes.Equal(e.Delivered, peerData(0, len(e.Delivered))) {
					t.Fatalf("ISN %d wnd %d, segment %d (%v seq +%d len %d): the delivered stream is not the peer's", peerISN, wnd, i, rx.Verdict, off, n)
				}
				fin := uint32(0)
				if e.FinRcvd {
					fin = 1
				}
				if got, want := uint32(e.RcvNxt-peerISN), 1+uint32(len(e.Delivered))+fin; got != want {
					t.Fatalf("ISN %d wnd %d, segment %d: RCV.NXT is IRS + %d, want IRS + 1 + %d delivered + %d", peerISN, wnd, i, got, len(e.Delivered), fin)
				}
				if e.State == tcpstate.Closed {
					break // an exact RST (at RCV.NXT) is not generated, so this is a failure
				}
			}
			if e.State == tcpstate.Closed {
				t.Errorf("ISN %d wnd %d: the connection was closed by a segment that is not an exact RST", peerISN, wnd)
			}
		}
	}
}
