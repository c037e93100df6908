package capture_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/internal/peertest"
	"tcpshake/probe/tcpstate"
)

var (
	us   = netip.MustParseAddrPort("198.51.100.1:40000")
	peer = netip.MustParseAddrPort("198.51.100.2:80")
)

func TestAnswers(t *testing.T) {
	const isn = 1000
	syn := craft.Segment{Seq: isn, Flags: craft.SYN}
	synData := craft.Segment{Seq: isn, Flags: craft.SYN, Payload: []byte("abc")}
	ack := craft.Segment{Seq: isn, Ack: 5000, Flags: craft.ACK}
	fin := craft.Segment{Seq: isn, Flags: craft.FIN}
	null := craft.Segment{Seq: isn}
	finData := craft.Segment{Seq: isn, Flags: craft.FIN | craft.PSH, Payload: []byte("hello")}
	tests := []struct {
		name   string
		sent   craft.Segment
		got    craft.Segment
		ok     bool
		reason string
	}{
		{"syn/syn-ack", syn, craft.Segment{Seq: 7, Ack: isn + 1, Flags: craft.SYN | craft.ACK}, true, ""},
		{"syn/rst-ack", syn, craft.Segment{Ack: isn + 1, Flags: craft.RST | craft.ACK}, true, ""},
		{"syn/syn-ack ack=isn", syn, craft.Segment{Ack: isn, Flags: craft.SYN | craft.ACK}, false, "bad-ack"},
		{"syn/syn-ack ack=isn+2", syn, craft.Segment{Ack: isn + 2, Flags: craft.SYN | craft.ACK}, false, "bad-ack"},
		{"syn/rst without ack", syn, craft.Segment{Flags: craft.RST}, false, "rst-without-ack"},
		{"syn/simultaneous open", syn, craft.Segment{Seq: 7, Flags: craft.SYN}, false, "no-ack"},
		{"syn/plain ack", syn, craft.Segment{Ack: isn + 1, Flags: craft.ACK}, false, "unexpected-flags"},
		{"syn+data/syn-ack acking all", synData, craft.Segment{Ack: isn + 4, Flags: craft.SYN | craft.ACK}, true, ""},
		{"syn+data/syn-ack acking the syn", synData, craft.Segment{Ack: isn + 1, Flags: craft.SYN | craft.ACK}, true, ""},
		{"syn+data/ack beyond", synData, craft.Segment{Ack: isn + 5, Flags: craft.SYN | craft.ACK}, false, "bad-ack"},
		{"syn wrapping/syn-ack", craft.Segment{Seq: 0xffffffff, Flags: craft.SYN}, craft.Segment{Ack: 0, Flags: craft.SYN | craft.ACK}, true, ""},
		{"ack/rst seq=ack", ack, craft.Segment{Seq: 5000, Flags: craft.RST}, true, ""},
		{"ack/rst wrong seq", ack, craft.Segment{Seq: 5001, Flags: craft.RST}, false, "bad-seq"},
		{"ack/syn-ack", ack, craft.Segment{Seq: 5000, Ack: isn, Flags: craft.SYN | craft.ACK}, false, "unexpected-flags"},
		{"fin/rst-ack", fin, craft.Segment{Ack: isn + 1, Flags: craft.RST | craft.ACK}, true, ""},
		{"fin/rst-ack ack=isn", fin, craft.Segment{Ack: isn, Flags: craft.RST | craft.ACK}, false, "bad-ack"},
		{"fin/rst without ack", fin, craft.Segment{Flags: craft.RST}, false, "unexpected-flags"},
		{"null/rst-ack ack=isn", null, craft.Segment{Ack: isn, Flags: craft.RST | craft.ACK}, true, ""},
		{"fin+data/rst-ack ack=isn+6", finData, craft.Segment{Ack: isn + 6, Flags: craft.RST | craft.ACK}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := tcpstate.Answers(&tt.sent, &tt.got)
			if ok != tt.ok || reason != tt.reason {
				t.Errorf("Answers(%v, %v) = %v, %q; want %v, %q", tt.sent.String(), tt.got.String(), ok, reason, tt.ok, tt.reason)
			}
		})
	}
}

func marshal(t *testing.T, seg craft.Segment) []byte {
	t.Helper()
	b, err := seg.Marshal()
	if err != nil {
		t.Fatalf("marshal %v: %v", seg.String(), err)
	}
	return b
}

// icmpQuoting is an ICMP port unreachable from the peer quoting pkt.
func icmpQuoting(t *testing.T, pkt []byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: peer.Addr().AsSlice(), DstIP: us.Addr().AsSlice()}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, ic, gopacket.Payload(pkt)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDispatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	syn := craft.Segment{Src: us, Dst: peer, Seq: 1000, Flags: craft.SYN, Window: 1024}
	synPkt := marshal(t, syn)
	synAck := marshal(t, craft.Segment{Src: peer, Dst: us, Seq: 7, Ack: 1001, Flags: craft.SYN | craft.ACK})
	badAck := marshal(t, craft.Segment{Src: peer, Dst: us, Seq: 7, Ack: 1002, Flags: craft.SYN | craft.ACK})
	otherSeq := syn
	otherSeq.Seq = 999
	icmpOK := icmpQuoting(t, synPkt)
	icmpBad := icmpQuoting(t, marshal(t, otherSeq))
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

	type want struct {
		kind    craft.Kind
		at      time.Time
		sent    time.Time // Reply.Sent
		ignored map[string]uint64
	}
	tests := []struct {
		name   string
		frames []capture.Frame
		want   *want // nil: no reply
	}{
		{
			name: "outgoing copy sets WireSent",
			frames: []capture.Frame{
				{Data: synPkt, Time: ms(1), Outgoing: true},
				{Data: synAck, Time: ms(3)},
			},
			want: &want{kind: craft.KindTCP, at: ms(3), sent: ms(1), ignored: map[string]uint64{}},
		},
		{
			name:   "no outgoing copy",
			frames: []capture.Frame{{Data: synAck, Time: ms(3)}},
			want:   &want{kind: craft.KindTCP, at: ms(3), ignored: map[string]uint64{}},
		},
		{
			name: "loopback double copies",
			frames: []capture.Frame{
				{Data: synPkt, Time: ms(1), Outgoing: true},
				{Data: synPkt, Time: ms(1)}, // our SYN arriving on lo
				{Data: synAck, Time: ms(2), Outgoing: true},
				{Data: synAck, Time: ms(3)},
			},
			want: &want{kind: craft.KindTCP, at: ms(3), sent: ms(1), ignored: map[string]uint64{}},
		},
		{
			name: "a second outgoing copy keeps the first time",
			frames: []capture.Frame{
				{Data: synPkt, Time: ms(1), Outgoing: true},
				{Data: synPkt, Time: ms(2), Outgoing: true},
				{Data: synAck, Time: ms(3)},
			},
			want: &want{kind: craft.KindTCP, at: ms(3), sent: ms(1), ignored: map[string]uint64{}},
		},
		{
			name:   "bad ack ignored then the right answer",
			frames: []capture.Frame{{Data: badAck, Time: ms(2)}, {Data: synAck, Time: ms(3)}},
			want:   &want{kind: craft.KindTCP, at: ms(3), ignored: map[string]uint64{"bad-ack": 1}},
		},
		{
			name:   "ICMP quoting our segment",
			frames: []capture.Frame{{Data: synPkt, Time: ms(1), Outgoing: true}, {Data: icmpOK, Time: ms(4)}},
			want:   &want{kind: craft.KindICMP, at: ms(4), sent: ms(1), ignored: map[string]uint64{}},
		},
		{
			name:   "ICMP quoting another seq is ignored",
			frames: []capture.Frame{{Data: icmpBad, Time: ms(4)}},
		},
		{
			name:   "outgoing ICMP is not an answer",
			frames: []capture.Frame{{Data: icmpOK, Time: ms(4), Outgoing: true}},
		},
		{
			name:   "garbage",
			frames: []capture.Frame{{Data: []byte{0x45, 0, 0}, Time: ms(1)}, {Data: nil, Time: ms(1)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := capture.NewMatcher()
			c := make(chan capture.Reply, 1)
			p, err := m.Expect(syn, c)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.frames {
				m.Dispatch(&tt.frames[i])
			}
			select {
			case r := <-c:
				if tt.want == nil {
					t.Fatalf("got a reply %+v, want none", r)
				}
				if r.Probe != p || r.Packet.Kind != tt.want.kind || !r.Time.Equal(tt.want.at) || !r.Sent.Equal(tt.want.sent) {
					t.Errorf("reply kind %v at %v sent %v, want %v at %v sent %v", r.Packet.Kind, r.Time, r.Sent, tt.want.kind, tt.want.at, tt.want.sent)
				}
				if diff := cmp.Diff(tt.want.ignored, m.Ignored()); diff != "" {
					t.Errorf("ignored (-want +got):\n%s", diff)
				}
				if got := p.WireSent(); !got.Equal(tt.want.sent) {
					t.Errorf("WireSent = %v, want %v", got, tt.want.sent)
				}
			default:
				if tt.want != nil {
					t.Fatal("no reply")
				}
			}
		})
	}
	t.Run("ICMP seq mismatch is counted", func(t *testing.T) {
		m := capture.NewMatcher()
		c := make(chan capture.Reply, 1)
		if _, err := m.Expect(syn, c); err != nil {
			t.Fatal(err)
		}
		m.Dispatch(&capture.Frame{Data: icmpBad, Time: ms(1)})
		if diff := cmp.Diff(map[string]uint64{"icmp-bad-seq": 1}, m.Ignored()); diff != "" {
			t.Errorf("ignored (-want +got):\n%s", diff)
		}
	})
}

// TestMatcherRun drives the matcher from a scripted peer through Run, with
// replies delivered on the probe's channel, and checks Forget and duplicate
// registration.
func TestMatcherRun(t *testing.T) {
	pr := peertest.New(map[uint16]peertest.Script{80: {Answer: peertest.Open, RTT: 2 * time.Millisecond}})
	m := capture.NewMatcher()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, pr) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	syn := craft.Segment{Src: us, Dst: peer, Seq: 1000, Flags: craft.SYN}
	c := make(chan capture.Reply, 1)
	p, err := m.Expect(syn, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Expect(syn, c); err == nil {
		t.Error("second Expect for the same 4-tuple: no error")
	}
	if err := pr.Send(marshal(t, syn), peer.Addr()); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-c:
		if got := r.Time.Sub(r.Sent); got != 2*time.Millisecond {
			t.Errorf("reply time - wire sent = %v, want 2ms", got)
		}
		if r.Packet.Seg.Ack != 1001 || !r.Packet.Seg.Flags.Has(craft.SYN|craft.ACK) {
			t.Errorf("reply %v, want SYN-ACK ack 1001", r.Packet.Seg.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply within 5s")
	}
	m.Forget(p) // already answered: harmless
	if _, err := m.Expect(syn, c); err != nil {
		t.Errorf("Expect after the answer: %v", err)
	}
}

// TestStream checks that a stream sees both directions in order.
func TestStream(t *testing.T) {
	m := capture.NewMatcher()
	s, err := m.Stream(capture.Key{Local: us, Remote: peer}, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer m.CloseStream(s)
	syn := marshal(t, craft.Segment{Src: us, Dst: peer, Seq: 1000, Flags: craft.SYN})
	synAck := marshal(t, craft.Segment{Src: peer, Dst: us, Seq: 7, Ack: 1001, Flags: craft.SYN | craft.ACK})
	other := marshal(t, craft.Segment{Src: netip.MustParseAddrPort("198.51.100.3:80"), Dst: us, Seq: 7, Flags: craft.RST})
	for _, f := range []capture.Frame{{Data: syn, Outgoing: true}, {Data: other}, {Data: synAck}} {
		m.Dispatch(&f)
	}
	var got []string
	for len(s.C()) > 0 {
		r := <-s.C()
		dir := "in"
		if r.Outgoing {
			dir = "out"
		}
		got = append(got, dir+" "+r.Packet.Seg.Flags.String())
	}
	if diff := cmp.Diff([]string{"out S", "in S."}, got); diff != "" {
		t.Errorf("stream (-want +got):\n%s", diff)
	}
}
