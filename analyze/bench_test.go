package analyze

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"tcpshake/event"
)

// bulk is a synthetic conversation: handshake, n data segments each way with their ACKs, and a close.
func bulk(n int) []seg {
	segs := append([]seg(nil), handshake...)
	at := 3 * time.Millisecond
	cs, ss := uint32(101), uint32(5001)
	data := string(bytes.Repeat([]byte("x"), 1000))
	for range n {
		segs = append(segs,
			seg{up: true, flags: "P.", seq: cs, ack: ss, data: data, at: at},
			seg{flags: "P.", seq: ss, ack: cs + 1000, data: data[:500], at: at + 10*time.Microsecond},
			seg{up: true, flags: ".", seq: cs + 1000, ack: ss + 500, at: at + 20*time.Microsecond})
		cs, ss = cs+1000, ss+500
		at += 50 * time.Microsecond
	}
	return segs
}

// frames reads every packet of a capture into memory as (IP packet, time, length).
type frame struct {
	ip  []byte
	t   int64
	len int
}

func frames(t testing.TB, data []byte) []frame {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var fs []frame
	for {
		ip, ci, err := r.Next()
		if err == io.EOF {
			return fs
		}
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, frame{bytes.Clone(ip), ci.Timestamp.UnixNano(), ci.Length})
	}
}

// TestDecodeLoopAllocs checks that the per-packet work — link stripping, parsing, finding the conversation,
// counting and sequence analysis — does not allocate once the conversation exists.
func TestDecodeLoopAllocs(t *testing.T) {
	fs := frames(t, synth(t, bulk(50)))
	a := newAnalyzer(Config{}, event.SinkFunc(func(event.Event) {}))
	for _, f := range fs {
		a.packet(f.ip, layers.LinkTypeRaw, time.Unix(0, f.t), f.len, false)
	}
	i := 3
	allocs := testing.AllocsPerRun(1000, func() {
		f := fs[i]
		a.packet(f.ip, layers.LinkTypeRaw, time.Unix(0, f.t), f.len, false)
		i++
		if i == len(fs) {
			i = 3
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet, want 0", allocs)
	}
}

// TestReaderAllocs checks that reading records from a pcap file does not allocate per packet.
func TestReaderAllocs(t *testing.T) {
	data := synth(t, bulk(2000))
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per record, want 0", allocs)
	}
}

// BenchmarkDecodeLoop measures the per-packet work on packets already in memory.
func BenchmarkDecodeLoop(b *testing.B) {
	fs := frames(b, synth(b, bulk(500)))
	a := newAnalyzer(Config{}, event.SinkFunc(func(event.Event) {}))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := fs[i%len(fs)]
		a.packet(f.ip, layers.LinkTypeRaw, time.Unix(0, f.t), f.len, false)
	}
}

// BenchmarkRun measures the whole run, file reading included, on a capture in memory (ANALYZE_BENCH_FILE
// chooses another capture).
func BenchmarkRun(b *testing.B) {
	data := synth(b, bulk(5000))
	if p := os.Getenv("ANALYZE_BENCH_FILE"); p != "" {
		var err error
		if data, err = os.ReadFile(filepath.Clean(p)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var pkts uint64
	for i := 0; i < b.N; i++ {
		sum, err := Run(context.Background(), bytes.NewReader(data), Config{}, NewTable(io.Discard, false))
		if err != nil {
			b.Fatal(err)
		}
		pkts += sum.Packets
	}
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
}
