package analyze

import (
	"os"
	"testing"

	"tcpshake/event"
)

// TestSegmentsCounted: the story of one conversation counts its segments as the teaching texts do (issue 12),
// with the same rule as the sessions (event.SegmentCount.Add): the echo capture's SYN, SYN-ACK and ACK; the two
// data segments and their ACKs; the two FINs and the last ACK. A table of every conversation carries no count.
func TestSegmentsCounted(t *testing.T) {
	data, err := os.ReadFile("testdata/echo.pcap")
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := runBytes(t, data, Config{Conn: ConnSelector{Index: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var got *event.SegmentCount
	for _, e := range evs {
		if c, ok := e.(event.Connection); ok {
			got = c.Segments
		}
	}
	want := "3 (handshake) + 4 (data) + 3 (close) = 10 segments for 12 bytes (6 from the client, 6 from the server)"
	if got == nil || got.Words("from the client", "from the server") != want {
		t.Fatalf("segments %+v, want %s", got, want)
	}
	evs, _, err = runBytes(t, data, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if c, ok := e.(event.Connection); ok && c.Segments != nil {
			t.Errorf("the table's row carries a count: %+v", c.Segments)
		}
	}
}
