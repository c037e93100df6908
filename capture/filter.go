package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// Filter returns a classic BPF program for a SOCK_DGRAM packet socket (data
// starts at the IP header) that accepts TCP segments to or from peer and all
// ICMP/ICMPv6 messages (errors quote our probes; echo replies give RTT
// samples). An invalid peer accepts every TCP segment of both families.
//
// The program is:
//
//	version 4: proto 6 and (src == peer or dst == peer) or proto 1
//	version 6: next header 6 and (src == peer or dst == peer) or next header 58
func Filter(peer netip.Addr) ([]bpf.RawInstruction, error) {
	prog := filterProgram(peer)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("capture: assemble filter: %w", err)
	}
	return raw, nil
}

// asm is a tiny assembler with symbolic labels, so the filter reads top to
// bottom without hand-counted jump offsets.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at          int
	true, false string
}

func (a *asm) label(name string)    { a.labels[name] = len(a.ins) }
func (a *asm) op(i bpf.Instruction) { a.ins = append(a.ins, i) }

// jeq jumps to t when A == val, else to f ("" means the next instruction).
func (a *asm) jeq(val uint32, t, f string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), true: t, false: f})
	a.ins = append(a.ins, bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
}

// jmp jumps to label unconditionally.
func (a *asm) jmp(label string) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), true: label})
	a.ins = append(a.ins, bpf.Jump{})
}

func (a *asm) resolve() []bpf.Instruction {
	for _, f := range a.fixups {
		switch j := a.ins[f.at].(type) {
		case bpf.Jump:
			j.Skip = uint32(a.labels[f.true] - f.at - 1)
			a.ins[f.at] = j
		case bpf.JumpIf:
			if f.true != "" {
				j.SkipTrue = uint8(a.labels[f.true] - f.at - 1)
			}
			if f.false != "" {
				j.SkipFalse = uint8(a.labels[f.false] - f.at - 1)
			}
			a.ins[f.at] = j
		}
	}
	return a.ins
}

// snapLen is the most a filter keeps of one packet: all of it.
const snapLen = 1 << 16

// versionDispatch starts a program that jumps to "v4" or "v6" by the IP
// version nibble, and to "drop" for anything else (ARP and other non-IP
// frames have 0 there).
func versionDispatch() *asm {
	a := &asm{labels: map[string]int{}}
	a.op(bpf.LoadAbsolute{Off: 0, Size: 1})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jeq(4, "v4", "")
	a.jeq(6, "v6", "drop")
	return a
}

func filterProgram(peer netip.Addr) []bpf.Instruction {
	a := versionDispatch()

	a.label("v4")
	a.op(bpf.LoadAbsolute{Off: 9, Size: 1})
	a.jeq(1, "accept", "")
	switch {
	case peer.Is4():
		a.jeq(6, "", "drop")
		p := peer.As4()
		v := binary.BigEndian.Uint32(p[:])
		a.op(bpf.LoadAbsolute{Off: 12, Size: 4})
		a.jeq(v, "accept", "")
		a.op(bpf.LoadAbsolute{Off: 16, Size: 4})
		a.jeq(v, "accept", "drop")
	case peer.IsValid(): // an IPv6 peer: IPv4 TCP is not ours
		a.jmp("drop")
	default:
		a.jeq(6, "accept", "drop")
	}

	a.label("v6")
	a.op(bpf.LoadAbsolute{Off: 6, Size: 1})
	a.jeq(58, "accept", "")
	switch {
	case peer.Is4(): // IPv6 TCP is not ours
		a.jmp("drop")
	case peer.IsValid():
		a.jeq(6, "", "drop")
		p := peer.As16()
		for _, off := range []uint32{8, 24} { // source address, then destination
			next := fmt.Sprintf("not%d", off)
			for w := 0; w < 4; w++ {
				a.op(bpf.LoadAbsolute{Off: off + uint32(4*w), Size: 4})
				t := ""
				if w == 3 {
					t = "accept"
				}
				a.jeq(binary.BigEndian.Uint32(p[4*w:]), t, next)
			}
			a.label(next)
		}
		a.jmp("drop")
	default:
		a.jeq(6, "accept", "drop")
	}

	a.label("accept")
	a.op(bpf.RetConstant{Val: snapLen})
	a.label("drop")
	a.op(bpf.RetConstant{Val: 0})
	return a.resolve()
}
