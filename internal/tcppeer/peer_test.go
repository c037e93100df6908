package tcppeer_test

import (
	"net/netip"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/internal/tcppeer"
	"tcpshake/probe/tcpstate"
)

var (
	us   = netip.MustParseAddrPort("198.51.100.1:40000")
	them = netip.MustParseAddrPort("198.51.100.2:7")
)

// exchange sends seg and returns the peer's answers (incoming frames) with
// their delay after the send.
func exchange(t *testing.T, p *tcppeer.Peer, seg craft.Segment) []string {
	t.Helper()
	seg.Src, seg.Dst, seg.Window = us, them, 64240
	pkt, err := seg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := p.Send(pkt, them.Addr()); err != nil {
		t.Fatal(err)
	}
	var out []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		var f capture.Frame
		for p.Read(&f) == nil {
			if f.Outgoing {
				continue
			}
			pk, err := craft.Parse(f.Data)
			if err != nil {
				t.Error(err)
				return
			}
			s := pk.Seg
			out = append(out, s.Flags.String()+" "+f.Time.Sub(sent).String()+
				" seq "+itoa(uint32(s.Seq))+" ack "+itoa(uint32(s.Ack))+" "+string(s.Payload))
		}
	}()
	time.Sleep(time.Second) // every answer is due long before
	synctest.Wait()
	p.Close()
	<-done
	return out
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func TestPeerAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := tcppeer.New()
		got := exchange(t, p, craft.Segment{Flags: craft.SYN, Seq: 100})
		want := []string{"S. 1ms seq 2000 ack 101 "}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answer to SYN (-want +got):\n%s", diff)
		}
		if p.State() != tcpstate.SynReceived {
			t.Errorf("state %v, want SYN-RECEIVED", p.State())
		}
	})
	synctest.Test(t, func(t *testing.T) {
		p := tcppeer.New()
		p.Answer = tcppeer.Closed
		got := exchange(t, p, craft.Segment{Flags: craft.SYN, Seq: 100})
		want := []string{"R. 1ms seq 0 ack 101 "}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("closed port's answer to SYN (-want +got):\n%s", diff)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		p := tcppeer.New()
		p.Duplicate = []int{1}
		got := exchange(t, p, craft.Segment{Flags: craft.SYN, Seq: 100})
		want := []string{"S. 1ms seq 2000 ack 101 ", "S. 1.01ms seq 2000 ack 101 "}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("duplicated answer (-want +got):\n%s", diff)
		}
	})
}
