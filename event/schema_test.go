package event_test

import (
	"bufio"
	"bytes"
	"os"
	"reflect"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tcpshake/event"
	"tcpshake/internal/jsonschema"
)

func loadSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile("../docs/json-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func f64(v float64) *float64 { return &v }
func u32(v uint32) *uint32   { return &v }
func u8(v uint8) *uint8      { return &v }
func u16(v uint16) *uint16   { return &v }

// samples has one fully populated value of every event type, and sparse ones.
func samples() []event.Event {
	scen := event.Scenario{Name: "in-window-rst", Title: "t", RFC: "RFC 5961 §3.2", Sent: "RST", Expected: "challenge ACK",
		Observed: "[.] seq 1 ack 2", Verdict: "conforms", Why: "w", RemoteBefore: "ESTABLISHED", RemoteAfter: "ESTABLISHED",
		ObservedBefore: "ESTABLISHED", ObservedAfter: "ESTABLISHED",
		Rule: "r", Strength: "MUST", StrengthNote: "n", Level: "MUST", Figures: map[string]float64{"rsts": 25},
		Peer: "Linux", SynCookie: true, SynCookieHow: "h", ICMP: []string{"port-unreach"},
		Checks: []event.ScenarioCheck{{Sent: "s", Expected: "e", Observed: "o", RFC: "RFC 9293 §3.10.7.1", Rule: "r", Strength: "MUST",
			StrengthNote: "n", Verdict: "permitted", Level: "", Why: "w"}}}
	sparse := event.Scenario{Name: "closed-port", Title: "t", RFC: "r", Sent: "s", Expected: "e", Observed: "o", Verdict: "inconclusive", Rule: "r", Strength: "SHOULD"}
	return []event.Event{
		sparse,
		event.Start{Command: "probe", Host: "h", Addr: "198.51.100.2", Src: "198.51.100.1", Interface: "veth0", Ports: []uint16{80}, Flags: "S", Count: 1, HeaderLen: 44},
		event.Start{Command: "handshake"},
		event.Step{N: 1, TimeMs: 0.5, Direction: "sent", Src: "a", Dst: "b", Flags: "S.", FlagNames: "SYN, ACK", Seq: 4294967295, Ack: 1,
			RelSeq: 0, RelAck: 1, Len: 6, Window: 64240, TTL: 64, Options: "[mss 1460]", Data: event.Payload("hello\n"), RTTMs: f64(0.04), ICMP: "port-unreach",
			Retrans: true, Explain: []string{"x"}, Local: "ESTABLISHED", Remote: "SYN-RECEIVED", Observed: "SYN-RECEIVED", Agreement: event.Agrees},
		event.Step{Direction: event.DirectionObserved, TimeMs: 60000, Observed: "CLOSED", Agreement: event.Ahead, Local: "CLOSED", Remote: "TIME-WAIT", Explain: []string{"k"}},
		event.Step{Direction: "note", Explain: []string{"TIME-WAIT"}},
		event.Result{Host: "h", Addr: "a", Port: 80, State: "open", Reason: "syn-ack", From: "a", RTTMs: f64(1), TTL: u8(64), Window: u16(1), Sent: 1, Received: 1},
		event.Result{Host: "h", Addr: "a", Port: 82, State: "filtered", Reason: "no-response", Sent: 2},
		event.Summary{Command: "probe", Host: "h", Sent: 1, Received: 1, RTT: &event.RTTStats{Min: 1, Avg: 1, Max: 1}, Ignored: map[string]uint64{"bad-ack": 1}, Open: 1, Elapsed: 2},
		event.Summary{Command: "probe", Host: "h", Sent: 2, Received: 1, Open: 1, Elapsed: 2, Scan: &event.ScanLedger{Probes: 2, Hosts: 1, Ports: 2, Answered: 1, Silent: 1, Open: 1, Filtered: 1, Retransmissions: 1, MaxTries: 2, RatePPS: 10000, SentPPS: 9000, Shard: "1/2"}},
		event.Summary{Command: "handshake", Local: "CLOSED", Remote: "CLOSED", Observed: "CLOSED", BytesSent: 6, BytesReceived: 6, Retransmissions: 1, SRTTMs: 0.1, Outcome: "ok"},
		event.Summary{Command: "rst", Outcome: "1 of 1 scenarios conform", Scenarios: []event.Scenario{scen}},
		event.Warning{Message: "m"},
		event.Verify{Host: "h", Addr: "a", Port: 80, Verdict: event.VerifySYNProxy, Handshake: true, SynAckWindow: u16(0), ISN: u32(7), Hello: 3, Bytes: 2, Data: event.Payload("hi"), PeerReset: true, WaitedMs: 1, Evidence: []string{"e"}, Why: "w"},
		event.Profile{Name: "isn", Title: "ISN quality", Host: "h", Addr: "198.51.100.2", Port: 80, Rule: "RFC 6528 §3", RFC: "RFC 6528",
			Strength: "MUST", Verdict: "deviates", Level: "MUST", Why: "constant", Class: "constant",
			Figures: []event.Figure{{Name: "delta", Value: 0, Unit: "", Text: "no change"}},
			Samples: []event.ProfileSample{{TimeMs: 1.5, SPort: 40000, Flags: "S.", Seq: u32(6510), OurISN: u32(1), DeltaMs: f64(0.1), RTTMs: f64(0.05), Options: "[mss 1460]", Note: "n"}},
			Explain: []string{"x"}, ElapsedMs: 170},
		scen,
		event.Connection{Index: 1, Client: "a", Server: "b", PacketsToServer: 1, BytesToServer: 60, Opened: "3-way", Closed: "4-way-fin", ICMP: 1},
		event.CaptureSummary{File: "f", Format: "pcapng", LinkType: "Raw", Packets: 1, Error: "truncated"},
	}
}

func TestSchemaAcceptsEveryEventType(t *testing.T) {
	s := loadSchema(t)
	var buf bytes.Buffer
	j := event.NewJSON(&buf)
	seen := map[string]bool{}
	for _, e := range samples() {
		j.Emit(e)
		seen[e.EventType()] = true
	}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		if err := s.ValidateLine(sc.Bytes()); err != nil {
			t.Errorf("%s\n  %v", sc.Text(), err)
		}
	}
	var got []string
	for k := range seen {
		got = append(got, k)
	}
	sort.Strings(got)
	// watch's change and drop lines are written by probe/observe/trace's
	// Renderer, and checked against the schema there.
	var types []string
	for _, k := range s.Types() {
		if k != "change" && k != "drop" {
			types = append(types, k)
		}
	}
	if diff := cmp.Diff(types, got); diff != "" {
		t.Errorf("event types in docs/json-schema.json vs Go (-schema +go):\n%s", diff)
	}
}

func TestSchemaRejects(t *testing.T) {
	s := loadSchema(t)
	for _, line := range []string{
		`{"type":"nope"}`,
		`{"type":"warning"}`,
		`{"type":"warning","message":"m","extra":1}`,
		`{"type":"result","host":"h","addr":"a","port":80,"state":"ajar","reason":"r","rtt_ms":null,"ttl":null,"window":null,"sent":1,"received":0}`,
		`{"type":"step","n":1.5,"t_ms":0,"direction":"sent","src":"","dst":"","flags":"","flag_names":"","seq":0,"ack":0,"rel_seq":0,"rel_ack":0,"len":0,"window":0}`,
		`[1,2]`,
		`{"type":"step","n":1,"t_ms":0,"direction":"sent","src":"","dst":"","flags":"","flag_names":"","seq":0,"ack":0,"rel_seq":0,"rel_ack":0,"len":0,"window":0,"observed_agreement":"maybe"}`,
	} {
		if err := s.ValidateLine([]byte(line)); err == nil {
			t.Errorf("accepted %s", line)
		}
	}
}

// Every Agreement is in the schema's enum.
func TestSchemaAgreements(t *testing.T) {
	s := loadSchema(t)
	for _, a := range event.Agreements() {
		line := `{"type":"step","n":1,"t_ms":0,"direction":"sent","src":"","dst":"","flags":"","flag_names":"","seq":0,"ack":0,"rel_seq":0,"rel_ack":0,"len":0,"window":0,"observed_agreement":"` + string(a) + `"}`
		if err := s.ValidateLine([]byte(line)); err != nil {
			t.Errorf("agreement %q: %v", a, err)
		}
	}
}

// Every exported event type must be in samples, so the schema test covers it.
func TestSamplesCoverEventTypes(t *testing.T) {
	want := []any{event.Start{}, event.Step{}, event.Result{}, event.Summary{}, event.Warning{}, event.Scenario{}, event.Connection{}, event.CaptureSummary{}, event.Profile{}}
	have := map[reflect.Type]bool{}
	for _, e := range samples() {
		have[reflect.TypeOf(e)] = true
	}
	for _, w := range want {
		if !have[reflect.TypeOf(w)] {
			t.Errorf("no sample of %T", w)
		}
	}
}
