package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestJSONLargeBinaryData: a step with binary data from hexDirect bytes on
// (hex-encoded straight into the line) decodes as any other: the same data
// string, the other fields intact, one line.
func TestJSONLargeBinaryData(t *testing.T) {
	for _, n := range []int{10, 511, 512, 70000} {
		data := make([]byte, n)
		r := rand.New(rand.NewPCG(uint64(n), 1))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		data[0] = 0 // never printable
		st := Step{N: 3, Direction: "sent", Flags: "P.", Len: n, Data: data, Explain: []string{"x"}}
		var b bytes.Buffer
		NewJSON(&b).Emit(st)
		var got map[string]any
		if err := json.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("%d bytes: not JSON: %v\n%.200s", n, err, b.String())
		}
		want, _ := Payload(data).MarshalText()
		if got["data"] != string(want) || got["type"] != "step" || got["flags"] != "P." || got["n"] != 3.0 {
			t.Errorf("%d bytes: decoded %v, want data %.20s… type step", n, got["n"], want)
		}
		if bytes.Count(b.Bytes(), []byte("\n")) != 1 || b.Bytes()[b.Len()-1] != '\n' {
			t.Errorf("%d bytes: not one line", n)
		}
	}
}

// BenchmarkJSONLargeStep is one full-sized large segment's step (459 µs and
// 328 KB per step before its data was hex-encoded straight into the line).
func BenchmarkJSONLargeStep(b *testing.B) {
	data := make([]byte, 64240)
	data[0] = 0
	st := Step{N: 3, Direction: "sent", Flags: "P.", Len: len(data), Data: data}
	j := NewJSON(new(bytes.Buffer))
	for b.Loop() {
		j.w.(*bytes.Buffer).Reset()
		j.Emit(st)
	}
}
