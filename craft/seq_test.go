package craft

import "testing"

func TestSeqCompare(t *testing.T) {
	tests := []struct {
		name         string
		v, w         Seq
		less, lessEq bool
	}{
		{"equal", 5, 5, false, true},
		{"plain less", 1, 2, true, true},
		{"plain greater", 2, 1, false, false},
		{"max before zero", 0xffffffff, 0, true, true},
		{"zero after max", 0, 0xffffffff, false, false},
		{"wrap by ten", 0xfffffffa, 4, true, true},
		{"half space ahead", 0, 0x7fffffff, true, true},
		{"half space plus one is behind", 0, 0x80000001, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.LessThan(tt.w); got != tt.less {
				t.Errorf("Seq(%#x).LessThan(%#x) = %v, want %v", uint32(tt.v), uint32(tt.w), got, tt.less)
			}
			if got := tt.v.LessThanEq(tt.w); got != tt.lessEq {
				t.Errorf("Seq(%#x).LessThanEq(%#x) = %v, want %v", uint32(tt.v), uint32(tt.w), got, tt.lessEq)
			}
		})
	}
}

func TestSeqRanges(t *testing.T) {
	tests := []struct {
		name    string
		v, a, b Seq
		want    bool
	}{
		{"inside", 5, 1, 10, true},
		{"at start", 1, 1, 10, true},
		{"at end is outside", 10, 1, 10, false},
		{"before", 0, 1, 10, false},
		{"wrapping range, before wrap", 0xfffffffe, 0xfffffff0, 0x10, true},
		{"wrapping range, after wrap", 0x5, 0xfffffff0, 0x10, true},
		{"wrapping range, past end", 0x10, 0xfffffff0, 0x10, false},
		{"wrapping range, before start", 0xffffffef, 0xfffffff0, 0x10, false},
		{"empty range", 7, 7, 7, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.InRange(tt.a, tt.b); got != tt.want {
				t.Errorf("Seq(%#x).InRange(%#x, %#x) = %v, want %v", uint32(tt.v), uint32(tt.a), uint32(tt.b), got, tt.want)
			}
			if got := tt.v.InWindow(tt.a, uint32(tt.b-tt.a)); got != tt.want {
				t.Errorf("Seq(%#x).InWindow(%#x, %d) = %v, want %v", uint32(tt.v), uint32(tt.a), uint32(tt.b-tt.a), got, tt.want)
			}
		})
	}
}

func TestSeqArithmetic(t *testing.T) {
	tests := []struct {
		name string
		v    Seq
		n    uint32
		want Seq
	}{
		{"plain", 100, 1, 101},
		{"wraps", 0xffffffff, 1, 0},
		{"wraps further", 0xfffffff0, 0x20, 0x10},
		{"zero", 42, 0, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.v.Add(tt.n)
			if got != tt.want {
				t.Errorf("Seq(%#x).Add(%d) = %#x, want %#x", uint32(tt.v), tt.n, uint32(got), uint32(tt.want))
			}
			if rel := got.Rel(tt.v); rel != tt.n {
				t.Errorf("Seq(%#x).Rel(%#x) = %d, want %d", uint32(got), uint32(tt.v), rel, tt.n)
			}
		})
	}
}

func TestAcceptable(t *testing.T) {
	tests := []struct {
		name   string
		segSeq Seq
		segLen uint32
		rcvNxt Seq
		rcvWnd uint32
		want   bool
	}{
		// SEG.LEN = 0, RCV.WND = 0: SEG.SEQ = RCV.NXT.
		{"len0 wnd0 at nxt", 100, 0, 100, 0, true},
		{"len0 wnd0 after nxt", 101, 0, 100, 0, false},
		{"len0 wnd0 before nxt", 99, 0, 100, 0, false},
		// SEG.LEN = 0, RCV.WND > 0: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND.
		{"len0 wnd>0 at nxt", 100, 0, 100, 10, true},
		{"len0 wnd>0 last in window", 109, 0, 100, 10, true},
		{"len0 wnd>0 just past window", 110, 0, 100, 10, false},
		{"len0 wnd>0 old", 99, 0, 100, 10, false},
		{"len0 wnd>0 across wrap", 2, 0, 0xfffffffe, 10, true},
		// SEG.LEN > 0, RCV.WND = 0: never acceptable.
		{"len>0 wnd0 at nxt", 100, 5, 100, 0, false},
		// SEG.LEN > 0, RCV.WND > 0: the first or the last octet in the window.
		{"len>0 wnd>0 first octet in", 105, 20, 100, 10, true},
		{"len>0 wnd>0 only last octet in", 90, 11, 100, 10, true},
		{"len>0 wnd>0 entirely old", 90, 10, 100, 10, false},
		{"len>0 wnd>0 entirely beyond", 110, 5, 100, 10, false},
		{"len>0 wnd>0 last octet across wrap", 0xfffffffa, 8, 0, 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Acceptable(tt.segSeq, tt.segLen, tt.rcvNxt, tt.rcvWnd); got != tt.want {
				t.Errorf("Acceptable(%d, %d, %d, %d) = %v, want %v", tt.segSeq, tt.segLen, tt.rcvNxt, tt.rcvWnd, got, tt.want)
			}
		})
	}
}
