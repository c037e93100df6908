//go:build linux

package app_test

import (
	"slices"
	"strings"
	"testing"
)

// TestReadmeSamples checks the README runner's own parts without a lab:
// the extraction finds the "$ " commands with their samples, each sample
// agrees with itself, and output that lost a port row, changed a heading,
// a step's states or its width is caught.
func TestReadmeSamples(t *testing.T) {
	cmds := readmeCommands(t, "../README.md")
	var samples []readmeCmd
	for _, c := range cmds {
		if c.sample != nil {
			samples = append(samples, c)
		}
	}
	if len(samples) < 2 {
		t.Fatalf("%d commands with a sample in the README, want the probe and the handshake", len(samples))
	}
	for _, c := range samples {
		if d := sampleDiff(c.sample, c.sample); d != nil {
			t.Errorf("line %d: the sample differs from itself: %q", c.line, d)
		}
		if strings.Contains(c.text, "#") || strings.HasPrefix(c.text, "$") {
			t.Errorf("line %d: command %q kept its prompt or comment", c.line, c.text)
		}
	}
	for _, c := range cmds {
		if strings.Contains(c.text, "  # ") {
			t.Errorf("line %d: the comment is still on %q", c.line, c.text)
		}
	}
	probe, hs := samples[0], samples[1]
	// Answers in another order (the network's) are the same structure.
	var swapped []string
	for i := 0; i < len(probe.sample); i++ {
		if strings.HasPrefix(probe.sample[i], "[S.] ") && i+6 <= len(probe.sample) && strings.HasPrefix(probe.sample[i+3], "[R.] ") {
			swapped = append(swapped, probe.sample[i+3:i+6]...)
			swapped = append(swapped, probe.sample[i:i+3]...)
			i += 5
			continue
		}
		swapped = append(swapped, probe.sample[i])
	}
	if d := sampleDiff(probe.sample, swapped); d != nil || slices.Equal(swapped, probe.sample) {
		t.Errorf("answers in another order: %q (swapped: %v)", d, !slices.Equal(swapped, probe.sample))
	}
	edit := func(lines []string, from, to string) []string {
		out := append([]string(nil), lines...)
		for i, l := range out {
			out[i] = strings.Replace(l, from, to, 1)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		out  []string
	}{
		{"a port's state", edit(probe.sample, "81/tcp  closed ", "81/tcp  open   ")},
		{"a heading", edit(probe.sample, "REASON", "WHY")},
		{"the first line", edit(probe.sample, "4 ports, 1 probe each", "4 ports")},
		{"a statistics line", edit(probe.sample, " unanswered", " lost")},
		{"a step's state", edit(hs.sample, "SYN-SENT       ─", "ESTABLISHED    ─")},
		{"a step's flags", edit(hs.sample, "[S.] seq", "[R.] seq")},
		{"the ladder's width", edit(hs.sample, "RSTs for", strings.Repeat("x", 100)+"RSTs for")},
	} {
		sample := probe.sample
		if strings.HasPrefix(tt.name, "a step") || strings.HasPrefix(tt.name, "the ladder") {
			sample = hs.sample
		}
		if d := sampleDiff(sample, tt.out); d == nil {
			t.Errorf("changed %s: no difference found", tt.name)
		}
	}
}
