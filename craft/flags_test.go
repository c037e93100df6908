package craft

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFlagsRender(t *testing.T) {
	tests := []struct {
		f                              Flags
		str, tcpdump, wireshark, words string
	}{
		{0, "none", "[none]", "<None>", ""},
		{FIN, "F", "[F]", "[FIN]", "fin"},
		{SYN, "S", "[S]", "[SYN]", "syn"},
		{RST, "R", "[R]", "[RST]", "rst"},
		{PSH, "P", "[P]", "[PSH]", "psh"},
		{ACK, ".", "[.]", "[ACK]", "ack"},
		{URG, "U", "[U]", "[URG]", "urg"},
		{ECE, "E", "[E]", "[ECE]", "ece"},
		{CWR, "W", "[W]", "[CWR]", "cwr"},
		{AE, "e", "[e]", "[AE]", "ae"},
		{SYN | ACK, "S.", "[S.]", "[SYN, ACK]", "syn,ack"},
		{FIN | PSH | ACK, "FP.", "[FP.]", "[FIN, PSH, ACK]", "fin,psh,ack"},
		{RST | ACK, "R.", "[R.]", "[RST, ACK]", "rst,ack"},
		{SYN | ECE | CWR, "SEW", "[SEW]", "[SYN, ECE, CWR]", "syn,ece,cwr"},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			got := []string{tt.f.String(), tt.f.Tcpdump(), tt.f.Wireshark(), tt.f.Words()}
			want := []string{tt.str, tt.tcpdump, tt.wireshark, tt.words}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("renderings of %#x (-want +got):\n%s", uint16(tt.f), diff)
			}
		})
	}
}

func TestFlagsHas(t *testing.T) {
	tests := []struct {
		f, g Flags
		want bool
	}{
		{SYN | ACK, SYN, true},
		{SYN | ACK, SYN | ACK, true},
		{SYN, SYN | ACK, false},
		{0, 0, true},
		{RST, ACK, false},
	}
	for _, tt := range tests {
		t.Run(tt.f.String()+"/"+tt.g.String(), func(t *testing.T) {
			if got := tt.f.Has(tt.g); got != tt.want {
				t.Errorf("%v.Has(%v) = %v, want %v", tt.f, tt.g, got, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		in   string
		want Flags
	}{
		// Every flag as a word.
		{"fin", FIN}, {"syn", SYN}, {"rst", RST}, {"reset", RST}, {"psh", PSH}, {"push", PSH}, {"ack", ACK},
		{"urg", URG}, {"ece", ECE}, {"cwr", CWR}, {"ae", AE}, {"ns", AE}, {"NS", AE}, {"Syn", SYN},
		// Every flag as a tcpdump letter.
		{"F", FIN}, {"S", SYN}, {"R", RST}, {"P", PSH}, {".", ACK}, {"U", URG}, {"E", ECE}, {"W", CWR}, {"e", AE},
		// Every flag as an hping3 letter.
		{"A", ACK}, {"X", ECE}, {"Y", CWR}, {"x", ECE}, {"y", CWR}, {"s", SYN}, {"a", ACK},
		// Combinations.
		{"S.", SYN | ACK}, {"SA", SYN | ACK}, {"sa", SYN | ACK}, {"FA", FIN | ACK}, {"FP.", FIN | PSH | ACK},
		{"R", RST}, {"R.", RST | ACK}, {"PA", PSH | ACK}, {"[S.]", SYN | ACK}, {"[R.]", RST | ACK},
		{"syn,ack", SYN | ACK}, {"SYN|ACK", SYN | ACK}, {"fin+psh+ack", FIN | PSH | ACK}, {"syn ack", SYN | ACK},
		{" syn, ack ", SYN | ACK}, {"SEW", SYN | ECE | CWR}, {"FSRP.UEWe", FIN | SYN | RST | PSH | ACK | URG | ECE | CWR | AE},
		// No flags.
		{"none", 0}, {"NONE", 0}, {"[none]", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFlags(tt.in)
			if err != nil {
				t.Fatalf("ParseFlags(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseFlags(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `empty flag list ""`},
		{"   ", `empty flag list`},
		{"[]", `empty flag list`},
		{",,", `empty flag list`},
		{"SQ", `unknown flag letter "Q" in "SQ"`},
		{"syn,foo", `unknown flag word "foo" in "syn,foo"`},
		{"syn|S", `unknown flag word "S" in "syn|S"`},
		{"hello", `unknown flag letter "h" in "hello"`},
		{"S.!", `unknown flag letter "!" in "S.!"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseFlags(tt.in)
			if err == nil {
				t.Fatalf("ParseFlags(%q) succeeded, want error containing %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseFlags(%q) error = %q, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestFlagsStringRoundTrip(t *testing.T) {
	for f := Flags(0); f <= FIN|SYN|RST|PSH|ACK|URG|ECE|CWR|AE; f++ {
		got, err := ParseFlags(f.String())
		if err != nil || got != f {
			t.Fatalf("ParseFlags(%q) = %v, %v; want %#x", f.String(), got, err, uint16(f))
		}
		got, err = ParseFlags(f.Tcpdump())
		if err != nil || got != f {
			t.Fatalf("ParseFlags(%q) = %v, %v; want %#x", f.Tcpdump(), got, err, uint16(f))
		}
		if f != 0 {
			got, err = ParseFlags(f.Words())
			if err != nil || got != f {
				t.Fatalf("ParseFlags(%q) = %v, %v; want %#x", f.Words(), got, err, uint16(f))
			}
		}
	}
}

func TestBitView(t *testing.T) {
	tests := []struct {
		name string
		f    Flags
		want []string
	}{
		{"syn-ack", SYN | ACK, []string{
			"Flags: 0x012 (SYN, ACK)",
			"000. .... .... = Reserved: Not set",
			"...0 .... .... = Accurate ECN: Not set",
			".... 0... .... = Congestion Window Reduced: Not set",
			".... .0.. .... = ECN-Echo: Not set",
			".... ..0. .... = Urgent: Not set",
			".... ...1 .... = Acknowledgment: Set",
			".... .... 0... = Push: Not set",
			".... .... .0.. = Reset: Not set",
			".... .... ..1. = Syn: Set",
			".... .... ...0 = Fin: Not set",
			"[TCP Flags: ·······A··S·]",
		}},
		{"none", 0, []string{
			"Flags: 0x000 (<None>)",
			"000. .... .... = Reserved: Not set",
			"...0 .... .... = Accurate ECN: Not set",
			".... 0... .... = Congestion Window Reduced: Not set",
			".... .0.. .... = ECN-Echo: Not set",
			".... ..0. .... = Urgent: Not set",
			".... ...0 .... = Acknowledgment: Not set",
			".... .... 0... = Push: Not set",
			".... .... .0.. = Reset: Not set",
			".... .... ..0. = Syn: Not set",
			".... .... ...0 = Fin: Not set",
			"[TCP Flags: ············]",
		}},
		{"ae cwr fin with a reserved bit", AE | CWR | FIN | 0x400, []string{
			"Flags: 0x581 (FIN, CWR, AE)",
			"010. .... .... = Reserved: Set",
			"...1 .... .... = Accurate ECN: Set",
			".... 1... .... = Congestion Window Reduced: Set",
			".... .0.. .... = ECN-Echo: Not set",
			".... ..0. .... = Urgent: Not set",
			".... ...0 .... = Acknowledgment: Not set",
			".... .... 0... = Push: Not set",
			".... .... .0.. = Reset: Not set",
			".... .... ..0. = Syn: Not set",
			".... .... ...1 = Fin: Set",
			"[TCP Flags: ·R·AC······F]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.f.BitView()); diff != "" {
				t.Errorf("BitView (-want +got):\n%s", diff)
			}
		})
	}
}
