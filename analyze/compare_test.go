package analyze

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tcpshake/event"
)

var update = flag.Bool("update", false, "rewrite the expected tables under testdata/ (and, in lab tests, the captures)")

// collect runs the analyzer on a file and returns its events.
func collect(t *testing.T, path string, cfg Config) ([]event.Event, event.CaptureSummary, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []event.Event
	if cfg.File == "" {
		cfg.File = filepath.Base(path)
	}
	sum, err := Run(context.Background(), f, cfg, event.SinkFunc(func(e event.Event) { evs = append(evs, e) }))
	return evs, sum, err
}

func connections(evs []event.Event) []event.Connection {
	var cs []event.Connection
	for _, e := range evs {
		if c, ok := e.(event.Connection); ok {
			cs = append(cs, c)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Index < cs[j].Index })
	return cs
}

// tsharkRow is one conversation as tshark counts it.
type tsharkRow struct {
	Ends              string // "A <-> B", A < B
	FramesAB, BytesAB uint64
	FramesBA, BytesBA uint64
	Retransmissions   uint64
}

// needTshark returns tshark's path, skipping (or failing under CI=true) when it is missing.
func needTshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tshark is not installed (CI installs it)")
		}
		t.Skip("tshark is not installed: apt-get install tshark")
	}
	return p
}

// tsharkTable counts packets, bytes and tcp.analysis.retransmission per tcp.stream, and the rows of tshark's
// own `-z conv,tcp` table.
func tsharkTable(t *testing.T, path string) (rows []tsharkRow, convRows int) {
	t.Helper()
	tshark := needTshark(t)
	out := runTshark(t, tshark, "-n", "-r", path, "-Y", "tcp and not icmp and not icmpv6", "-T", "fields", "-E", "separator=|",
		"-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst",
		"-e", "tcp.dstport", "-e", "frame.len", "-e", "tcp.analysis.retransmission")
	byStream := map[string]*tsharkRow{}
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 9 {
			t.Fatalf("tshark line %q: want 9 fields", line)
		}
		src := ep(f[1]+f[2], f[3])
		dst := ep(f[4]+f[5], f[6])
		a, b := src, dst
		if b < a {
			a, b = b, a
		}
		r := byStream[f[0]]
		if r == nil {
			r = &tsharkRow{Ends: a + " <-> " + b}
			byStream[f[0]] = r
			order = append(order, f[0])
		}
		n, _ := strconv.ParseUint(f[7], 10, 64)
		if src == a {
			r.FramesAB++
			r.BytesAB += n
		} else {
			r.FramesBA++
			r.BytesBA += n
		}
		if f[8] != "" {
			r.Retransmissions++
		}
	}
	for _, s := range order {
		rows = append(rows, *byStream[s])
	}
	conv := runTshark(t, tshark, "-n", "-q", "-r", path, "-z", "conv,tcp")
	for _, line := range strings.Split(conv, "\n") {
		if strings.Contains(line, "<->") {
			convRows++
		}
	}
	return rows, convRows
}

func runTshark(t *testing.T, tshark string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tshark, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// ep formats an endpoint the way netip.AddrPort does.
func ep(addr, port string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + port
	}
	return addr + ":" + port
}

// ourRows turns our conversations into tshark's shape.
func ourRows(cs []event.Connection) []tsharkRow {
	rows := make([]tsharkRow, len(cs))
	for i, c := range cs {
		r := tsharkRow{Retransmissions: c.Retransmissions}
		if c.Client < c.Server {
			r.Ends = c.Client + " <-> " + c.Server
			r.FramesAB, r.BytesAB, r.FramesBA, r.BytesBA = c.PacketsToServer, c.BytesToServer, c.PacketsToClient, c.BytesToClient
		} else {
			r.Ends = c.Server + " <-> " + c.Client
			r.FramesAB, r.BytesAB, r.FramesBA, r.BytesBA = c.PacketsToClient, c.BytesToClient, c.PacketsToServer, c.BytesToServer
		}
		rows[i] = r
	}
	return rows
}

// checkAgainstTshark compares our table with tshark's on path.
func checkAgainstTshark(t *testing.T, path string, cs []event.Connection) {
	t.Helper()
	want, convRows := tsharkTable(t, path)
	if convRows != len(cs) {
		t.Errorf("%s: tshark -z conv,tcp has %d conversations, we have %d", filepath.Base(path), convRows, len(cs))
	}
	if diff := cmp.Diff(want, ourRows(cs)); diff != "" {
		t.Errorf("%s: conversations against tshark (-want +got):\n%s", filepath.Base(path), diff)
	}
}

// golden compares the connections with testdata/NAME.want.json, rewriting it under -update.
func golden(t *testing.T, name string, cs []event.Connection) {
	t.Helper()
	path := filepath.Join("testdata", name+".want.json")
	if *update {
		b, err := json.MarshalIndent(cs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update as root to record the captures)", err)
	}
	var want []event.Connection
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, cs); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}
