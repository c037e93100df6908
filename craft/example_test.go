package craft_test

import (
	"fmt"
	"net/netip"

	"tcpshake/craft"
)

func ExampleSegment_Marshal() {
	syn := craft.Segment{
		Src:     netip.MustParseAddrPort("198.51.100.1:40000"),
		Dst:     netip.MustParseAddrPort("198.51.100.2:80"),
		Seq:     100,
		Flags:   craft.SYN,
		Window:  64240,
		Options: craft.Options{craft.MSS(1460)},
	}
	pkt, err := syn.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d bytes: IPv4 header %x, TCP header %x\n", len(pkt), pkt[:20], pkt[20:])

	back, err := craft.Parse(pkt)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(back.Kind, back.Seg.String())
	// Output:
	// 44 bytes: IPv4 header 4500002c000040004006e661c6336401c6336402, TCP header 9c40005000000064000000006002faf0abd60000020405b4
	// tcp 198.51.100.1.40000 > 198.51.100.2.80: Flags [S], seq 100, win 64240, options [mss 1460], length 0
}

func ExampleSegment_String() {
	synAck := craft.Segment{
		Src:     netip.MustParseAddrPort("[2001:db8::2]:80"),
		Dst:     netip.MustParseAddrPort("[2001:db8::1]:40000"),
		Seq:     5000,
		Ack:     101,
		Flags:   craft.SYN | craft.ACK,
		Window:  65535,
		Options: craft.SYNOptions(craft.SYNOptionSet{MSS: 1440, WScale: 7, SACKOK: true}),
	}
	fmt.Println(synAck.String())
	fmt.Println("SEG.LEN", synAck.Len(), "next seq", synAck.End())
	// Output:
	// 2001:db8::2.80 > 2001:db8::1.40000: Flags [S.], seq 5000, ack 101, win 65535, options [mss 1440,nop,nop,sackOK,nop,wscale 7], length 0
	// SEG.LEN 1 next seq 5001
}

func ExampleParseFlags() {
	for _, s := range []string{"S.", "SA", "syn,ack", "[FP.]", "R", "SQ"} {
		f, err := craft.ParseFlags(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-8q %-5s %-16s %q\n", s, f.Tcpdump(), f.Wireshark(), f.Words())
	}
	// Output:
	// "S."     [S.]  [SYN, ACK]       "syn,ack"
	// "SA"     [S.]  [SYN, ACK]       "syn,ack"
	// "syn,ack" [S.]  [SYN, ACK]       "syn,ack"
	// "[FP.]"  [FP.] [FIN, PSH, ACK]  "fin,psh,ack"
	// "R"      [R]   [RST]            "rst"
	// craft: parse flags: unknown flag letter "Q" in "SQ"
}

func ExampleFlags_BitView() {
	for _, line := range (craft.SYN | craft.ACK).BitView() {
		fmt.Println(line)
	}
	// Output:
	// Flags: 0x012 (SYN, ACK)
	// 000. .... .... = Reserved: Not set
	// ...0 .... .... = Accurate ECN: Not set
	// .... 0... .... = Congestion Window Reduced: Not set
	// .... .0.. .... = ECN-Echo: Not set
	// .... ..0. .... = Urgent: Not set
	// .... ...1 .... = Acknowledgment: Set
	// .... .... 0... = Push: Not set
	// .... .... .0.. = Reset: Not set
	// .... .... ..1. = Syn: Set
	// .... .... ...0 = Fin: Not set
	// [TCP Flags: ·······A··S·]
}

func ExampleSeq() {
	isn := craft.Seq(0xfffffffe)
	next := isn.Add(3) // wraps past zero
	fmt.Println(uint32(next), isn.LessThan(next), next.Rel(isn))
	fmt.Println(craft.Seq(5).InWindow(isn, 10), craft.Acceptable(next, 0, next, 0))
	// Output:
	// 1 true 3
	// true true
}

func ExampleParsePorts() {
	ports, err := craft.ParsePorts("22,80-82,22")
	fmt.Println(ports, err)
	_, err = craft.ParsePorts("80-20")
	fmt.Println(err)
	// Output:
	// [22 80 81 82] <nil>
	// craft: parse ports "80-20": range "80-20" is reversed: 80 > 20
}
