package probe

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
)

// A Recorder keeps what crossed the wire during a run and the steps that
// explain it, and writes them as a pcapng file whose packet comments tell the
// story (-w). It passes every event on to the next sink unchanged.
type Recorder struct {
	Next event.Sink

	mu     sync.Mutex
	frames []capture.Frame
	steps  []event.Step
	last   time.Time // our clock at the last tapped frame
	// pairs: the step (its N) a session handed over with the frame, when it
	// had both in hand; 0: the session saw the frame and no step explains it.
	pairs map[frameKey]int
}

// frameKey names one captured frame: its kernel time and direction.
type frameKey struct {
	ns  int64
	out bool
}

// Pair records that the frame of r is the one step st explains (nil: a
// frame of the conversation that no step of ours explains, such as our
// kernel's own RST). It is a session's SessionEnv.Record.
func (r *Recorder) Pair(rep capture.Reply, st *event.Step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pairs == nil {
		r.pairs = map[frameKey]int{}
	}
	n := 0
	if st != nil {
		n = st.N
	}
	r.pairs[frameKey{rep.Time.UnixNano(), rep.Outgoing}] = n
}

// Settle waits until quiet has passed without a new frame (at most
// 10·quiet), so the last packets of a run reach the file.
func (r *Recorder) Settle(quiet time.Duration) {
	deadline := time.Now().Add(10 * quiet)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		idle := time.Since(r.last)
		r.mu.Unlock()
		if idle >= quiet {
			return
		}
		time.Sleep(quiet / 4)
	}
}

// Emit implements event.Sink.
func (r *Recorder) Emit(e event.Event) {
	if st, ok := e.(event.Step); ok && st.Direction != "note" {
		r.mu.Lock()
		r.steps = append(r.steps, st)
		r.mu.Unlock()
	}
	r.Next.Emit(e)
}

// Tap records one frame; it is the matcher's tap (capture.Matcher.SetTap).
// On loopback every packet passes the capture twice (leaving and arriving);
// the second copy is dropped, as libpcap does.
func (r *Recorder) Tap(f *capture.Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.frames) - 1; i >= 0 && i >= len(r.frames)-4; i-- {
		if bytes.Equal(r.frames[i].Data, f.Data) && f.Time.Sub(r.frames[i].Time) < 1e6 {
			return
		}
	}
	r.frames = append(r.frames, capture.Frame{Data: bytes.Clone(f.Data), Time: f.Time, Outgoing: f.Outgoing})
	r.last = time.Now()
}

// WriteTo writes the pcapng file: frames in wire order, each with the
// comment of the step it belongs to.
func (r *Recorder) WriteTo(w io.Writer, ifname string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pw, err := capture.NewPcapngWriter(w, ifname)
	if err != nil {
		return err
	}
	sort.SliceStable(r.frames, func(i, j int) bool { return r.frames[i].Time.Before(r.frames[j].Time) })
	used := make([]bool, len(r.steps))
	byN := map[int]int{}
	for i, st := range r.steps {
		if st.N > 0 {
			byN[st.N] = i
		}
	}
	for _, f := range r.frames {
		c, paired := r.paired(f, byN, used)
		if !paired {
			c = r.comment(f, used)
		}
		if err := pw.Write(f, c); err != nil {
			return err
		}
	}
	return pw.Flush()
}

// paired is the comment of the step a session paired with f, if it did.
func (r *Recorder) paired(f capture.Frame, byN map[int]int, used []bool) (string, bool) {
	n, ok := r.pairs[frameKey{f.Time.UnixNano(), f.Outgoing}]
	if !ok {
		return "", false
	}
	i, ok := byN[n]
	if n == 0 || !ok {
		if f.Outgoing {
			if pkt, err := craft.Parse(f.Data); err == nil && pkt.Kind == craft.KindTCP && pkt.Seg.Flags.Has(craft.RST) {
				return "not sent by tcpshake: our kernel's own RST for a connection it does not know", true
			}
		}
		return "", true
	}
	used[i] = true
	return Comment(&r.steps[i]), true
}

// comment finds the first unused step that describes f.
func (r *Recorder) comment(f capture.Frame, used []bool) string {
	pkt, err := craft.Parse(f.Data)
	if err != nil {
		return ""
	}
	dir := "received"
	if f.Outgoing {
		dir = "sent"
	}
	for i, st := range r.steps {
		if used[i] || st.Direction != dir || !stepMatches(&st, &pkt) {
			continue
		}
		used[i] = true
		return Comment(&st)
	}
	if pkt.Kind == craft.KindTCP && f.Outgoing && pkt.Seg.Flags.Has(craft.RST) {
		return "not sent by tcpshake: our kernel's own RST for a connection it does not know"
	}
	return ""
}

func stepMatches(st *event.Step, pkt *craft.Packet) bool {
	switch pkt.Kind {
	case craft.KindTCP:
		s := &pkt.Seg
		return st.ICMP == "" && st.Seq == uint32(s.Seq) && st.Flags == s.Flags.String() &&
			st.Len == len(s.Payload) && (!s.Flags.Has(craft.ACK) || st.Ack == uint32(s.Ack))
	case craft.KindICMP:
		return st.ICMP == pkt.ICMP.Reason()
	}
	return false
}

// Comment is the one-line story of a step, as a pcapng packet comment:
// "step 2 (received): [S.] seq 2000 ack 101; us ESTABLISHED, peer
// SYN-RECEIVED (kernel SYN-RECEIVED); ack 101 = our seq 100 + 1: …".
func Comment(st *event.Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d (%s): ", st.N, st.Direction)
	if st.ICMP != "" {
		fmt.Fprintf(&b, "ICMP %s from %s", st.ICMP, st.Src)
	} else {
		fmt.Fprintf(&b, "[%s] seq %d", st.Flags, st.Seq)
		if strings.Contains(st.Flags, ".") {
			fmt.Fprintf(&b, " ack %d", st.Ack)
		}
		if st.Len > 0 {
			fmt.Fprintf(&b, " len %d", st.Len)
		}
	}
	if st.Retrans {
		b.WriteString(" (retransmission)")
	}
	if st.Local != "" {
		fmt.Fprintf(&b, "; us %s, peer %s", st.Local, st.Remote)
		if st.Observed != "" {
			fmt.Fprintf(&b, " (kernel %s)", st.Observed)
		}
	}
	for _, x := range st.Explain {
		b.WriteString("; ")
		b.WriteString(x)
	}
	return b.String()
}
