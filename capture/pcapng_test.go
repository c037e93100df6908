package capture

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"tcpshake/craft"
)

// pcapngFrames returns a SYN, a SYN-ACK and an IPv6 RST with their comments.
func pcapngFrames(t *testing.T) ([]Frame, []string) {
	t.Helper()
	segs := []craft.Segment{
		{Src: netip.MustParseAddrPort("127.0.0.1:40000"), Dst: netip.MustParseAddrPort("127.0.0.1:80"), Seq: 1000, Flags: craft.SYN, Window: 64240},
		{Src: netip.MustParseAddrPort("127.0.0.1:80"), Dst: netip.MustParseAddrPort("127.0.0.1:40000"), Seq: 5000, Ack: 1001, Flags: craft.SYN | craft.ACK, Window: 65483},
		{Src: netip.MustParseAddrPort("[::1]:40001"), Dst: netip.MustParseAddrPort("[::1]:81"), Seq: 7, Flags: craft.RST},
	}
	comments := []string{"SYN: active open", "", "RST, ünïcode ok"}
	base := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC)
	frames := make([]Frame, len(segs))
	for i := range segs {
		b, err := segs[i].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		frames[i] = Frame{Data: b, Time: base.Add(time.Duration(i) * time.Millisecond), Outgoing: i != 1}
	}
	return frames, comments
}

func writePcapng(t *testing.T, frames []Frame, comments []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewPcapngWriter(&buf, "veth0")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if err := w.Write(f, comments[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPcapngWriterRoundTrip(t *testing.T) {
	frames, comments := pcapngFrames(t)
	data := writePcapng(t, frames, comments)
	r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.LinkType(); got != layers.LinkTypeRaw {
		t.Errorf("link type = %v, want RAW", got)
	}
	type rec struct {
		Data     []byte
		Time     time.Time
		Outgoing bool
		Comment  string
	}
	var want, got []rec
	for i, f := range frames {
		want = append(want, rec{f.Data, f.Time, f.Outgoing, comments[i]})
	}
	for {
		d, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			break
		}
		g := rec{Data: d, Time: ci.Timestamp, Comment: strings.Join(opts.Comments, "|")}
		if opts.Flags == nil {
			t.Fatalf("packet %d: no EPB flags", len(got)+1)
		}
		g.Outgoing = opts.Flags.Direction == pcapgo.NgEpbFlagDirectionOutbound
		got = append(got, g)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
}

// TestPcapngWriterTshark checks that tshark reads the file without a warning and shows the comments and
// directions.
func TestPcapngWriterTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tshark is not installed (CI installs it)")
		}
		t.Skip("tshark is not installed: apt-get install tshark")
	}
	frames, comments := pcapngFrames(t)
	path := filepath.Join(t.TempDir(), "out.pcapng")
	if err := os.WriteFile(path, writePcapng(t, frames, comments), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-n", "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "frame.comment", "-e", "frame.packet_flags_direction", "-e", "tcp.flags.str", "-e", "frame.time_epoch")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	if s := strings.TrimSpace(withoutRootNotice(stderr.String())); s != "" {
		t.Errorf("tshark warned:\n%s", s)
	}
	want := []string{
		"SYN: active open|0x00000002|··········S·|1795255200.123456789",
		"|0x00000001|·······A··S·|1795255200.124456789",
		"RST, ünïcode ok|0x00000002|·········R··|1795255200.125456789",
	}
	got := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tshark fields (-want +got):\n%s", diff)
	}
}

// withoutRootNotice drops the line tshark prints when it runs as root.
func withoutRootNotice(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "Running as user \"root\"") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
