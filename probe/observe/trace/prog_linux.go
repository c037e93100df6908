package trace

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// offsets are the kernel's structure layouts the programs read, taken from
// the running kernel's BTF (/sys/kernel/btf/vmlinux) so one binary works on
// every kernel whose structures hold these fields, wherever they sit.
type offsets struct {
	// struct sock_common, which struct sock begins with.
	daddr, rcvSaddr, dport, family, state, net, v6daddr, v6saddr int16
	protocol                                                     int16 // struct sock: sk_protocol
	netInum                                                      int16 // struct net: ns.inum
	skbDev, skbProtocol, skbNetwork, skbHead                     int16 // struct sk_buff
	devNet                                                       int16 // struct net_device: nd_net.net
	// struct inet_sock: inet_sport, the local port in network order. The
	// tracepoint fires for CLOSE after inet_put_port cleared skc_num, but
	// inet_sport stays (the kernel's own tracepoint format reads it too).
	inetSport int16
	// dropRxSk: skb:kfree_skb has the rx_sk argument (Linux 6.12+), the
	// socket a dropped segment reached, whose namespace is the drop's.
	dropRxSk bool
}

// kernelOffsets reads the layouts from spec.
func kernelOffsets(spec *btf.Spec) (offsets, error) {
	var o offsets
	var errs []error
	get := func(dst *int16, typ string, path ...string) {
		off, err := memberOffset(spec, typ, path...)
		if err != nil {
			errs = append(errs, err)
			return
		}
		*dst = int16(off)
	}
	get(&o.daddr, "sock_common", "skc_daddr")
	get(&o.rcvSaddr, "sock_common", "skc_rcv_saddr")
	get(&o.dport, "sock_common", "skc_dport")
	get(&o.family, "sock_common", "skc_family")
	get(&o.state, "sock_common", "skc_state")
	get(&o.net, "sock_common", "skc_net", "net")
	get(&o.v6daddr, "sock_common", "skc_v6_daddr")
	get(&o.v6saddr, "sock_common", "skc_v6_rcv_saddr")
	get(&o.protocol, "sock", "sk_protocol")
	get(&o.netInum, "net", "ns", "inum")
	get(&o.skbDev, "sk_buff", "dev")
	get(&o.skbProtocol, "sk_buff", "protocol")
	get(&o.skbNetwork, "sk_buff", "network_header")
	get(&o.skbHead, "sk_buff", "head")
	get(&o.devNet, "net_device", "nd_net", "net")
	get(&o.inetSport, "inet_sock", "inet_sport")
	var tp *btf.Typedef
	if err := spec.TypeByName("btf_trace_kfree_skb", &tp); err == nil {
		if p, ok := tp.Type.(*btf.Pointer); ok {
			if fp, ok := p.Target.(*btf.FuncProto); ok {
				// The first parameter is the tracepoint's data pointer.
				o.dropRxSk = len(fp.Params) >= 5
			}
		}
	}
	// The program reads a struct sock through the sock_common offsets.
	var at int16 = -1
	get(&at, "sock", "__sk_common")
	if at > 0 {
		errs = append(errs, fmt.Errorf("trace: struct sock does not begin with struct sock_common (at %d)", at))
	}
	return o, errors.Join(errs...)
}

// memberOffset is the byte offset of the member reached by path from the
// start of struct typ, looking through anonymous structs and unions.
func memberOffset(spec *btf.Spec, typ string, path ...string) (uint32, error) {
	var s *btf.Struct
	if err := spec.TypeByName(typ, &s); err != nil {
		return 0, fmt.Errorf("trace: kernel BTF: struct %s: %w", typ, err)
	}
	var t btf.Type = s
	total := uint32(0)
	for _, name := range path {
		m, off, ok := findMember(t, name)
		if !ok {
			return 0, fmt.Errorf("trace: kernel BTF: struct %s has no member %s", typ, name)
		}
		if m.BitfieldSize != 0 {
			return 0, fmt.Errorf("trace: kernel BTF: %s.%s is a bitfield", typ, name)
		}
		total += off
		t = m.Type
	}
	return total, nil
}

// findMember finds name among t's members (through anonymous ones) and
// returns it with its byte offset in t.
func findMember(t btf.Type, name string) (btf.Member, uint32, bool) {
	var ms []btf.Member
	switch u := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		ms = u.Members
	case *btf.Union:
		ms = u.Members
	default:
		return btf.Member{}, 0, false
	}
	for _, m := range ms {
		if m.Name == name {
			return m, m.Offset.Bytes(), true
		}
	}
	for _, m := range ms {
		if m.Name != "" {
			continue
		}
		if in, off, ok := findMember(m.Type, name); ok {
			return in, m.Offset.Bytes() + off, true
		}
	}
	return btf.Member{}, 0, false
}

// Stack layout of every program (offsets from R10).
const (
	stackRecord = -recordSize     // the record sent to user space
	stackKey    = stackRecord - 8 // a u32 0: the key of the one-entry arrays
	stackTCP    = stackKey - 24   // 20 bytes of TCP header (drops)
	stackIP     = stackTCP - 40   // 40 bytes of IP header (drops)
	stackHead   = stackIP - 8     // skb->head read as a number (drops)
	tcpProto    = 6               // IPPROTO_TCP
	cfgNetns    = 0               // config: u32 network namespace inode, 0 for any
	cfgPort     = 4               // config: u16 port (either end), 0 for any
	cfgLast     = 8               // config: u64 ktime of the last record sent (the programs keep it)
	cfgSize     = 16
	// bpf_ringbuf_query and bpf_ringbuf_output flags (uapi/linux/bpf.h).
	rbAvailData   = 0 // BPF_RB_AVAIL_DATA
	rbNoWakeup    = 1 // BPF_RB_NO_WAKEUP
	rbForceWakeup = 2 // BPF_RB_FORCE_WAKEUP
	// wakeAt is how many bytes waiting wake the reader: 64 records.
	wakeAt = 64 * recordSize
	// quietNs is how long without a record makes the next one wake the
	// reader at once: the reader sleeps longer than readEvery only after
	// a readEvery without records (see kernelSource.read).
	quietNs = 1_000_000
)

// maps are the programs' maps: the ring buffer of records, the filter, and
// the count of records the ring buffer had no room for.
type maps struct {
	ring, config, lost *ebpf.Map
}

// prologue zeroes the record and stamps it with the time and kind.
func prologue(kind uint8) asm.Instructions {
	ins := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1), asm.Mov.Imm(asm.R1, 0)}
	for off := int16(0); off < recordSize; off += 8 {
		ins = append(ins, asm.StoreMem(asm.R10, stackRecord+off, asm.R1, asm.DWord))
	}
	return append(ins,
		asm.StoreMem(asm.R10, stackKey, asm.R1, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.R10, stackRecord, asm.R0, asm.DWord),
		asm.StoreImm(asm.R10, stackRecord+22, int64(kind), asm.Byte),
	)
}

// filterAndSend drops the record unless it matches the config (network
// namespace, port at either end), then writes it to the ring buffer and
// counts it as lost when there was no room.
func filterAndSend(m maps) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.config.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stackKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.LoadMem(asm.R1, asm.R0, cfgNetns, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "port"),
		asm.LoadMem(asm.R2, asm.R10, stackRecord+16, asm.Word),
		asm.JNE.Reg(asm.R1, asm.R2, "exit"),
		asm.LoadMem(asm.R1, asm.R0, cfgPort, asm.Half).WithSymbol("port"),
		asm.JEq.Imm(asm.R1, 0, "send"),
		asm.LoadMem(asm.R2, asm.R10, stackRecord+32, asm.Half),
		asm.JEq.Reg(asm.R1, asm.R2, "send"),
		asm.LoadMem(asm.R2, asm.R10, stackRecord+34, asm.Half),
		asm.JEq.Reg(asm.R1, asm.R2, "send"),
		asm.Ja.Label("exit"),
		// Wake the reader at once for the first record after quietNs
		// without any (it may be asleep for long), otherwise only once
		// a batch is waiting (it also reads every readEvery by itself
		// while records come): a wakeup per record costs the watched
		// connections a context switch each.
		asm.LoadMapPtr(asm.R1, m.config.FD()).WithSymbol("send"),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stackKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "batch"),
		asm.LoadMem(asm.R1, asm.R10, stackRecord, asm.DWord),
		asm.LoadMem(asm.R2, asm.R0, cfgLast, asm.DWord),
		asm.StoreMem(asm.R0, cfgLast, asm.R1, asm.DWord),
		asm.Sub.Reg(asm.R1, asm.R2),
		asm.Mov.Imm(asm.R4, rbForceWakeup),
		asm.JGT.Imm(asm.R1, quietNs, "output"),
		asm.LoadMapPtr(asm.R1, m.ring.FD()).WithSymbol("batch"),
		asm.Mov.Imm(asm.R2, rbAvailData),
		asm.FnRingbufQuery.Call(),
		asm.Mov.Imm(asm.R4, rbNoWakeup),
		asm.JLT.Imm(asm.R0, wakeAt, "output"),
		asm.Mov.Imm(asm.R4, rbForceWakeup),
		asm.LoadMapPtr(asm.R1, m.ring.FD()).WithSymbol("output"),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stackRecord),
		asm.Mov.Imm(asm.R3, recordSize),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.LoadMapPtr(asm.R1, m.lost.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stackKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	}
}

// stateProgram records a TCP socket's state change
// (sock:inet_sock_set_state: sk, oldstate, newstate).
func stateProgram(o offsets, m maps) asm.Instructions {
	ins := prologue(kindState)
	ins = append(ins,
		asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord),
		asm.LoadMem(asm.R1, asm.R7, o.protocol, asm.Half),
		asm.JNE.Imm(asm.R1, tcpProto, "exit"),
	)
	rec := func(off int16, size asm.Size) asm.Instruction {
		return asm.StoreMem(asm.R10, stackRecord+off, asm.R1, size)
	}
	ins = append(ins,
		asm.StoreMem(asm.R10, stackRecord+8, asm.R7, asm.DWord),
		asm.LoadMem(asm.R1, asm.R7, o.net, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, o.netInum, asm.Word),
		rec(16, asm.Word),
		asm.LoadMem(asm.R1, asm.R7, o.family, asm.Half),
		rec(20, asm.Half),
		// inet_sport lies past struct sock, beyond what the verifier lets
		// the program load directly: read it.
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, stackRecord+32),
		asm.Mov.Imm(asm.R2, 2),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, int32(o.inetSport)),
		asm.FnProbeReadKernel.Call(),
		asm.LoadMem(asm.R1, asm.R10, stackRecord+32, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		rec(32, asm.Half),
		asm.LoadMem(asm.R1, asm.R7, o.dport, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		rec(34, asm.Half),
		asm.LoadMem(asm.R1, asm.R7, o.rcvSaddr, asm.Word),
		rec(36, asm.Word),
		asm.LoadMem(asm.R1, asm.R7, o.daddr, asm.Word),
		rec(40, asm.Word),
	)
	for i := int16(0); i < 16; i += 4 {
		ins = append(ins,
			asm.LoadMem(asm.R1, asm.R7, o.v6saddr+i, asm.Word), rec(44+i, asm.Word),
			asm.LoadMem(asm.R1, asm.R7, o.v6daddr+i, asm.Word), rec(60+i, asm.Word),
		)
	}
	ins = append(ins,
		asm.LoadMem(asm.R1, asm.R6, 8, asm.DWord), rec(24, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, 16, asm.DWord), rec(28, asm.Word),
	)
	return append(ins, filterAndSend(m)...)
}

// dropProgram records a TCP segment the kernel freed with a drop reason
// (skb:kfree_skb: skb, location, reason, rx_sk): its addresses, ports,
// seq, ack, flags and lengths, read from the packet's headers. With finOnly
// it records only segments that carry a FIN (what a timewait socket's
// FIN-WAIT-2 → TIME-WAIT is seen by).
func dropProgram(o offsets, m maps, finOnly bool) asm.Instructions {
	// skb->protocol is in network order: ETH_P_IP and ETH_P_IPV6 as the
	// host reads them.
	ethIPv4 := int32(binary.NativeEndian.Uint16([]byte{0x08, 0x00}))
	ethIPv6 := int32(binary.NativeEndian.Uint16([]byte{0x86, 0xdd}))
	ins := prologue(kindDrop)
	probeRead := func(dst int16, size int32) asm.Instructions {
		// R3 holds the source address.
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R10),
			asm.Add.Imm(asm.R1, int32(dst)),
			asm.Mov.Imm(asm.R2, size),
			asm.FnProbeReadKernel.Call(),
			asm.JNE.Imm(asm.R0, 0, "exit"),
		}
	}
	rec := func(off int16, size asm.Size) asm.Instruction {
		return asm.StoreMem(asm.R10, stackRecord+off, asm.R1, size)
	}
	ins = append(ins,
		asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 16, asm.DWord),
		rec(76, asm.Word),
		asm.LoadMem(asm.R8, asm.R7, o.skbProtocol, asm.Half),
		asm.JEq.Imm(asm.R8, ethIPv4, "ip"),
		asm.JNE.Imm(asm.R8, ethIPv6, "exit"),
	)
	// The network namespace: the socket's it reached (rx_sk), else the
	// device's it came in or went out on (TCP clears skb->dev once a
	// socket has it).
	devNS := asm.Instructions{
		asm.LoadMem(asm.R1, asm.R7, o.skbDev, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, o.devNet, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, o.netInum, asm.Word),
	}
	if o.dropRxSk {
		ins = append(ins,
			asm.LoadMem(asm.R1, asm.R6, 24, asm.DWord).WithSymbol("ip"),
			asm.JEq.Imm(asm.R1, 0, "devns"),
			asm.LoadMem(asm.R1, asm.R1, o.net, asm.DWord),
			asm.LoadMem(asm.R1, asm.R1, o.netInum, asm.Word),
			asm.Ja.Label("ns"),
		)
		devNS[0] = devNS[0].WithSymbol("devns")
	} else {
		devNS[0] = devNS[0].WithSymbol("ip")
	}
	ins = append(ins, devNS...)
	ins = append(ins,
		rec(16, asm.Word).WithSymbol("ns"),
		// skb->head as a number: R9 = head + network_header.
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, int32(o.skbHead)),
	)
	ins = append(ins, probeRead(stackHead, 8)...)
	ins = append(ins,
		asm.LoadMem(asm.R9, asm.R10, stackHead, asm.DWord),
		asm.LoadMem(asm.R1, asm.R7, o.skbNetwork, asm.Half),
		asm.Add.Reg(asm.R9, asm.R1),
		asm.Mov.Reg(asm.R3, asm.R9),
	)
	ins = append(ins, probeRead(stackIP, 40)...)
	ipb := func(off int16, size asm.Size) asm.Instruction {
		return asm.LoadMem(asm.R1, asm.R10, stackIP+off, size)
	}
	ins = append(ins,
		asm.JEq.Imm(asm.R8, ethIPv6, "ip6"),
		// IPv4: protocol, addresses, total length, header length.
		ipb(9, asm.Byte),
		asm.JNE.Imm(asm.R1, tcpProto, "exit"),
		asm.StoreImm(asm.R10, stackRecord+20, afInet, asm.Half),
		ipb(12, asm.Word), rec(36, asm.Word),
		ipb(16, asm.Word), rec(40, asm.Word),
		ipb(2, asm.Half), rec(90, asm.Half),
		ipb(0, asm.Byte),
		asm.And.Imm(asm.R1, 0x0f),
		asm.LSh.Imm(asm.R1, 2),
		rec(92, asm.Byte),
		asm.Add.Reg(asm.R9, asm.R1),
		asm.Ja.Label("tcp"),
		// IPv6: next header (no extension headers), addresses, payload length.
		ipb(6, asm.Byte).WithSymbol("ip6"),
		asm.JNE.Imm(asm.R1, tcpProto, "exit"),
		asm.StoreImm(asm.R10, stackRecord+20, afInet6, asm.Half),
	)
	for i := int16(0); i < 16; i += 4 {
		ins = append(ins, ipb(8+i, asm.Word), rec(44+i, asm.Word), ipb(24+i, asm.Word), rec(60+i, asm.Word))
	}
	ins = append(ins,
		ipb(4, asm.Half), rec(90, asm.Half),
		asm.Add.Imm(asm.R9, 40),
		asm.Mov.Reg(asm.R3, asm.R9).WithSymbol("tcp"),
	)
	ins = append(ins, probeRead(stackTCP, 20)...)
	tcpb := func(off int16, size asm.Size) asm.Instruction {
		return asm.LoadMem(asm.R1, asm.R10, stackTCP+off, size)
	}
	ins = append(ins,
		tcpb(0, asm.Half), asm.HostTo(asm.BE, asm.R1, asm.Half), rec(32, asm.Half),
		tcpb(2, asm.Half), asm.HostTo(asm.BE, asm.R1, asm.Half), rec(34, asm.Half),
		tcpb(4, asm.Word), rec(80, asm.Word),
		tcpb(8, asm.Word), rec(84, asm.Word),
		tcpb(12, asm.Byte), asm.RSh.Imm(asm.R1, 4), rec(89, asm.Byte),
		tcpb(13, asm.Byte), rec(88, asm.Byte),
	)
	if finOnly {
		ins = append(ins, asm.And.Imm(asm.R1, 1), asm.JEq.Imm(asm.R1, 0, "exit"))
	}
	return append(ins, filterAndSend(m)...)
}
