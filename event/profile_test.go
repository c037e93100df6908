package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestProfileText(t *testing.T) {
	var b bytes.Buffer
	tx := &Text{W: &b}
	tx.Emit(Profile{Name: "isn", Title: "initial sequence numbers", RFC: "RFC 6528 §3", Rule: "ISN = M + F(4-tuple, secret)", Strength: "MUST",
		Verdict: "deviates", Level: "SHOULD", Why: "+160 each time", Class: "constant-increment",
		Figures: []Figure{{Name: "difficulty", Value: 0, Unit: "bits", Text: "Trivial joke"}, {Name: "clock rate", Value: 15.625, Unit: "per µs"}, {Name: "listened", Value: 120.25, Unit: "s"}},
		Explain: []string{"TCP Sequence Prediction: Difficulty=0 bits (Trivial joke)"}, ElapsedMs: 161})
	tx.Emit(Profile{Name: "summary", Host: "h", Addr: "198.51.100.2", Port: 9, Why: "1 measurement: 1 deviates", ElapsedMs: 2000})
	for _, want := range []string{
		"== profile isn: initial sequence numbers ==",
		"  class                  constant-increment\n",
		"  difficulty             0 bits  — Trivial joke\n",
		"  clock rate             15.625 per µs\n",
		"  listened               120.2 s\n",
		"  TCP Sequence Prediction: Difficulty=0 bits (Trivial joke)\n",
		"  rule:      ISN = M + F(4-tuple, secret) (RFC 6528 §3, MUST)\n",
		"  verdict:   deviates (SHOULD) — +160 each time   [161 ms]\n",
		"--- profile of h (198.51.100.2 port 9) ---\n1 measurement: 1 deviates, time 2000 ms\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
}

func TestProfileJSON(t *testing.T) {
	var b bytes.Buffer
	NewJSON(&b).Emit(Profile{Name: "options", Verdict: "conforms", Figures: []Figure{{Name: "mss", Value: 1460, Unit: "bytes"}}})
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "profile" || m["name"] != "options" || m["verdict"] != "conforms" {
		t.Errorf("JSON %s", b.String())
	}
	if _, ok := m["class"]; ok {
		t.Errorf("empty class written: %s", b.String())
	}
}
