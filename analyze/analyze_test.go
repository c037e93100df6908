package analyze

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"tcpshake/craft"
	"tcpshake/event"
)

var (
	cli = netip.MustParseAddrPort("198.51.100.1:40000")
	srv = netip.MustParseAddrPort("198.51.100.2:80")
)

// seg is a segment of a synthetic capture, from the client (up) or the server, at t.
type seg struct {
	up    bool
	flags string
	seq   uint32
	ack   uint32
	data  string
	at    time.Duration
	win   uint16
	zwin  bool // window 0 (win 0 means the default)
}

// synth writes the segments as a pcap file of link type RAW.
func synth(t testing.TB, segs []seg) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for _, s := range segs {
		f, err := craft.ParseFlags(s.flags)
		if err != nil {
			t.Fatal(err)
		}
		win := s.win
		if win == 0 {
			win = 500
		}
		if s.zwin {
			win = 0
		}
		c := craft.Segment{Src: cli, Dst: srv, Seq: craft.Seq(s.seq), Ack: craft.Seq(s.ack), Flags: f, Window: win}
		if !s.up {
			c.Src, c.Dst = srv, cli
		}
		if s.data != "" {
			c.Payload = []byte(s.data)
		}
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		ci := gopacket.CaptureInfo{Timestamp: base.Add(s.at), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func runBytes(t testing.TB, data []byte, cfg Config) ([]event.Event, event.CaptureSummary, error) {
	t.Helper()
	var evs []event.Event
	sum, err := Run(context.Background(), bytes.NewReader(data), cfg, event.SinkFunc(func(e event.Event) { evs = append(evs, e) }))
	return evs, sum, err
}

// Handshake and close building blocks: client ISN 100, server ISN 5000.
var (
	handshake = []seg{
		{up: true, flags: "S", seq: 100},
		{flags: "S.", seq: 5000, ack: 101, at: time.Millisecond},
		{up: true, flags: ".", seq: 101, ack: 5001, at: 2 * time.Millisecond},
	}
	request = []seg{
		{up: true, flags: "P.", seq: 101, ack: 5001, data: "hello\n", at: 3 * time.Millisecond},
		{flags: ".", seq: 5001, ack: 107, at: 4 * time.Millisecond},
	}
)

func join(parts ...[]seg) []seg {
	var out []seg
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestClassification(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name           string
		segs           []seg
		opened, closed string
		retrans, ooo   uint64
	}{
		{"4-way", join(handshake, request, []seg{
			{up: true, flags: "F.", seq: 107, ack: 5001, at: 10 * ms},
			{flags: ".", seq: 5001, ack: 108, at: 11 * ms},
			{flags: "F.", seq: 5001, ack: 108, at: 12 * ms},
			{up: true, flags: ".", seq: 108, ack: 5002, at: 13 * ms},
		}), OpenedThreeWay, ClosedFourWay, 0, 0},
		{"fin-ack combined", join(handshake, request, []seg{
			{up: true, flags: "F.", seq: 107, ack: 5001, at: 10 * ms},
			{flags: "F.", seq: 5001, ack: 108, at: 11 * ms},
			{up: true, flags: ".", seq: 108, ack: 5002, at: 12 * ms},
		}), OpenedThreeWay, ClosedFinAck, 0, 0},
		{"half-close", join(handshake, []seg{
			{up: true, flags: "F.", seq: 101, ack: 5001, at: 10 * ms},
			{flags: "P.", seq: 5001, ack: 102, data: "still talking", at: 11 * ms},
			{up: true, flags: ".", seq: 102, ack: 5014, at: 12 * ms},
			{flags: "F.", seq: 5014, ack: 102, at: 13 * ms},
			{up: true, flags: ".", seq: 102, ack: 5015, at: 14 * ms},
		}), OpenedThreeWay, ClosedHalfClose, 0, 0},
		{"simultaneous close", join(handshake, []seg{
			{up: true, flags: "F.", seq: 101, ack: 5001, at: 10 * ms},
			{flags: "F.", seq: 5001, ack: 101, at: 10 * ms},
			{up: true, flags: ".", seq: 102, ack: 5002, at: 11 * ms},
			{flags: ".", seq: 5002, ack: 102, at: 11 * ms},
		}), OpenedThreeWay, ClosedSimultaneous, 0, 0},
		{"simultaneous open", []seg{
			{up: true, flags: "S", seq: 100},
			{flags: "S", seq: 5000, at: ms},
			{up: true, flags: "S.", seq: 100, ack: 5001, at: 2 * ms},
			{flags: "S.", seq: 5000, ack: 101, at: 2 * ms},
		}, OpenedSimultaneous, ClosedOpenAtEnd, 2, 0}, // each SYN-ACK repeats its SYN's seq: tshark says retransmission too
		{"refused", []seg{
			{up: true, flags: "S", seq: 100},
			{flags: "R.", seq: 0, ack: 101, at: ms},
		}, OpenedRefused, ClosedRSTServer, 0, 0},
		{"unanswered with retransmission", []seg{
			{up: true, flags: "S", seq: 100},
			{up: true, flags: "S", seq: 100, at: time.Second},
		}, OpenedUnanswered, ClosedNever, 1, 0},
		{"incomplete", []seg{
			{up: true, flags: "S", seq: 100},
			{flags: "S.", seq: 5000, ack: 101, at: ms},
			{up: true, flags: "R", seq: 101, at: 2 * ms},
		}, OpenedIncomplete, ClosedRSTClient, 0, 0},
		{"no handshake, open at end", []seg{
			{up: true, flags: "P.", seq: 1000, ack: 9000, data: "abc"},
			{flags: ".", seq: 9000, ack: 1003, at: ms},
		}, OpenedNoHandshake, ClosedOpenAtEnd, 0, 0},
		{"half-closed at end", join(handshake, []seg{
			{up: true, flags: "F.", seq: 101, ack: 5001, at: 10 * ms},
			{flags: ".", seq: 5001, ack: 102, at: 11 * ms},
		}), OpenedThreeWay, ClosedHalfAtEnd, 0, 0},
		{"rst by server after data", join(handshake, request, []seg{
			{flags: "R.", seq: 5001, ack: 107, at: 10 * ms},
		}), OpenedThreeWay, ClosedRSTServer, 0, 0},
		{"rst after a complete close does not count", join(handshake, []seg{
			{up: true, flags: "F.", seq: 101, ack: 5001, at: 10 * ms},
			{flags: "F.", seq: 5001, ack: 102, at: 11 * ms},
			{up: true, flags: ".", seq: 102, ack: 5002, at: 12 * ms},
			{up: true, flags: "R", seq: 102, at: 13 * ms},
		}), OpenedThreeWay, ClosedFinAck, 0, 0},
		{"retransmission and keep-alive", join(handshake, request, []seg{
			{up: true, flags: "P.", seq: 101, ack: 5001, data: "hello\n", at: 300 * ms},
			{up: true, flags: ".", seq: 106, ack: 5001, data: "x", at: 400 * ms},
		}), OpenedThreeWay, ClosedOpenAtEnd, 1, 0},
		{"out of order", join(handshake, []seg{
			{up: true, flags: "P.", seq: 104, ack: 5001, data: "def", at: 3 * ms},
			{up: true, flags: "P.", seq: 101, ack: 5001, data: "abc", at: 3*ms + 100},
		}), OpenedThreeWay, ClosedOpenAtEnd, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, err := runBytes(t, synth(t, tc.segs), Config{File: "synth"})
			if err != nil {
				t.Fatal(err)
			}
			cs := connections(evs)
			if len(cs) != 1 {
				t.Fatalf("%d conversations, want 1", len(cs))
			}
			type verdict struct {
				Opened, Closed string
				Retrans, OOO   uint64
			}
			want := verdict{tc.opened, tc.closed, tc.retrans, tc.ooo}
			got := verdict{cs[0].Opened, cs[0].Closed, cs[0].Retransmissions, cs[0].OutOfOrder}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if cs[0].Client != cli.String() {
				t.Errorf("client = %s, want %s", cs[0].Client, cli)
			}
		})
	}
}

func TestPortReuseStartsNewConversation(t *testing.T) {
	ms := time.Millisecond
	segs := join(handshake, []seg{
		{up: true, flags: "R", seq: 101, at: 5 * ms},
		{up: true, flags: "S", seq: 90000, at: 6 * ms},
		{flags: "S.", seq: 7000, ack: 90001, at: 7 * ms},
		{up: true, flags: ".", seq: 90001, ack: 7001, at: 8 * ms},
	})
	evs, sum, err := runBytes(t, synth(t, segs), Config{})
	if err != nil {
		t.Fatal(err)
	}
	cs := connections(evs)
	if len(cs) != 2 || sum.Conversations != 2 {
		t.Fatalf("got %d conversations (summary %d), want 2", len(cs), sum.Conversations)
	}
	if cs[0].Closed != ClosedRSTClient || cs[1].Opened != OpenedThreeWay || cs[1].PacketsToServer != 2 {
		t.Errorf("conversations: %+v", cs)
	}
}

// TestStory checks the step-by-step view of a whole conversation: relative numbers, both ends' states and the
// arithmetic in words.
func TestStory(t *testing.T) {
	ms := time.Millisecond
	segs := join(handshake, request, []seg{
		{up: true, flags: "F.", seq: 107, ack: 5001, at: 10 * ms},
		{flags: "F.", seq: 5001, ack: 108, at: 11 * ms},
		{up: true, flags: ".", seq: 108, ack: 5002, at: 12 * ms},
	})
	evs, _, err := runBytes(t, synth(t, segs), Config{Conn: ConnSelector{Index: 1}})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Dir            string
		RelSeq, RelAck uint32
		Local, Remote  string
	}
	var got []row
	var explain []string
	for _, e := range evs {
		if s, ok := e.(event.Step); ok {
			got = append(got, row{s.Direction, s.RelSeq, s.RelAck, s.Local, s.Remote})
			explain = append(explain, s.Explain...)
		}
	}
	want := []row{
		{"sent", 0, 0, "SYN-SENT", "SYN-RECEIVED"},
		{"received", 0, 1, "ESTABLISHED", "SYN-RECEIVED"},
		{"sent", 1, 1, "ESTABLISHED", "ESTABLISHED"},
		{"sent", 1, 1, "ESTABLISHED", "ESTABLISHED"},
		{"received", 1, 7, "ESTABLISHED", "ESTABLISHED"},
		{"sent", 7, 1, "FIN-WAIT-1", "CLOSE-WAIT"},
		{"received", 1, 8, "TIME-WAIT", "LAST-ACK"},
		{"sent", 8, 2, "TIME-WAIT", "CLOSED"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	all := strings.Join(explain, "\n")
	for _, w := range []string{
		"ack 1 = peer seq 0 + 1: a SYN takes one sequence number",
		"ack 7 = 1 + 6 bytes",
		"ack 8 = peer FIN at seq 7 + 1: a FIN takes one sequence number",
		"client: ESTABLISHED → FIN-WAIT-1 (sent FIN: active close)",
		"server: LAST-ACK → CLOSED",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("explanations lack %q:\n%s", w, all)
		}
	}
	cs := connections(evs)
	if len(cs) != 1 || cs[0].Closed != ClosedFinAck {
		t.Errorf("connection: %+v", cs)
	}
}

func TestStoryRefusedAndSimultaneous(t *testing.T) {
	tests := []struct {
		name   string
		segs   []seg
		remote []string
	}{
		{"refused", []seg{{up: true, flags: "S", seq: 100}, {flags: "R.", ack: 101, at: time.Millisecond}},
			[]string{"CLOSED", "CLOSED"}},
		{"simultaneous", []seg{
			{up: true, flags: "S", seq: 100},
			{flags: "S", seq: 5000, at: time.Millisecond},
		}, []string{"CLOSED", "SYN-RECEIVED"}},
		{"unanswered", []seg{{up: true, flags: "S", seq: 100}}, []string{""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, err := runBytes(t, synth(t, tc.segs), Config{Conn: ConnSelector{Index: 1}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range evs {
				if s, ok := e.(event.Step); ok {
					got = append(got, s.Remote)
				}
			}
			if diff := cmp.Diff(tc.remote, got); diff != "" {
				t.Errorf("remote states (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilterAndSelection(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "tshark.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cfg      Config
		want     int // connections shown
		notFound bool
	}{
		{"all", Config{}, 2, false},
		{"port 80", Config{Port: 80}, 1, false},
		{"host v6", Config{Host: netip.MustParseAddr("2001:db8::2")}, 1, false},
		{"no match", Config{Port: 9999}, 0, true},
		{"conn 2", Config{Conn: ConnSelector{Index: 2}}, 1, false},
		{"conn 3 missing", Config{Conn: ConnSelector{Index: 3}}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, err := runBytes(t, data, tc.cfg)
			if got := errors.Is(err, ErrNotFound); got != tc.notFound {
				t.Fatalf("err = %v, want not-found %v", err, tc.notFound)
			}
			if got := len(connections(evs)); got != tc.want {
				t.Errorf("%d connections, want %d", got, tc.want)
			}
		})
	}
}

func TestParseConnSelector(t *testing.T) {
	tests := []struct {
		in      string
		want    ConnSelector
		wantErr bool
	}{
		{"3", ConnSelector{Index: 3}, false},
		{"198.51.100.1:40000,198.51.100.2:80", ConnSelector{A: cli, B: srv}, false},
		{"[2001:db8::1]:1 <-> [2001:db8::2]:2", ConnSelector{A: netip.MustParseAddrPort("[2001:db8::1]:1"), B: netip.MustParseAddrPort("[2001:db8::2]:2")}, false},
		{"0", ConnSelector{}, true},
		{"foo", ConnSelector{}, true},
		{"1.2.3.4:5", ConnSelector{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseConnSelector(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestGolden checks every recorded capture under testdata/ against its expected table and, when tshark is
// installed, against tshark.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.pcap*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures under testdata (%v)", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		t.Run(name, func(t *testing.T) {
			evs, sum, err := collect(t, f, Config{})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Undecodable != 0 {
				t.Errorf("%d undecodable packets", sum.Undecodable)
			}
			cs := connections(evs)
			if !*update {
				golden(t, name, cs)
			}
			t.Run("tshark", func(t *testing.T) { checkAgainstTshark(t, f, cs) })
		})
	}
}

// TestDamagedFiles cuts and corrupts a capture: the reading stops with one error and the conversations before
// the damage are still reported.
func TestDamagedFiles(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "http4.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	ng, err := os.ReadFile(filepath.Join("testdata", "tshark.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	first := 24 + 16 + int(binary.LittleEndian.Uint32(good[24+8:])) // end of the first record
	corrupt := bytes.Clone(good)
	corrupt[24+8] = 0xff // the first record's captured length: far beyond the snap length
	corrupt[24+9] = 0xff
	corrupt[24+10] = 0xff
	tests := []struct {
		name      string
		data      []byte
		wantErr   string
		wantConns bool
	}{
		{"empty", nil, "empty or too short", false},
		{"not a capture", []byte("hello, this is not a pcap file at all"), "not a pcap or pcapng", false},
		{"cut in the file header", good[:10], "pcap header", false},
		{"cut in a record", good[:len(good)-7], "truncated", true},
		{"cut in the second record", good[:first+16+54+5], "truncated", true},
		{"corrupt length", corrupt, "capture length", false},
		{"pcapng cut", ng[:len(ng)-30], "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, sum, err := runBytes(t, tc.data, Config{File: "f"})
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q lacks %q", err, tc.wantErr)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("error spans lines: %q", err)
			}
			if tc.wantConns {
				if len(connections(evs)) == 0 {
					t.Error("no conversation reported before the damage")
				}
				if sum.Error == "" {
					t.Error("summary does not carry the error")
				}
			}
		})
	}
}

// TestStripLink covers each link type with its header in front of the same IP packet.
func TestStripLink(t *testing.T) {
	s := craft.Segment{Src: cli, Dst: srv, Seq: 1, Flags: craft.SYN}
	ip, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	eth := func(vlans ...uint16) []byte {
		b := make([]byte, 12)
		for _, v := range vlans {
			b = append(b, byte(v>>8), byte(v), 0, 1)
		}
		return append(append(b, 0x08, 0x00), ip...)
	}
	sll := append(append(make([]byte, 14), 0x08, 0x00), ip...)
	sll2 := append(append([]byte{0x08, 0x00}, make([]byte, 18)...), ip...)
	null := append([]byte{2, 0, 0, 0}, ip...)
	tests := []struct {
		name string
		lt   layers.LinkType
		in   []byte
		ok   bool
	}{
		{"ethernet", layers.LinkTypeEthernet, eth(), true},
		{"vlan", layers.LinkTypeEthernet, eth(0x8100), true},
		{"qinq", layers.LinkTypeEthernet, eth(0x88a8, 0x8100), true},
		{"arp", layers.LinkTypeEthernet, append(make([]byte, 12), 0x08, 0x06, 0, 1), false},
		{"short ethernet", layers.LinkTypeEthernet, make([]byte, 10), false},
		{"sll", layers.LinkTypeLinuxSLL, sll, true},
		{"sll2", layers.LinkTypeLinuxSLL2, sll2, true},
		{"raw", layers.LinkTypeRaw, ip, true},
		{"raw bsd", 12, ip, true},
		{"raw openbsd", 14, ip, true},
		{"ipv4", layers.LinkTypeIPv4, ip, true},
		{"null", layers.LinkTypeNull, null, true},
		{"loop", layers.LinkTypeLoop, null, true},
		{"unknown link type", layers.LinkTypePPP, ip, false},
		{"raw garbage", layers.LinkTypeRaw, []byte{0x12, 0x34}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := StripLink(tc.lt, tc.in)
			if tc.ok && !bytes.Equal(got, ip) {
				t.Errorf("got % x, want the IP packet", got)
			}
			if !tc.ok && got != nil {
				t.Errorf("got % x, want nil", got)
			}
		})
	}
}

// FuzzRun feeds arbitrary files to the reader and the decoder: they must never panic.
func FuzzRun(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.pcap*"))
	synths, _ := filepath.Glob(filepath.Join(corpusDir, "synth-*")) // every link type, tunnel and compression
	for _, p := range append(files, synths...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(synth(f, join(handshake, request)))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = runBytes(t, data, Config{Conn: ConnSelector{Index: 1}, maxUncompressed: 1 << 20})
		_, _, _ = runBytes(t, data, Config{maxUncompressed: 1 << 20})
	})
}

// FuzzStripLink checks the link decoder on arbitrary frames.
func FuzzStripLink(f *testing.F) {
	f.Add(uint16(1), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0, 0, 1, 0x08, 0x00, 0x45})
	f.Add(uint16(276), make([]byte, 21))
	f.Fuzz(func(t *testing.T, lt uint16, b []byte) {
		ip := StripLink(layers.LinkType(lt), b)
		if len(ip) > 0 && ip[0]>>4 != 4 && ip[0]>>4 != 6 {
			t.Fatalf("returned a non-IP packet % x", ip)
		}
	})
}

func TestTableText(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "halfclose.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Run(context.Background(), bytes.NewReader(data), Config{File: "halfclose.pcap"}, NewTable(&out, false)); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"    #  CLIENT                 SERVER                 C>S PKT/BYTES  S>C PKT/BYTES      START   DURATION  OPENED             CLOSED              RETRANS    OOO",
		"    1  198.51.100.1:32960     198.51.100.2:13                5/357          5/369  0.000000s  0.000520s  3-way              half-close                0      0",
		"",
		"--- halfclose.pcap: pcap, Ethernet ---",
		"10 packets in 0.000520s: 10 TCP, 0 ICMP errors about TCP, 0 other, 0 undecodable",
		"1 TCP conversations, 1 shown",
		"",
	}, "\n")
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

// TestMemoryBoundedByOpenConversations feeds many short conversations, one per second of capture time, and
// checks that finished ones leave memory after the linger time while every row is still emitted.
func TestMemoryBoundedByOpenConversations(t *testing.T) {
	const n = 3000
	var segs []seg
	for i := range n {
		at := time.Duration(i) * time.Second
		port := uint32(i)
		segs = append(segs,
			seg{up: true, flags: "S", seq: port * 10, at: at},
			seg{flags: "R.", ack: port*10 + 1, at: at + time.Millisecond})
	}
	// Each conversation needs its own client port: rewrite them after building.
	fs := frames(t, synth(t, segs))
	var rows int
	a := newAnalyzer(Config{Linger: 10 * time.Second}, event.SinkFunc(func(e event.Event) {
		if _, ok := e.(event.Connection); ok {
			rows++
		}
	}))
	most := 0
	for i, f := range fs {
		ip := bytes.Clone(f.ip)
		sport := 1024 + uint16(i/2)
		off := 20 // IPv4 header: client port is the source of the SYN, the destination of the RST
		if i%2 == 1 {
			off += 2
		}
		binary.BigEndian.PutUint16(ip[off:], sport)
		a.packet(ip, layers.LinkTypeRaw, time.Unix(0, f.t), f.len, false)
		if i%64 == 0 {
			a.evict()
		}
		most = max(most, len(a.convs))
	}
	if _, err := a.finish(nil); err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Errorf("%d rows, want %d", rows, n)
	}
	if most > 60 {
		t.Errorf("%d conversations in memory at most, want about linger/spacing (10) plus the eviction period", most)
	}
}
