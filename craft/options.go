package craft

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// OptionKind is the kind byte of a TCP option (IANA "TCP Option Kind Numbers").
type OptionKind uint8

// The TCP option kinds that craft knows by name.
const (
	OptEOL           OptionKind = 0 // end of option list (RFC 9293)
	OptNOP           OptionKind = 1 // no-operation (RFC 9293)
	OptMSS           OptionKind = 2 // maximum segment size (RFC 9293)
	OptWindowScale   OptionKind = 3 // window scale (RFC 7323)
	OptSACKPermitted OptionKind = 4 // SACK permitted (RFC 2018)
	OptSACK          OptionKind = 5 // selective acknowledgment (RFC 2018)
	OptTimestamps    OptionKind = 8 // timestamps (RFC 7323)
)

// Default maximum segment sizes for a peer whose SYN carries no MSS option. RFC 9293 §3.7.1 (restating RFC
// 1122 §4.2.2.6) says a sender must then assume 536 octets for IPv4: the 576-octet minimum reassembly buffer
// less 40 octets of IP and TCP headers. For IPv6 the same rule with the 1280-octet minimum link MTU of RFC 8200
// gives 1220 (RFC 8200 §8.3: 1280 less 60 octets of IPv6 and TCP headers).
const (
	DefaultMSSv4 = 536
	DefaultMSSv6 = 1220
)

// maxOptionBytes is the room for options in a TCP header: a data offset of 15 words less the 20-octet header.
const maxOptionBytes = 40

// Option is one TCP option. Data excludes the kind and length bytes; EOL and NOP are single bytes and carry no
// data.
type Option struct {
	Kind OptionKind
	Data []byte
}

// SACKBlock is one block of a SACK option: the octets from Left up to, not including, Right (RFC 2018).
type SACKBlock struct{ Left, Right Seq }

// MSS returns a maximum segment size option.
func MSS(v uint16) Option {
	return Option{Kind: OptMSS, Data: binary.BigEndian.AppendUint16(nil, v)}
}

// WindowScale returns a window scale option with the given shift count (RFC 7323 allows at most 14).
func WindowScale(shift uint8) Option {
	return Option{Kind: OptWindowScale, Data: []byte{shift}}
}

// SACKPermitted returns a SACK-permitted option.
func SACKPermitted() Option {
	return Option{Kind: OptSACKPermitted}
}

// SACK returns a SACK option with the given blocks; four fit in the option space, three beside timestamps.
func SACK(blocks ...SACKBlock) Option {
	data := make([]byte, 0, 8*len(blocks))
	for _, b := range blocks {
		data = binary.BigEndian.AppendUint32(data, uint32(b.Left))
		data = binary.BigEndian.AppendUint32(data, uint32(b.Right))
	}
	return Option{Kind: OptSACK, Data: data}
}

// Timestamps returns a timestamps option with TSval val and TSecr ecr.
func Timestamps(val, ecr uint32) Option {
	data := binary.BigEndian.AppendUint32(make([]byte, 0, 8), val)
	return Option{Kind: OptTimestamps, Data: binary.BigEndian.AppendUint32(data, ecr)}
}

// NOP returns a no-operation option, one byte of padding between options.
func NOP() Option {
	return Option{Kind: OptNOP}
}

// EOL returns an end-of-option-list option.
func EOL() Option {
	return Option{Kind: OptEOL}
}

// RawOption returns an option of any kind with the given data, copied. Data given to EOL or NOP is not sent.
func RawOption(kind uint8, data []byte) Option {
	var d []byte
	if len(data) > 0 {
		d = append([]byte(nil), data...)
	}
	return Option{Kind: OptionKind(kind), Data: d}
}

// wireLen returns the number of bytes the option takes in the header.
func (o Option) wireLen() int {
	if o.Kind == OptEOL || o.Kind == OptNOP {
		return 1
	}
	return 2 + len(o.Data)
}

// String returns the option as tcpdump prints it: "mss 1460", "wscale 7", "sackOK", "sack 1 {101:201}",
// "TS val 5 ecr 0", "nop", "eol". An option of another kind, or a known kind with a wrong length, is shown as
// "opt-KIND" followed by ":HEX" when it has data, e.g. "opt-30:0a0b", the form [ParseOption] reads.
func (o Option) String() string {
	switch {
	case o.Kind == OptEOL:
		return "eol"
	case o.Kind == OptNOP:
		return "nop"
	case o.Kind == OptMSS && len(o.Data) == 2:
		return "mss " + strconv.Itoa(int(binary.BigEndian.Uint16(o.Data)))
	case o.Kind == OptWindowScale && len(o.Data) == 1:
		return "wscale " + strconv.Itoa(int(o.Data[0]))
	case o.Kind == OptSACKPermitted && len(o.Data) == 0:
		return "sackOK"
	case o.Kind == OptSACK && len(o.Data)%8 == 0:
		var b strings.Builder
		fmt.Fprintf(&b, "sack %d ", len(o.Data)/8)
		for _, blk := range sackBlocks(o.Data) {
			fmt.Fprintf(&b, "{%d:%d}", uint32(blk.Left), uint32(blk.Right))
		}
		return b.String()
	case o.Kind == OptTimestamps && len(o.Data) == 8:
		return fmt.Sprintf("TS val %d ecr %d", binary.BigEndian.Uint32(o.Data), binary.BigEndian.Uint32(o.Data[4:]))
	}
	if len(o.Data) == 0 {
		return "opt-" + strconv.Itoa(int(o.Kind))
	}
	return "opt-" + strconv.Itoa(int(o.Kind)) + ":" + hex.EncodeToString(o.Data)
}

// sackBlocks decodes the blocks of a SACK option's data, whose length is a multiple of 8.
func sackBlocks(data []byte) []SACKBlock {
	blocks := make([]SACKBlock, 0, len(data)/8)
	for i := 0; i+8 <= len(data); i += 8 {
		blocks = append(blocks, SACKBlock{
			Left:  Seq(binary.BigEndian.Uint32(data[i:])),
			Right: Seq(binary.BigEndian.Uint32(data[i+4:])),
		})
	}
	return blocks
}

// Options is a list of TCP options in header order.
type Options []Option

// find returns the first option of the kind whose data has the given length.
func (o Options) find(kind OptionKind, dataLen int) (Option, bool) {
	for _, opt := range o {
		if opt.Kind == kind && len(opt.Data) == dataLen {
			return opt, true
		}
	}
	return Option{}, false
}

// MSS returns the value of the first well-formed MSS option. When there is none, the peer's MSS is
// [DefaultMSSv4] or [DefaultMSSv6].
func (o Options) MSS() (uint16, bool) {
	opt, ok := o.find(OptMSS, 2)
	if !ok {
		return 0, false
	}
	return binary.BigEndian.Uint16(opt.Data), true
}

// WindowScale returns the shift count of the first well-formed window scale option. Without one the window is
// not scaled (RFC 7323 §2.2). The value is returned as sent; RFC 7323 §2.3 says a receiver uses 14 for larger
// values.
func (o Options) WindowScale() (uint8, bool) {
	opt, ok := o.find(OptWindowScale, 1)
	if !ok {
		return 0, false
	}
	return opt.Data[0], true
}

// SACKPermitted reports whether the options hold a well-formed SACK-permitted option.
func (o Options) SACKPermitted() bool {
	_, ok := o.find(OptSACKPermitted, 0)
	return ok
}

// Timestamps returns TSval and TSecr of the first well-formed timestamps option.
func (o Options) Timestamps() (val, ecr uint32, ok bool) {
	opt, ok := o.find(OptTimestamps, 8)
	if !ok {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(opt.Data), binary.BigEndian.Uint32(opt.Data[4:]), true
}

// SACKBlocks returns the blocks of the first well-formed SACK option, or nil.
func (o Options) SACKBlocks() []SACKBlock {
	for _, opt := range o {
		if opt.Kind == OptSACK && len(opt.Data) > 0 && len(opt.Data)%8 == 0 {
			return sackBlocks(opt.Data)
		}
	}
	return nil
}

// String returns the options as tcpdump lists them, "[mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7]", or ""
// when there are none.
func (o Options) String() string {
	if len(o) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, opt := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(opt.String())
	}
	b.WriteByte(']')
	return b.String()
}

// wireLen returns the bytes the options take in the header before padding.
func (o Options) wireLen() int {
	n := 0
	for _, opt := range o {
		n += opt.wireLen()
	}
	return n
}

// SYNOptionSet chooses the options of a SYN or SYN-ACK for [SYNOptions].
type SYNOptionSet struct {
	MSS       uint16 // 0: no MSS option
	WScale    int    // shift count; negative: no window scale option
	SACKOK    bool   // offer SACK
	Timestamp bool   // send a timestamps option
	TSVal     uint32 // TSval of the timestamps option
	TSEcr     uint32 // TSecr of the timestamps option (0 in a SYN)
}

// SYNOptions builds options in the layout Linux uses in its SYN (tcp_options_write), so that every option
// lands on its natural alignment:
//
//	mss 1460                      when MSS > 0
//	sackOK,TS val V ecr E         when both SACKOK and Timestamp
//	nop,nop,TS val V ecr E        when only Timestamp
//	nop,nop,sackOK                when only SACKOK
//	nop,wscale N                  when WScale >= 0
//
// Zero MSS means no MSS option; a negative WScale means no window scale option. WScale above 255 is sent as 255.
func SYNOptions(s SYNOptionSet) Options {
	var o Options
	if s.MSS > 0 {
		o = append(o, MSS(s.MSS))
	}
	switch {
	case s.SACKOK && s.Timestamp:
		o = append(o, SACKPermitted(), Timestamps(s.TSVal, s.TSEcr))
	case s.Timestamp:
		o = append(o, NOP(), NOP(), Timestamps(s.TSVal, s.TSEcr))
	case s.SACKOK:
		o = append(o, NOP(), NOP(), SACKPermitted())
	}
	if s.WScale >= 0 {
		o = append(o, NOP(), WindowScale(uint8(min(s.WScale, 255))))
	}
	return o
}

// ParseOption parses a raw option given on the command line: "KIND" or "KIND:HEX", e.g. "30:0a0b". KIND is a
// decimal number from 0 to 255; HEX is the option's data without the kind and length bytes, at most 38 bytes.
// EOL (0) and NOP (1) take no data.
func ParseOption(s string) (Option, error) {
	kindText, hexText, hasData := strings.Cut(strings.TrimSpace(s), ":")
	kind, err := strconv.ParseUint(kindText, 10, 8)
	if err != nil {
		return Option{}, fmt.Errorf("craft: parse option %q: kind must be a number from 0 to 255", s)
	}
	var data []byte
	if hasData {
		if hexText == "" {
			return Option{}, fmt.Errorf("craft: parse option %q: empty data after ':'", s)
		}
		data, err = hex.DecodeString(hexText)
		if err != nil {
			return Option{}, fmt.Errorf("craft: parse option %q: data is not hex: %w", s, err)
		}
	}
	if (kind == uint64(OptEOL) || kind == uint64(OptNOP)) && len(data) > 0 {
		return Option{}, fmt.Errorf("craft: parse option %q: kind %d is a single byte and takes no data", s, kind)
	}
	if len(data) > maxOptionBytes-2 {
		return Option{}, fmt.Errorf("craft: parse option %q: %d data bytes, at most %d fit", s, len(data), maxOptionBytes-2)
	}
	return Option{Kind: OptionKind(kind), Data: data}, nil
}
