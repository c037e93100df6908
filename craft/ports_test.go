package craft

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []uint16
	}{
		{"80", []uint16{80}},
		{"22,80,443", []uint16{22, 80, 443}},
		{"1000-1010", []uint16{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010}},
		{"22,80-82", []uint16{22, 80, 81, 82}},
		{"443,80,443,22,80", []uint16{443, 80, 22}},
		{"81-83,80-82", []uint16{81, 82, 83, 80}},
		{" 22 , 80 - 81 ", []uint16{22, 80, 81}},
		{"1", []uint16{1}},
		{"65535", []uint16{65535}},
		{"65534-65535", []uint16{65534, 65535}},
		{"7-7", []uint16{7}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if err != nil {
				t.Fatalf("ParsePorts(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParsePorts(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	t.Run("all ports", func(t *testing.T) {
		got, err := ParsePorts("1-65535")
		if err != nil || len(got) != 65535 || got[0] != 1 || got[65534] != 65535 {
			t.Errorf("ParsePorts(\"1-65535\") = %d ports, %v", len(got), err)
		}
	})
}

func TestParsePortsErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "empty port list"},
		{"  ", "empty port list"},
		{"0", "port 0 out of range 1-65535"},
		{"65536", "port 65536 out of range 1-65535"},
		{"99999999999999999999", "out of range"},
		{"1-", `range "1-" has no end`},
		{"-5", `range "-5" has no start`},
		{"80-20", `range "80-20" is reversed`},
		{"abc", `"abc" is not a port number`},
		{"+80", `"+80" is not a port number`},
		{"22,,80", "empty item"},
		{"22,", "empty item"},
		{"1-2-3", `"2-3" is not a port number`},
		{"0-10", "port 0 out of range"},
		{"1-65535,80", "more than 65535 ports"},
		{strings.Repeat("1-65535,", 1000) + "1", "more than 65535 ports"},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 20 {
			name = name[:20] + "..."
		}
		t.Run(name, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePorts(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.want)
			}
		})
	}
}
