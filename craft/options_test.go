package craft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOptionString(t *testing.T) {
	tests := []struct {
		opt  Option
		want string
	}{
		{MSS(1460), "mss 1460"},
		{WindowScale(7), "wscale 7"},
		{SACKPermitted(), "sackOK"},
		{SACK(SACKBlock{101, 201}), "sack 1 {101:201}"},
		{SACK(SACKBlock{1, 2}, SACKBlock{4294967295, 10}), "sack 2 {1:2}{4294967295:10}"},
		{Timestamps(5, 0), "TS val 5 ecr 0"},
		{NOP(), "nop"},
		{EOL(), "eol"},
		{RawOption(30, []byte{0x0a, 0x0b}), "opt-30:0a0b"},
		{RawOption(34, nil), "opt-34"},
		{RawOption(2, []byte{5}), "opt-2:05"}, // an MSS of the wrong length
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.opt.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOptionsString(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"empty", nil, ""},
		{"linux syn", Options{MSS(1460), SACKPermitted(), Timestamps(1, 0), NOP(), WindowScale(7)},
			"[mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7]"},
		{"one", Options{MSS(536)}, "[mss 536]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.opts.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOptionsAccessors(t *testing.T) {
	type result struct {
		MSS        uint16
		HasMSS     bool
		WScale     uint8
		HasWScale  bool
		SACKOK     bool
		TSVal      uint32
		TSEcr      uint32
		HasTS      bool
		SACKBlocks []SACKBlock
	}
	get := func(o Options) result {
		var r result
		r.MSS, r.HasMSS = o.MSS()
		r.WScale, r.HasWScale = o.WindowScale()
		r.SACKOK = o.SACKPermitted()
		r.TSVal, r.TSEcr, r.HasTS = o.Timestamps()
		r.SACKBlocks = o.SACKBlocks()
		return r
	}
	tests := []struct {
		name string
		opts Options
		want result
	}{
		{"none", nil, result{}},
		{"linux syn", Options{MSS(1460), SACKPermitted(), Timestamps(7, 9), NOP(), WindowScale(7)},
			result{MSS: 1460, HasMSS: true, WScale: 7, HasWScale: true, SACKOK: true, TSVal: 7, TSEcr: 9, HasTS: true}},
		{"sack blocks", Options{NOP(), NOP(), SACK(SACKBlock{100, 200}, SACKBlock{300, 400})},
			result{SACKBlocks: []SACKBlock{{100, 200}, {300, 400}}}},
		{"malformed ones are ignored", Options{RawOption(2, []byte{1}), RawOption(3, nil), RawOption(8, []byte{1, 2}), RawOption(4, []byte{1})},
			result{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, get(tt.opts)); diff != "" {
				t.Errorf("accessors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSYNOptions(t *testing.T) {
	tests := []struct {
		name string
		set  SYNOptionSet
		want string
	}{
		{"linux default", SYNOptionSet{MSS: 1460, WScale: 7, SACKOK: true, Timestamp: true, TSVal: 1000},
			"[mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 7]"},
		{"timestamps only", SYNOptionSet{MSS: 1460, WScale: -1, Timestamp: true, TSVal: 5, TSEcr: 6},
			"[mss 1460,nop,nop,TS val 5 ecr 6]"},
		{"sack only", SYNOptionSet{MSS: 1400, WScale: 2, SACKOK: true},
			"[mss 1400,nop,nop,sackOK,nop,wscale 2]"},
		{"mss only", SYNOptionSet{MSS: 536, WScale: -1}, "[mss 536]"},
		{"wscale zero", SYNOptionSet{WScale: 0}, "[nop,wscale 0]"},
		{"nothing", SYNOptionSet{WScale: -1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := SYNOptions(tt.set)
			if got := opts.String(); got != tt.want {
				t.Errorf("SYNOptions(%+v) = %q, want %q", tt.set, got, tt.want)
			}
			if n := opts.wireLen(); n%4 != 0 {
				t.Errorf("SYNOptions(%+v) takes %d bytes, want a multiple of 4", tt.set, n)
			}
		})
	}
}

func TestParseOption(t *testing.T) {
	tests := []struct {
		in   string
		want Option
	}{
		{"30:0a0b", Option{Kind: 30, Data: []byte{0x0a, 0x0b}}},
		{"1", Option{Kind: OptNOP}},
		{"0", Option{Kind: OptEOL}},
		{"255", Option{Kind: 255}},
		{"2:05b4", MSS(1460)},
		{"34:AABB", Option{Kind: 34, Data: []byte{0xaa, 0xbb}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOption(tt.in)
			if err != nil {
				t.Fatalf("ParseOption(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseOption(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	errs := []struct{ in, want string }{
		{"", "kind must be a number"},
		{"256", "kind must be a number"},
		{"-1", "kind must be a number"},
		{"x:00", "kind must be a number"},
		{"30:", "empty data"},
		{"30:abc", "not hex"},
		{"30:zz", "not hex"},
		{"1:00", "takes no data"},
		{"30:" + strings.Repeat("00", 39), "at most 38 fit"},
	}
	for _, tt := range errs {
		t.Run("error "+tt.in, func(t *testing.T) {
			_, err := ParseOption(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseOption(%q) error = %v, want one containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestOptionsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want Options // what Parse gives back: padding shows up as EOL options
	}{
		{"linux syn", SYNOptions(SYNOptionSet{MSS: 1460, WScale: 7, SACKOK: true, Timestamp: true, TSVal: 42}), nil},
		{"mss alone", Options{MSS(1460)}, nil},
		{"wscale alone is padded with eol", Options{WindowScale(7)}, Options{WindowScale(7), EOL()}},
		{"sack blocks", Options{NOP(), NOP(), Timestamps(1, 2), NOP(), NOP(), SACK(SACKBlock{10, 20}, SACKBlock{30, 40})}, nil},
		{"raw option", Options{RawOption(34, []byte{0x0a, 0x0b}), MSS(1000)}, nil},
		{"padding after the first eol is not an option", Options{NOP(), RawOption(34, []byte{1, 2})}, Options{NOP(), RawOption(34, []byte{1, 2}), EOL()}},
		{"forty bytes", Options{RawOption(253, make([]byte, 38))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seg := Segment{
				Src: netip.MustParseAddrPort("127.0.0.1:40000"), Dst: netip.MustParseAddrPort("127.0.0.1:80"),
				Seq: 1, Flags: SYN, Window: 1024, Options: tt.opts,
			}
			b, err := seg.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			pkt, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := tt.want
			if want == nil {
				want = tt.opts
			}
			if diff := cmp.Diff(want, pkt.Seg.Options); diff != "" {
				t.Errorf("options after Marshal and Parse (-want +got):\n%s", diff)
			}
		})
	}
}
