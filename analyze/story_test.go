package analyze

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"tcpshake/event"
)

// storySteps tells conversation n of one of storyCaptures' conversations.
func storySteps(t *testing.T, name string, n int) ([]event.Step, []event.Connection) {
	t.Helper()
	segs, ok := storyCaptures()[name]
	if !ok {
		t.Fatalf("no story capture %s", name)
	}
	evs, _, err := runBytes(t, synth(t, segs), Config{Conn: ConnSelector{Index: n}})
	if err != nil {
		t.Fatal(err)
	}
	var steps []event.Step
	for _, e := range evs {
		if s, ok := e.(event.Step); ok {
			steps = append(steps, s)
		}
	}
	return steps, connections(evs)
}

func explained(s event.Step) string { return strings.Join(s.Explain, "\n") }

// checkStep checks step i (from 1): its analysis flags and words it must and must not say.
func checkStep(t *testing.T, steps []event.Step, i int, analysis string, must []string, mustNot []string) {
	t.Helper()
	if i > len(steps) {
		t.Fatalf("%d steps, want at least %d", len(steps), i)
	}
	s := steps[i-1]
	if got := strings.Join(s.Analysis, ","); got != analysis {
		t.Errorf("step %d analysis %q, want %q", i, got, analysis)
	}
	all := explained(s)
	for _, w := range must {
		if !strings.Contains(all, w) {
			t.Errorf("step %d lacks %q:\n%s", i, w, all)
		}
	}
	for _, w := range mustNot {
		if strings.Contains(all, w) {
			t.Errorf("step %d says %q:\n%s", i, w, all)
		}
	}
}

// TestStoryWiresharkAnalysis: an ACK to a keep-alive and a window update are no duplicate ACKs; zero-window
// probes, fast and spurious retransmissions are named as Wireshark names them.
func TestStoryWiresharkAnalysis(t *testing.T) {
	steps, _ := storySteps(t, "synth-keepalive.pcap", 1)
	checkStep(t, steps, 6, "keep-alive", []string{"keep-alive: seq 6"}, nil)
	checkStep(t, steps, 7, "keep-alive-ack", []string{"the answer to the peer's keep-alive"}, []string{"duplicate"})
	checkStep(t, steps, 10, "window-update", []string{"window update: ack 7 again, only the window changed (from 500 to 900)"}, []string{"duplicate"})

	steps, _ = storySteps(t, "synth-zerowindow.pcap", 1)
	checkStep(t, steps, 5, "zero-window", []string{"zero window"}, nil)
	checkStep(t, steps, 6, "zero-window-probe", []string{"zero-window probe: 1 byte at seq 4"}, []string{"keep-alive"})
	checkStep(t, steps, 7, "zero-window,zero-window-probe-ack", []string{"the answer to the peer's zero-window probe"}, []string{"duplicate"})

	steps, _ = storySteps(t, "synth-fastretrans.pcap", 1)
	checkStep(t, steps, 5, "lost-segment", []string{"previous segment not captured: seq 9 is beyond seq 5"}, nil)
	checkStep(t, steps, 8, "duplicate-ack", []string{"duplicate ACK #1: ack 5 again"}, nil)
	checkStep(t, steps, 10, "duplicate-ack", []string{"duplicate ACK #2"}, nil)
	checkStep(t, steps, 11, "retransmission,fast-retransmission", []string{"fast retransmission: the peer's duplicate ACKs asked for seq 5"}, nil)

	steps, cs := storySteps(t, "synth-spurious.pcap", 1)
	checkStep(t, steps, 6, "retransmission,spurious-retransmission", []string{"spurious retransmission: seq 1 to 7 was already acknowledged by the peer (its last ack was 7)"}, nil)
	if len(cs) != 1 || cs[0].Retransmissions != 1 {
		t.Errorf("a spurious retransmission counts as a retransmission (tcp.analysis.retransmission): %+v", cs)
	}
}

// TestStoryCloses: a FIN that does not acknowledge the peer's FIN is no passive close; the close is
// simultaneous only when the FINs crossed, not when the first one was lost.
func TestStoryCloses(t *testing.T) {
	steps, cs := storySteps(t, "synth-fins-cross.pcap", 1)
	checkStep(t, steps, 5, "", []string{"server: CLOSE-WAIT → CLOSING (sent FIN before the peer's FIN arrived (ack 1 does not cover the FIN at seq 1): not a passive close"}, []string{"passive close:", "LAST-ACK"})
	if got := steps[len(steps)-1]; got.Local != "TIME-WAIT" || got.Remote != "TIME-WAIT" {
		t.Errorf("after crossed FINs both ends wait in TIME-WAIT, got %s / %s", got.Local, got.Remote)
	}
	if cs[0].Closed != ClosedSimultaneous {
		t.Errorf("crossed FINs: closed %q, want %q", cs[0].Closed, ClosedSimultaneous)
	}
	_, cs = storySteps(t, "synth-fin-lost.pcap", 1)
	if cs[0].Closed == ClosedSimultaneous || cs[0].Closed != ClosedFourWay {
		t.Errorf("a lost first FIN sent again: closed %q, want %q", cs[0].Closed, ClosedFourWay)
	}
	// The ordinary passive close still says so.
	evs, _, err := runBytes(t, synth(t, join(handshake, request, []seg{
		{up: true, flags: "F.", seq: 107, ack: 5001, at: 10e6},
		{flags: ".", seq: 5001, ack: 108, at: 11e6},
		{flags: "F.", seq: 5001, ack: 108, at: 12e6},
		{up: true, flags: ".", seq: 108, ack: 5002, at: 13e6},
	})), Config{Conn: ConnSelector{Index: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, e := range evs {
		if s, ok := e.(event.Step); ok {
			all = append(all, explained(s))
		}
	}
	if j := strings.Join(all, "\n"); !strings.Contains(j, "CLOSE-WAIT → LAST-ACK (sent FIN after the peer's FIN: passive close)") {
		t.Errorf("a FIN that acknowledges the peer's FIN is a passive close:\n%s", j)
	}
}

// TestStoryRSTJudged: an RST outside the receive window is ignored and changes nothing; the exact one aborts.
func TestStoryRSTJudged(t *testing.T) {
	steps, _ := storySteps(t, "synth-rst-outside.pcap", 1)
	before := steps[5].Remote
	s := steps[6]
	if !s.Ignored || s.Remote != before || before != "CLOSE-WAIT" {
		t.Errorf("RST outside the window: ignored %v, server %s → %s, want ignored and CLOSE-WAIT unchanged", s.Ignored, before, s.Remote)
	}
	checkStep(t, steps, 7, "", []string{"ignored: outside the window: seq 2999999900 is not within RCV.NXT 2", "its state is unchanged"}, []string{"neither end keeps any state"})
	checkStep(t, steps, 8, "", []string{"accepted: seq 2 = RCV.NXT"}, nil)
	if steps[7].Remote != "CLOSED" || steps[7].Ignored {
		t.Errorf("the exact RST: server %s ignored %v, want CLOSED", steps[7].Remote, steps[7].Ignored)
	}
}

// TestStoryMidConnection: a capture that starts after the handshake is said to, both ends are ESTABLISHED from
// the first segment; a SYN into the open connection (tshark: a new conversation) keeps the relative numbers and
// the states, and the next 1-byte segment is no keep-alive.
func TestStoryMidConnection(t *testing.T) {
	steps, cs := storySteps(t, "synth-midstream.pcap", 1)
	if !strings.Contains(explained(steps[0]), "already established when the capture began") {
		t.Errorf("first step:\n%s", explained(steps[0]))
	}
	for _, s := range steps {
		if s.Local != "ESTABLISHED" || s.Remote != "ESTABLISHED" {
			t.Errorf("step %d: %s / %s, want ESTABLISHED on both ends", s.N, s.Local, s.Remote)
		}
	}
	if len(cs) != 1 || cs[0].Opened != OpenedNoHandshake {
		t.Errorf("connection: %+v", cs)
	}
	steps, _ = storySteps(t, "synth-midstream.pcap", 2)
	if len(steps) != 3 {
		t.Fatalf("%d steps in the second conversation, want 3", len(steps))
	}
	if steps[0].RelSeq != 501 || !steps[0].Ignored || !strings.Contains(explained(steps[0]), "in-window SYN") {
		t.Errorf("the SYN: rel seq %d ignored %v\n%s", steps[0].RelSeq, steps[0].Ignored, explained(steps[0]))
	}
	checkStep(t, steps, 3, "retransmission", nil, []string{"keep-alive"})
	if steps[2].RelSeq != 5 || steps[2].Local != "ESTABLISHED" {
		t.Errorf("after the in-window SYN: rel seq %d (want 5, not restarted), client %s", steps[2].RelSeq, steps[2].Local)
	}
	steps, _ = storySteps(t, "synth-insyn-first.pcap", 1)
	for _, s := range steps {
		if s.Local == "SYN-SENT" {
			t.Errorf("step %d: the client in SYN-SENT while its connection is established:\n%s", s.N, explained(s))
		}
	}
}

// TestHalfOpenReset: an RST that acknowledges the SYN-ACK does not complete the handshake.
func TestHalfOpenReset(t *testing.T) {
	_, cs := storySteps(t, "synth-halfopen-rst.pcap", 1)
	if cs[0].Opened != OpenedIncomplete || cs[0].Closed != ClosedRSTClient {
		t.Errorf("opened %q closed %q, want %q %q", cs[0].Opened, cs[0].Closed, OpenedIncomplete, ClosedRSTClient)
	}
}

// TestDurationsFromEarliestAndLatest: records out of time order give no negative duration.
func TestDurationsFromEarliestAndLatest(t *testing.T) {
	evs, sum, err := runBytes(t, synth(t, storyCaptures()["synth-timestamps-backwards.pcap"]), Config{})
	if err != nil {
		t.Fatal(err)
	}
	cs := connections(evs)
	const want = 3600005.0 // from an hour before the SYN to 5 ms after it, in ms
	if len(cs) != 1 || cs[0].DurationMs != want || sum.DurationMs != want || cs[0].StartMs < 0 {
		t.Errorf("durations: connection %+v, capture %v ms, want %v", cs, sum.DurationMs, want)
	}
}

// TestIPLengthPastFrame: an untruncated frame whose IP header claims more bytes than it holds is counted with the
// bytes it has, as tshark counts it.
func TestIPLengthPastFrame(t *testing.T) {
	evs, sum, err := collect(t, filepath.Join(corpusDir, "synth-iplen-past-frame.pcap"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	cs := connections(evs)
	if len(cs) != 1 || cs[0].BytesToServer != 40+40+46 || sum.TCPPackets != 5 {
		t.Errorf("%+v", cs)
	}
}

// TestNotDecodedWarns: a link type or encapsulation not decoded is one warning line with its packet count.
func TestNotDecodedWarns(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"tcpdump-arcnet-rfc1051-arp-icmp-http.pcap", "tcpshake: warning: 26 packets skipped: link type 129 not decoded\n"},
		{"tcpdump-ipoib.pcap", "tcpshake: warning: 30 packets skipped: link type 242 not decoded\n"},
		{"synth-vxlan.pcap", ""},
	} {
		var warn bytes.Buffer
		f, err := os.Open(filepath.Join(corpusDir, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		_, _, _ = collect(t, f.Name(), Config{Warn: &warn})
		f.Close()
		got := warn.String()
		if (tc.want == "" && got != "") || !strings.HasPrefix(got, tc.want) || strings.Count(got, "\n") > 1 {
			t.Errorf("%s: warnings %q, want one line starting %q", tc.file, got, tc.want)
		}
	}
}

// TestUndecodedEncapsulationWarns: a GRE payload of a protocol gopacket does not know is warned about by name.
func TestUndecodedEncapsulationWarns(t *testing.T) {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ip := innerPackets(t, false)[0]
	frame := ether(0x0800, outer4(47, 1, append([]byte{0, 0, 0x12, 0x34}, ip...)))
	for range 3 {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(frame), Length: len(frame)}, frame); err != nil {
			t.Fatal(err)
		}
	}
	var warn bytes.Buffer
	evs, sum, err := runBytes(t, buf.Bytes(), Config{Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	if want := "tcpshake: warning: 3 packets skipped: GRE protocol 0x1234 not decoded\n"; warn.String() != want || sum.Skipped != 3 {
		t.Errorf("warnings %q (skipped %d), want %q", warn.String(), sum.Skipped, want)
	}
	var inStream bool
	for _, e := range evs {
		if w, ok := e.(event.Warning); ok && strings.Contains(w.Message, "GRE protocol 0x1234") {
			inStream = true
		}
	}
	if !inStream {
		t.Error("the warning is not in the event stream (JSON)")
	}
}

// TestStoryClientOnly: a capture of the client's side only (the SYN-ACK missing) does not keep the client in
// SYN-SENT while it acknowledges the server's data.
func TestStoryClientOnly(t *testing.T) {
	segs := []seg{
		{up: true, flags: "S", seq: 100},
		{up: true, flags: ".", seq: 101, ack: 5001, at: 2e6},
		{up: true, flags: "P.", seq: 101, ack: 5001, data: "hello\n", at: 3e6},
		{up: true, flags: ".", seq: 107, ack: 6281, at: 10e6},
	}
	evs, _, err := runBytes(t, synth(t, segs), Config{Conn: ConnSelector{Index: 1}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		s, ok := e.(event.Step)
		if !ok {
			continue
		}
		n++
		if s.Local == "SYN-SENT" && n > 1 {
			t.Errorf("step %d: the client is still in SYN-SENT while it acknowledges the server:\n%s", s.N, explained(s))
		}
		if n == 1 && !strings.Contains(explained(s), "SYN-ACK is not in the capture") {
			t.Errorf("first step does not say the SYN-ACK is missing:\n%s", explained(s))
		}
	}
}

// TestIgnoredRSTDoesNotEnd: an RST outside the window does not end the conversation; the exact one does.
func TestIgnoredRSTDoesNotEnd(t *testing.T) {
	segs := storyCaptures()["synth-rst-outside.pcap"]
	_, cs := storySteps(t, "synth-rst-outside.pcap", 1)
	if cs[0].Closed != ClosedRSTClient {
		t.Errorf("closed %q, want %q (the exact RST)", cs[0].Closed, ClosedRSTClient)
	}
	evs, _, err := runBytes(t, synth(t, segs[:len(segs)-1]), Config{}) // without the exact RST
	if err != nil {
		t.Fatal(err)
	}
	if c := connections(evs); c[0].Closed != ClosedHalfAtEnd {
		t.Errorf("only an RST outside the window: closed %q, want %q", c[0].Closed, ClosedHalfAtEnd)
	}
}

// TestPortReuseOnOpenConversation: a SYN with a new seq splits even an open conversation, as tshark does.
func TestPortReuseOnOpenConversation(t *testing.T) {
	evs, sum, err := runBytes(t, synth(t, storyCaptures()["synth-portreuse-open.pcap"]), Config{})
	if err != nil {
		t.Fatal(err)
	}
	cs := connections(evs)
	if len(cs) != 2 || sum.Conversations != 2 || cs[1].Opened != OpenedThreeWay || cs[0].Closed != ClosedOpenAtEnd {
		t.Errorf("conversations: %+v", cs)
	}
}

// TestIncompleteFragmentsWarn: fragments whose packet never completes are warned about, not lost silently.
func TestIncompleteFragmentsWarn(t *testing.T) {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for i, ip := range innerPackets(t, false) {
		fs := fragments4(ip, uint16(i))
		if len(fs) > 1 {
			fs = fs[:len(fs)-1] // the last fragment of the 3000-byte segment never comes
		}
		for _, f := range fs {
			frames = append(frames, ether(0x0800, f))
		}
	}
	for _, f := range frames {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	var warn bytes.Buffer
	_, sum, err := runBytes(t, buf.Bytes(), Config{Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	want := "tcpshake: warning: 1 packet never reassembled (IP fragments missing from the capture)\n"
	if warn.String() != want || sum.TCPPackets != uint64(len(innerPackets(t, false))-1) {
		t.Errorf("warnings %q, TCP packets %d; want %q and one segment fewer", warn.String(), sum.TCPPackets, want)
	}
}
