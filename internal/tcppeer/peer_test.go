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

// exchangeAll sends segs one after another, each at its offset from the
// start, and returns every answer with its time from the start.
func exchangeAll(t *testing.T, p *tcppeer.Peer, segs []craft.Segment, at []time.Duration) []string {
	t.Helper()
	start := time.Now()
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
			out = append(out, s.Flags.String()+" "+f.Time.Sub(start).String()+
				" seq "+itoa(uint32(s.Seq))+" ack "+itoa(uint32(s.Ack)))
		}
	}()
	for i, seg := range segs {
		time.Sleep(start.Add(at[i]).Sub(time.Now()))
		seg.Src, seg.Dst, seg.Window = us, them, 64240
		pkt, err := seg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(pkt, them.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Minute) // every answer is due long before
	synctest.Wait()
	p.Close()
	<-done
	return out
}

func TestPeerSlow(t *testing.T) {
	syn := craft.Segment{Flags: craft.SYN, Seq: 100}
	ack := craft.Segment{Flags: craft.ACK, Seq: 101, Ack: 2001}
	data := craft.Segment{Flags: craft.PSH | craft.ACK, Seq: 101, Ack: 2001, Payload: []byte("hi")}
	tests := []struct {
		name string
		set  func(p *tcppeer.Peer)
		segs []craft.Segment
		at   []time.Duration
		want []string
	}{
		{
			name: "delay on every answer",
			set:  func(p *tcppeer.Peer) { p.Delay = 50 * time.Millisecond },
			segs: []craft.Segment{syn, ack, data},
			at:   []time.Duration{0, 60 * time.Millisecond, 60 * time.Millisecond},
			want: []string{"S. 51ms seq 2000 ack 101", "P. 111ms seq 2001 ack 103"},
		},
		{
			name: "slow SYN-ACK only",
			set:  func(p *tcppeer.Peer) { p.SYNACKDelay = time.Second },
			segs: []craft.Segment{syn, ack, data},
			at:   []time.Duration{0, 1100 * time.Millisecond, 1100 * time.Millisecond},
			want: []string{"S. 1s seq 2000 ack 101", "P. 1.101s seq 2001 ack 103"},
		},
		{
			name: "a retransmitted SYN draws a second SYN-ACK",
			set:  func(p *tcppeer.Peer) { p.Delay = time.Second },
			segs: []craft.Segment{syn, syn},
			at:   []time.Duration{0, time.Second},
			want: []string{"S. 1.001s seq 2000 ack 101", "S. 2.001s seq 2000 ack 101"},
		},
		{
			name: "its own timer repeats the SYN-ACK until our ACK",
			set:  func(p *tcppeer.Peer) { p.SYNACKTimeout = time.Second },
			segs: []craft.Segment{syn, ack},
			at:   []time.Duration{0, 2500 * time.Millisecond},
			want: []string{"S. 1ms seq 2000 ack 101", "S. 1.001s seq 2000 ack 101"},
		},
		{
			name: "a repeat that left before our ACK arrived still comes",
			set:  func(p *tcppeer.Peer) { p.SYNACKTimeout = time.Second; p.RTT = 100 * time.Millisecond },
			segs: []craft.Segment{syn, ack},
			at:   []time.Duration{0, 1050 * time.Millisecond},
			want: []string{"S. 100ms seq 2000 ack 101", "S. 1.1s seq 2000 ack 101"},
		},
		{
			name: "without our ACK it gives up after its retries",
			set:  func(p *tcppeer.Peer) { p.SYNACKTimeout = time.Second; p.SYNACKRetries = 3 },
			segs: []craft.Segment{syn},
			at:   []time.Duration{0},
			want: []string{"S. 1ms seq 2000 ack 101", "S. 1.001s seq 2000 ack 101", "S. 3.001s seq 2000 ack 101", "S. 7.001s seq 2000 ack 101"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := tcppeer.New()
				p.Echo = true
				tt.set(p)
				got := exchangeAll(t, p, tt.segs, tt.at)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("answers (-want +got):\n%s", diff)
				}
			})
		})
	}
}
