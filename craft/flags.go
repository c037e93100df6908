package craft

import (
	"fmt"
	"strings"
)

// Flags are the TCP control bits, numbered as in the header: FIN is bit 0 of byte 13, AE is bit 0 of byte 12.
type Flags uint16

// The TCP control bits.
const (
	FIN Flags = 1 << iota // no more data from sender
	SYN                   // synchronize sequence numbers
	RST                   // reset the connection
	PSH                   // push function
	ACK                   // acknowledgment field is significant
	URG                   // urgent pointer field is significant
	ECE                   // ECN-Echo (RFC 3168)
	CWR                   // congestion window reduced (RFC 3168)
	AE                    // accurate ECN (AccECN), formerly NS (RFC 3540)
)

// flagsMask holds the 12 bits of the header's flags field: the 9 named bits and 3 reserved ones.
const flagsMask Flags = 0x0fff

// flagInfo describes one control bit for every renderer and for the parser.
type flagInfo struct {
	flag      Flags
	tcpdump   byte   // tcpdump's letter
	word      string // lower-case word for JSON and the command line
	wireshark string // Wireshark's name in the Info column
	bitName   string // Wireshark's name in the flags tree
	bitLetter byte   // Wireshark's letter in "[TCP Flags: ...]"
}

// flagTable returns the control bits in header bit order (FIN first), which is also the order tcpdump and
// Wireshark print them in.
func flagTable() [9]flagInfo {
	return [9]flagInfo{
		{FIN, 'F', "fin", "FIN", "Fin", 'F'},
		{SYN, 'S', "syn", "SYN", "Syn", 'S'},
		{RST, 'R', "rst", "RST", "Reset", 'R'},
		{PSH, 'P', "psh", "PSH", "Push", 'P'},
		{ACK, '.', "ack", "ACK", "Acknowledgment", 'A'},
		{URG, 'U', "urg", "URG", "Urgent", 'U'},
		{ECE, 'E', "ece", "ECE", "ECN-Echo", 'E'},
		{CWR, 'W', "cwr", "CWR", "Congestion Window Reduced", 'C'},
		{AE, 'e', "ae", "AE", "Accurate ECN", 'A'},
	}
}

// Has reports whether every bit of g is set in f.
func (f Flags) Has(g Flags) bool {
	return f&g == g
}

// String returns tcpdump's letters without brackets, in the order F S R P . U E W e, or "none" when no flag
// is set: "S.", "FP.", "R.".
func (f Flags) String() string {
	if f&flagsMask == 0 {
		return "none"
	}
	var b [9]byte
	n := 0
	for _, fi := range flagTable() {
		if f.Has(fi.flag) {
			b[n] = fi.tcpdump
			n++
		}
	}
	return string(b[:n])
}

// Tcpdump returns the flags as tcpdump prints them: "[S.]", "[none]".
func (f Flags) Tcpdump() string {
	return "[" + f.String() + "]"
}

// Wireshark returns the flags as Wireshark's Info column shows them: "[SYN, ACK]", "[FIN, PSH, ACK]", or
// "<None>" when no flag is set.
func (f Flags) Wireshark() string {
	names := f.names(", ", func(fi flagInfo) string { return fi.wireshark })
	if names == "" {
		return "<None>"
	}
	return "[" + names + "]"
}

// Words returns the flags as lower-case words separated by commas, for JSON: "syn,ack"; "" when no flag is
// set.
func (f Flags) Words() string {
	return f.names(",", func(fi flagInfo) string { return fi.word })
}

// names joins the chosen name of every set flag with sep.
func (f Flags) names(sep string, name func(flagInfo) string) string {
	var b strings.Builder
	for _, fi := range flagTable() {
		if !f.Has(fi.flag) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(name(fi))
	}
	return b.String()
}

// BitView returns Wireshark's tree for the flags field, one line per entry and without indentation:
//
//	Flags: 0x012 (SYN, ACK)
//	000. .... .... = Reserved: Not set
//	...0 .... .... = Accurate ECN: Not set
//	...
//	.... .... ..1. = Syn: Set
//	.... .... ...0 = Fin: Not set
//	[TCP Flags: ·······A··S·]
func (f Flags) BitView() []string {
	f &= flagsMask
	summary := f.names(", ", func(fi flagInfo) string { return fi.wireshark })
	if summary == "" {
		summary = "<None>"
	}
	lines := make([]string, 0, 12)
	lines = append(lines, fmt.Sprintf("Flags: 0x%03x (%s)", uint16(f), summary))
	reserved := "Not set"
	if f&0x0e00 != 0 {
		reserved = "Set"
	}
	lines = append(lines, bitPattern(f, 0x0e00)+" = Reserved: "+reserved)
	table := flagTable()
	letters := []rune("···" + "·········")
	for bit := 11; bit >= 9; bit-- {
		if f&(1<<bit) != 0 {
			letters[11-bit] = 'R'
		}
	}
	for i := len(table) - 1; i >= 0; i-- {
		fi := table[i]
		state := "Not set"
		if f.Has(fi.flag) {
			state = "Set"
			letters[11-i] = rune(fi.bitLetter)
		}
		lines = append(lines, bitPattern(f, fi.flag)+" = "+fi.bitName+": "+state)
	}
	lines = append(lines, "[TCP Flags: "+string(letters)+"]")
	return lines
}

// bitPattern renders the 12-bit flags field the way Wireshark marks a bit field: the bits of mask as 0 or 1,
// every other bit as '.', in groups of four.
func bitPattern(f, mask Flags) string {
	b := make([]byte, 0, 14)
	for bit := 11; bit >= 0; bit-- {
		if bit != 11 && bit%4 == 3 {
			b = append(b, ' ')
		}
		switch {
		case mask&(1<<bit) == 0:
			b = append(b, '.')
		case f&(1<<bit) != 0:
			b = append(b, '1')
		default:
			b = append(b, '0')
		}
	}
	return string(b)
}

// ParseFlags parses control bits written in one of these forms:
//
//   - words separated by commas, pipes, plus signs or spaces: "syn,ack", "SYN|ACK", "fin+psh+ack"; the words
//     are fin, syn, rst or reset, psh or push, ack, urg, ece, cwr, and ae or ns, in any case;
//   - tcpdump letters, with or without brackets: "S", "S.", "FP.", "[R.]"; '.' is ACK, E is ECE, W is CWR
//     and a lower-case e is AE;
//   - hping3 letters: "SA", "FA", "PA", "R"; A is ACK, X is ECE, Y is CWR;
//   - "none" for no flag at all.
//
// Letters are case-insensitive, except that tcpdump's lower-case e (AE) differs from upper-case E (ECE). A
// single token that is a word is read as a word; otherwise it is read as letters, so "ae" is AE, not ACK+ECE.
// Errors name the culprit and the input: unknown flag letter "Q" in "SQ".
func ParseFlags(s string) (Flags, error) {
	in := strings.TrimSpace(s)
	if strings.HasPrefix(in, "[") && strings.HasSuffix(in, "]") {
		in = strings.TrimSpace(in[1 : len(in)-1])
	}
	if in == "" {
		return 0, fmt.Errorf("craft: parse flags: empty flag list %q", s)
	}
	if strings.EqualFold(in, "none") {
		return 0, nil
	}
	tokens := strings.FieldsFunc(in, func(r rune) bool {
		return r == ',' || r == '|' || r == '+' || r == ' ' || r == '\t'
	})
	if len(tokens) == 0 {
		return 0, fmt.Errorf("craft: parse flags: empty flag list %q", s)
	}
	if len(tokens) > 1 {
		var f Flags
		for _, tok := range tokens {
			g, ok := flagWord(tok)
			if !ok {
				return 0, fmt.Errorf("craft: parse flags: unknown flag word %q in %q", tok, s)
			}
			f |= g
		}
		return f, nil
	}
	if g, ok := flagWord(in); ok {
		return g, nil
	}
	return flagLetters(in, s)
}

// flagWord looks up one flag word in any case.
func flagWord(w string) (Flags, bool) {
	switch strings.ToLower(w) {
	case "reset":
		return RST, true
	case "push":
		return PSH, true
	case "ns":
		return AE, true
	}
	for _, fi := range flagTable() {
		if strings.EqualFold(w, fi.word) {
			return fi.flag, true
		}
	}
	return 0, false
}

// flagLetters reads tcpdump or hping3 letters; orig is the whole input, for the error message.
func flagLetters(letters, orig string) (Flags, error) {
	var f Flags
	for _, r := range letters {
		switch r {
		case 'F', 'f':
			f |= FIN
		case 'S', 's':
			f |= SYN
		case 'R', 'r':
			f |= RST
		case 'P', 'p':
			f |= PSH
		case '.', 'A', 'a':
			f |= ACK
		case 'U', 'u':
			f |= URG
		case 'E', 'X', 'x':
			f |= ECE
		case 'W', 'w', 'Y', 'y':
			f |= CWR
		case 'e':
			f |= AE
		default:
			return 0, fmt.Errorf("craft: parse flags: unknown flag letter %q in %q", string(r), orig)
		}
	}
	return f, nil
}
