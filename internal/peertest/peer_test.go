package peertest_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/internal/peertest"
)

var (
	us   = netip.MustParseAddrPort("198.51.100.1:40000")
	them = netip.MustParseAddrPort("198.51.100.2:80")
)

func send(t *testing.T, p *peertest.Peer, seg craft.Segment) {
	t.Helper()
	b, err := seg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send(b, seg.Dst.Addr()); err != nil {
		t.Fatal(err)
	}
}

// frame is a parsed frame, for comparison.
type frame struct {
	Out   bool
	At    time.Duration // after Epoch
	Kind  craft.Kind
	Flags craft.Flags
	Seq   craft.Seq
	Ack   craft.Seq
}

// drain reads the n frames queued so far.
func drain(t *testing.T, p *peertest.Peer, n int) []frame {
	t.Helper()
	var out []frame
	for range n {
		var f capture.Frame
		if err := p.Read(&f); err != nil {
			t.Fatal(err)
		}
		pkt, err := craft.Parse(f.Data)
		if err != nil {
			t.Fatal(err)
		}
		fr := frame{Out: f.Outgoing, At: f.Time.Sub(peertest.Epoch()), Kind: pkt.Kind}
		if pkt.Kind == craft.KindTCP {
			fr.Flags, fr.Seq, fr.Ack = pkt.Seg.Flags, pkt.Seg.Seq, pkt.Seg.Ack
		} else if pkt.Kind == craft.KindICMP {
			fr.Seq = pkt.ICMP.Quoted.Seq
		}
		out = append(out, fr)
	}
	return out
}

func TestPeerAnswers(t *testing.T) {
	const rtt = 3 * time.Millisecond
	syn := craft.Segment{Src: us, Dst: them, Seq: 100, Flags: craft.SYN}
	tests := []struct {
		name   string
		script peertest.Script
		seg    craft.Segment
		want   []frame
	}{
		{"open", peertest.Script{Answer: peertest.Open, RTT: rtt}, syn, []frame{
			{Out: true, Kind: craft.KindTCP, Flags: craft.SYN, Seq: 100},
			{At: rtt, Kind: craft.KindTCP, Flags: craft.SYN | craft.ACK, Seq: peertest.DefaultISN, Ack: 101},
		}},
		{"closed", peertest.Script{RTT: rtt}, syn, []frame{
			{Out: true, Kind: craft.KindTCP, Flags: craft.SYN, Seq: 100},
			{At: rtt, Kind: craft.KindTCP, Flags: craft.RST | craft.ACK, Seq: 0, Ack: 101},
		}},
		{"closed, ACK probe", peertest.Script{RTT: rtt}, craft.Segment{Src: us, Dst: them, Seq: 100, Ack: 555, Flags: craft.ACK}, []frame{
			{Out: true, Kind: craft.KindTCP, Flags: craft.ACK, Seq: 100, Ack: 555},
			{At: rtt, Kind: craft.KindTCP, Flags: craft.RST, Seq: 555},
		}},
		{"open, FIN probe dropped", peertest.Script{Answer: peertest.Open, RTT: rtt}, craft.Segment{Src: us, Dst: them, Seq: 100, Flags: craft.FIN}, []frame{
			{Out: true, Kind: craft.KindTCP, Flags: craft.FIN, Seq: 100},
		}},
		{"silent", peertest.Script{Answer: peertest.Silent}, syn, []frame{
			{Out: true, Kind: craft.KindTCP, Flags: craft.SYN, Seq: 100},
		}},
		{"icmp", peertest.Script{Answer: peertest.PortUnreachable, RTT: rtt}, syn, []frame{
			{Out: true, Kind: craft.KindTCP, Flags: craft.SYN, Seq: 100},
			{At: rtt, Kind: craft.KindICMP, Seq: 100},
		}},
		{"bad ack first, duplicated", peertest.Script{Answer: peertest.Open, BadAckFirst: true, Duplicate: true}, syn, []frame{
			{Out: true, Kind: craft.KindTCP, Flags: craft.SYN, Seq: 100},
			{Kind: craft.KindTCP, Flags: craft.SYN | craft.ACK, Seq: peertest.DefaultISN, Ack: 102},
			{Kind: craft.KindTCP, Flags: craft.SYN | craft.ACK, Seq: peertest.DefaultISN, Ack: 101},
			{Kind: craft.KindTCP, Flags: craft.SYN | craft.ACK, Seq: peertest.DefaultISN, Ack: 101},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := peertest.New(map[uint16]peertest.Script{80: tt.script})
			send(t, p, tt.seg)
			if diff := cmp.Diff(tt.want, drain(t, p, len(tt.want))); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPeerHalfOpen(t *testing.T) {
	p := peertest.New(map[uint16]peertest.Script{80: {Answer: peertest.Open}})
	send(t, p, craft.Segment{Src: us, Dst: them, Seq: 100, Flags: craft.SYN})
	if got := len(p.HalfOpen()); got != 1 {
		t.Fatalf("%d half-open connections after a SYN, want 1", got)
	}
	send(t, p, craft.Segment{Src: us, Dst: them, Seq: 102, Flags: craft.RST}) // wrong seq: ignored
	if got := len(p.HalfOpen()); got != 1 {
		t.Fatalf("%d half-open connections after a reset at the wrong seq, want 1", got)
	}
	send(t, p, craft.Segment{Src: us, Dst: them, Seq: 101, Flags: craft.RST})
	if got := p.HalfOpen(); len(got) != 0 {
		t.Fatalf("half-open after the reset: %v", got)
	}
	if got := len(p.Received()); got != 3 {
		t.Errorf("recorded %d segments, want 3", got)
	}
}

func TestPeerReadBlocksUntilClose(t *testing.T) {
	p := peertest.New(nil)
	errc := make(chan error, 1)
	go func() {
		var f capture.Frame
		errc <- p.Read(&f)
	}()
	select {
	case err := <-errc:
		t.Fatalf("Read returned %v with nothing queued", err)
	case <-time.After(20 * time.Millisecond):
	}
	p.Close()
	p.Close()
	if err := <-errc; err != capture.ErrClosed {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
}

func TestPeerRespond(t *testing.T) {
	p := peertest.New(nil)
	p.Respond = func(seg craft.Segment) [][]byte {
		r := craft.Segment{Src: seg.Dst, Dst: seg.Src, Seq: 9, Ack: seg.Seq + 1, Flags: craft.SYN | craft.ACK}
		b, err := r.Marshal()
		if err != nil {
			t.Error(err)
		}
		return [][]byte{b}
	}
	send(t, p, craft.Segment{Src: us, Dst: them, Seq: 100, Flags: craft.SYN}) // port 80 has no script: closed, but Respond decides
	want := []frame{
		{Out: true, Kind: craft.KindTCP, Flags: craft.SYN, Seq: 100},
		{Kind: craft.KindTCP, Flags: craft.SYN | craft.ACK, Seq: 9, Ack: 101},
	}
	if diff := cmp.Diff(want, drain(t, p, 2)); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
}

func TestFixedRand(t *testing.T) {
	r := peertest.FixedRand(1, 2, 3)
	var got []uint32
	for range 5 {
		got = append(got, r())
	}
	if diff := cmp.Diff([]uint32{1, 2, 3, 1, 2}, got); diff != "" {
		t.Errorf("FixedRand (-want +got):\n%s", diff)
	}
}
