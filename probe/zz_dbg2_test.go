package probe
import ("testing";"fmt";"testing/synctest";"time";"tcpshake/capture";"tcpshake/event")
type dbgSink struct{ r *fuzzRun; out []string }
func (d *dbgSink) Emit(e event.Event) { d.r.Emit(e); if st, ok := e.(event.Step); ok && st.Direction != "note" { d.out = append(d.out, fmt.Sprintf("%s%s+%d", map[string]string{"sent":">","received":"<"}[st.Direction], st.Flags, st.Len)) } }
func TestDbgSeeds(t *testing.T) {
	for i, seed := range fuzzSeeds() {
		synctest.Test(t, func(t *testing.T) {
			in := &fuzzIn{b: seed}
			cfg, manual := fuzzConfig(in)
			m := capture.NewMatcher(); wire := &fuzzWire{m: m}
			r := &fuzzRun{t: t, in: in, wire: wire, m: m}
			d := &dbgSink{r: r}
			n := uint32(0)
			s := NewSession(cfg, SessionEnv{Env: Env{Sender: wire, Matcher: m, Sink: d, Now: time.Now, Rand: func() uint32 { n++; return n * 0x9e3779b9 }}})
			r.s = s
			if manual { s.ManualACK() }
			s.Begin("fuzz")
			for j := 0; j < fuzzMaxOps && in.more(); j++ { r.op(t.Context()) }
			s.emit.flushAll()
			t.Logf("seed %d: %v end %v ended=%v ignored=%v rex=%d\n   %v\n", i, s.me.State, s.peer.State, s.ended, s.ignored, s.retransmits, d.out)
			s.Abort(nil); s.End()
		})
	}
}
