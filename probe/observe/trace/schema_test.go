package trace

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"testing"
	"time"

	"tcpshake/craft"
	"tcpshake/internal/jsonschema"
	"tcpshake/probe/tcpstate"
)

// TestRendererJSONSchema: every kind of line watch --json writes (a change
// with and without its optional fields, a drop with a note, a warning)
// passes docs/json-schema.json, and a change missing a required field does
// not.
func TestRendererJSONSchema(t *testing.T) {
	b, err := os.ReadFile("../../../docs/json-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	a, c := netip.MustParseAddrPort("198.51.100.1:40000"), netip.MustParseAddrPort("198.51.100.2:80")
	var buf bytes.Buffer
	r := NewRenderer(&buf, true, func(uint32) string { return "lab-server" })
	evs := []Event{
		{Change: &Change{At: at, Netns: 7, Local: a, Remote: c, From: tcpstate.SynSent, To: tcpstate.Established}},
		{Change: &Change{At: at.Add(time.Millisecond), Netns: 7, Local: a, Remote: c, From: tcpstate.FinWait2, To: tcpstate.TimeWait,
			Socket: TimeWait, Polled: true, Note: "n"}},
		{Drop: &Drop{At: at, Netns: 7, Src: c, Dst: a, Flags: craft.PSH | craft.ACK, Seq: 1, Ack: 2, Len: 1, Reason: "TCP_INVALID_SEQUENCE", Code: 9, Note: "n"}},
		{Warning: "w"},
	}
	for _, ev := range evs {
		if err := r.Event(ev); err != nil {
			t.Fatal(err)
		}
	}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		n++
		if err := s.ValidateLine(sc.Bytes()); err != nil {
			t.Errorf("%s\n  %v", sc.Text(), err)
		}
	}
	if n != len(evs) {
		t.Errorf("%d lines, want %d", n, len(evs))
	}
	if err := s.ValidateLine([]byte(`{"type":"change","time":"t","t_us":0,"netns":"x","netns_inode":1,"local":"a","remote":"b","from":"CLOSED"}`)); err == nil {
		t.Errorf("a change without to and socket passed the schema")
	}
}
