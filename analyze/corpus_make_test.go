package analyze

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"tcpshake/craft"
)

var corpusMake = flag.Bool("corpus-make", false, "write the synth-* captures of testdata/corpus (then run scripts/corpus-oracle.sh)")

// synthConversation is the inner traffic of every synth-* capture: a handshake, a request and its echo, with 3000
// bytes in one segment (fragmented where the capture fragments), and a close.
func synthConversation() []seg {
	ms := time.Millisecond
	big := string(bytes.Repeat([]byte("x"), 3000))
	return join(handshake, request, []seg{
		{flags: "P.", seq: 5001, ack: 107, data: big, at: 5 * ms},
		{up: true, flags: ".", seq: 107, ack: 8001, at: 6 * ms},
		{up: true, flags: "F.", seq: 107, ack: 8001, at: 10 * ms},
		{flags: "F.", seq: 8001, ack: 108, at: 11 * ms},
		{up: true, flags: ".", seq: 108, ack: 8002, at: 12 * ms},
	})
}

// innerPackets marshals the conversation as IP packets (IPv6 when v6).
func innerPackets(t *testing.T, v6 bool) [][]byte {
	t.Helper()
	c, s := cli, srv
	if v6 {
		c, s = netip6("2001:db8::1", 40000), netip6("2001:db8::2", 80)
	}
	var out [][]byte
	for _, sg := range synthConversation() {
		f, err := craft.ParseFlags(sg.flags)
		if err != nil {
			t.Fatal(err)
		}
		x := craft.Segment{Src: c, Dst: s, Seq: craft.Seq(sg.seq), Ack: craft.Seq(sg.ack), Flags: f, Window: 500}
		if !sg.up {
			x.Src, x.Dst = s, c
		}
		x.Payload = []byte(sg.data)
		b, err := x.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

var (
	macA = []byte{0x02, 0, 0, 0, 0, 1}
	macB = []byte{0x02, 0, 0, 0, 0, 2}
)

func ether(ethertype uint16, payload []byte) []byte {
	b := append(append([]byte(nil), macB...), macA...)
	b = binary.BigEndian.AppendUint16(b, ethertype)
	return append(b, payload...)
}

// outer4 is an outer IPv4 header (10.0.0.1 → 10.0.0.2) of the given protocol around payload.
func outer4(proto byte, id uint16, payload []byte) []byte {
	h := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[4:], id)
	return append(h, payload...)
}

func udp(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return append(h, payload...)
}

// fragments4 splits an IPv4 packet into fragments of at most 1480 payload bytes.
func fragments4(ip []byte, id uint16) [][]byte {
	hl := int(ip[0]&0x0f) * 4
	payload := ip[hl:]
	if len(payload) <= 1480 {
		return [][]byte{ip}
	}
	var out [][]byte
	for off := 0; off < len(payload); off += 1480 {
		end := min(off+1480, len(payload))
		h := append([]byte(nil), ip[:hl]...)
		binary.BigEndian.PutUint16(h[2:], uint16(hl+end-off))
		binary.BigEndian.PutUint16(h[4:], id)
		fo := uint16(off / 8)
		if end < len(payload) {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], fo)
		binary.BigEndian.PutUint16(h[10:], 0)
		out = append(out, append(h, payload[off:end]...))
	}
	return out
}

// fragments6 splits an IPv6 packet (no extension headers) with a fragment header.
func fragments6(ip []byte, id uint32) [][]byte {
	payload := ip[40:]
	if len(payload) <= 1400 {
		return [][]byte{ip}
	}
	var out [][]byte
	for off := 0; off < len(payload); off += 1400 {
		end := min(off+1400, len(payload))
		h := append([]byte(nil), ip[:40]...)
		h[6] = 44
		binary.BigEndian.PutUint16(h[4:], uint16(8+end-off))
		fh := []byte{ip[6], 0, 0, 0, 0, 0, 0, 0}
		fo := uint16(off/8) << 3
		if end < len(payload) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		out = append(out, append(append(h, fh...), payload[off:end]...))
	}
	return out
}

// TestMakeCorpus writes a capture for each link type and encapsulation analyze decodes through gopacket (with
// -corpus-make). tshark, not this code, is the judge of what they hold: scripts/corpus-oracle.sh.
func TestMakeCorpus(t *testing.T) {
	if !*corpusMake {
		t.Skip("writes the synth-* captures only with -corpus-make")
	}
	type capture struct {
		name string
		link layers.LinkType
		v6   bool
		wrap func(ip []byte, i int) [][]byte
	}
	one := func(f func(ip []byte, i int) []byte) func([]byte, int) [][]byte {
		return func(ip []byte, i int) [][]byte { return [][]byte{f(ip, i)} }
	}
	ethIP := func(ip []byte) []byte {
		if ip[0]>>4 == 6 {
			return ether(0x86dd, ip)
		}
		return ether(0x0800, ip)
	}
	caps := []capture{
		{"synth-ppp.pcap", layers.LinkTypePPP, false, one(func(ip []byte, _ int) []byte {
			return append([]byte{0xff, 0x03, 0x00, 0x21}, ip...)
		})},
		{"synth-pppoe.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, _ int) []byte {
			h := []byte{0x11, 0x00, 0x12, 0x34, 0, 0, 0x00, 0x21}
			binary.BigEndian.PutUint16(h[4:], uint16(2+len(ip)))
			return ether(0x8864, append(h, ip...))
		})},
		{"synth-qinq.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, _ int) []byte {
			return ether(0x88a8, append([]byte{0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00}, ip...))
		})},
		{"synth-mpls.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, _ int) []byte {
			// Two labels, 1000 and 2000 (bottom of stack), TTL 64.
			return ether(0x8847, append([]byte{0x00, 0x3e, 0x80, 0x40, 0x00, 0x7d, 0x01, 0x40}, ip...))
		})},
		{"synth-gre.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, i int) []byte {
			return ether(0x0800, outer4(47, uint16(i), append([]byte{0, 0, 0x08, 0x00}, ip...)))
		})},
		{"synth-vxlan.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, i int) []byte {
			vx := []byte{0x08, 0, 0, 0, 0, 0x00, 0x64, 0}
			return ether(0x0800, outer4(17, uint16(i), udp(50000+uint16(i), 4789, append(vx, ethIP(ip)...))))
		})},
		{"synth-geneve.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, i int) []byte {
			gn := []byte{0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 0x64, 0x00}
			return ether(0x0800, outer4(17, uint16(i), udp(50000+uint16(i), 6081, append(gn, ethIP(ip)...))))
		})},
		{"synth-gtpu.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, i int) []byte {
			g := []byte{0x30, 0xff, 0, 0, 0, 0, 0x12, 0x34}
			binary.BigEndian.PutUint16(g[2:], uint16(len(ip)))
			return ether(0x0800, outer4(17, uint16(i), udp(2152, 2152, append(g, ip...))))
		})},
		{"synth-ipip.pcap", layers.LinkTypeEthernet, false, one(func(ip []byte, i int) []byte {
			return ether(0x0800, outer4(4, uint16(i), ip))
		})},
		{"synth-6in4.pcap", layers.LinkTypeEthernet, true, one(func(ip []byte, i int) []byte {
			return ether(0x0800, outer4(41, uint16(i), ip))
		})},
		{"synth-frag4.pcap", layers.LinkTypeEthernet, false, func(ip []byte, i int) [][]byte {
			var out [][]byte
			for _, f := range fragments4(ip, uint16(1000+i)) {
				out = append(out, ether(0x0800, f))
			}
			return out
		}},
		{"synth-frag6.pcap", layers.LinkTypeEthernet, true, func(ip []byte, i int) [][]byte {
			var out [][]byte
			for _, f := range fragments6(ip, uint32(1000+i)) {
				out = append(out, ether(0x86dd, f))
			}
			return out
		}},
	}
	base := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	conv := synthConversation()
	write := func(name string, link layers.LinkType, frames [][]byte, ats []time.Duration) []byte {
		var buf bytes.Buffer
		w := pcapgo.NewWriter(&buf)
		if err := w.WriteFileHeader(65535, link); err != nil {
			t.Fatal(err)
		}
		for i, f := range frames {
			ci := gopacket.CaptureInfo{Timestamp: base.Add(ats[i]), CaptureLength: len(f), Length: len(f)}
			if err := w.WritePacket(ci, f); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(corpusDir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for _, c := range caps {
		var frames [][]byte
		var ats []time.Duration
		for i, ip := range innerPackets(t, c.v6) {
			for j, f := range c.wrap(ip, i) {
				frames = append(frames, f)
				ats = append(ats, conv[i].at+time.Duration(j)*time.Microsecond)
			}
		}
		write(c.name, c.link, frames, ats)
	}
	for name, segs := range storyCaptures() {
		if err := os.WriteFile(filepath.Join(corpusDir, name), synth(t, segs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A frame whose IPv4 total length claims 100 bytes more than the frame holds, captured whole.
	b := synth(t, join(handshake, request))
	const firstRecord = 24 + 16 // pcap file header, record header
	binary.BigEndian.PutUint16(b[firstRecord+2:], binary.BigEndian.Uint16(b[firstRecord+2:])+100)
	if err := os.WriteFile(filepath.Join(corpusDir, "synth-iplen-past-frame.pcap"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Compressed captures: the Ethernet one of the plain conversation, gzip, zstd and xz.
	var frames [][]byte
	var ats []time.Duration
	for i, ip := range innerPackets(t, false) {
		frames = append(frames, ether(0x0800, ip))
		ats = append(ats, conv[i].at)
	}
	plain := write("synth-plain.pcap", layers.LinkTypeEthernet, frames, ats)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(plain)
	_ = zw.Close()
	if err := os.WriteFile(filepath.Join(corpusDir, "synth-plain.pcap.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(corpusDir, "synth-plain.pcap")
	for _, args := range [][]string{{"zstd", "-q", "-f", "-k", src, "-o", src + ".zst"}, {"xz", "-k", "-f", src}} {
		if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, b)
		}
	}
}

func netip6(addr string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port)
}

// storyCaptures are the conversations of issue 11's story symptoms, for tshark to judge (TestCorpus) and for the
// story tests.
func storyCaptures() map[string][]seg {
	ms := time.Millisecond
	close4 := func(c, sv uint32, at time.Duration) []seg {
		return []seg{
			{up: true, flags: "F.", seq: c, ack: sv, at: at},
			{flags: ".", seq: sv, ack: c + 1, at: at + ms},
			{flags: "F.", seq: sv, ack: c + 1, at: at + 2*ms},
			{up: true, flags: ".", seq: c + 1, ack: sv + 1, at: at + 3*ms},
		}
	}
	return map[string][]seg{
		// A keep-alive (1 byte at next-1) and the peer's answer, then a window update.
		"synth-keepalive.pcap": join(handshake, request, []seg{
			{up: true, flags: ".", seq: 106, ack: 5001, data: "x", at: 10 * time.Second},
			{flags: ".", seq: 5001, ack: 107, at: 10*time.Second + ms},
			{up: true, flags: ".", seq: 106, ack: 5001, at: 20 * time.Second},
			{flags: ".", seq: 5001, ack: 107, at: 20*time.Second + ms},
			{flags: ".", seq: 5001, ack: 107, win: 900, at: 21 * time.Second},
		}),
		// The server's window shuts, a zero-window probe and its answer, then the window opens.
		"synth-zerowindow.pcap": join(handshake, []seg{
			{up: true, flags: "P.", seq: 101, ack: 5001, data: "abc", at: 3 * ms},
			{flags: ".", seq: 5001, ack: 104, zwin: true, at: 4 * ms},
			{up: true, flags: ".", seq: 104, ack: 5001, data: "d", at: 300 * ms},
			{flags: ".", seq: 5001, ack: 104, zwin: true, at: 301 * ms},
			{flags: ".", seq: 5001, ack: 104, win: 800, at: 500 * ms},
			{up: true, flags: "P.", seq: 104, ack: 5001, data: "defg", at: 501 * ms},
		}),
		// A segment lost before the capture point, three duplicate ACKs and the fast retransmission.
		"synth-fastretrans.pcap": join(handshake, []seg{
			{up: true, flags: ".", seq: 101, ack: 5001, data: "aaaa", at: 3 * ms},
			{up: true, flags: ".", seq: 109, ack: 5001, data: "cccc", at: 100 * ms},
			{flags: ".", seq: 5001, ack: 105, at: 101 * ms},
			{up: true, flags: ".", seq: 113, ack: 5001, data: "dddd", at: 102 * ms},
			{flags: ".", seq: 5001, ack: 105, at: 103 * ms},
			{up: true, flags: ".", seq: 117, ack: 5001, data: "eeee", at: 104 * ms},
			{flags: ".", seq: 5001, ack: 105, at: 105 * ms},
			{up: true, flags: ".", seq: 105, ack: 5001, data: "bbbb", at: 106 * ms},
			{flags: ".", seq: 5001, ack: 121, at: 107 * ms},
		}),
		// Data sent again after the peer had acknowledged it: a spurious retransmission.
		"synth-spurious.pcap": join(handshake, request, []seg{
			{up: true, flags: "P.", seq: 101, ack: 5001, data: "hello\n", at: 300 * ms},
		}),
		// Records out of time order: the durations run from the earliest to the latest.
		"synth-timestamps-backwards.pcap": join(handshake, []seg{
			{up: true, flags: "P.", seq: 101, ack: 5001, data: "abc", at: 5 * ms},
			{flags: ".", seq: 5001, ack: 104, at: -time.Hour},
		}),
		// Port reuse: a new SYN on the ports of a conversation that closed, and on one still open.
		"synth-portreuse-closed.pcap": join(handshake, close4(101, 5001, 10*ms), []seg{
			{up: true, flags: "S", seq: 90000, at: 20 * ms},
			{flags: "S.", seq: 7000, ack: 90001, at: 21 * ms},
			{up: true, flags: ".", seq: 90001, ack: 7001, at: 22 * ms},
		}),
		"synth-portreuse-open.pcap": join(handshake, request, []seg{
			{up: true, flags: "S", seq: 90000, at: 20 * ms},
			{flags: "S.", seq: 7000, ack: 90001, at: 21 * ms},
			{up: true, flags: ".", seq: 90001, ack: 7001, at: 22 * ms},
		}),
		// The capture starts mid-connection; later an in-window SYN and its challenge ACK, then a 1-byte segment.
		"synth-midstream.pcap": {
			{up: true, flags: "P.", seq: 1000, ack: 9000, data: "abcd"},
			{flags: ".", seq: 9000, ack: 1004, at: ms},
			{flags: "P.", seq: 9000, ack: 1004, data: strings.Repeat("y", 1280), at: 2 * ms},
			{up: true, flags: ".", seq: 1004, ack: 10280, at: 3 * ms},
			{up: true, flags: "S", seq: 1500, at: 10 * ms},
			{flags: ".", seq: 10280, ack: 1004, at: 11 * ms},
			{up: true, flags: "P.", seq: 1004, ack: 10280, data: "z", at: 20 * ms},
		},
		// A capture that begins with a SYN into an existing connection, answered by its ACK.
		"synth-insyn-first.pcap": {
			{up: true, flags: "S", seq: 1500},
			{flags: ".", seq: 9000, ack: 1004, at: ms},
			{up: true, flags: "P.", seq: 1004, ack: 9000, data: "abcd", at: 2 * ms},
			{flags: ".", seq: 9000, ack: 1008, at: 3 * ms},
		},
		// The FINs cross: each is sent before the other arrives (neither acknowledges the other).
		"synth-fins-cross.pcap": join(handshake, []seg{
			{up: true, flags: "F.", seq: 101, ack: 5001, at: 10 * ms},
			{flags: "F.", seq: 5001, ack: 101, at: 10*ms + 100},
			{up: true, flags: ".", seq: 102, ack: 5002, at: 11 * ms},
			{flags: ".", seq: 5002, ack: 102, at: 11*ms + 100},
		}),
		// The client's FIN is lost on the way: the server closes later without it, and the FIN comes again.
		"synth-fin-lost.pcap": join(handshake, []seg{
			{up: true, flags: "F.", seq: 101, ack: 5001, at: 10 * ms},
			{flags: "F.", seq: 5001, ack: 101, at: 500 * ms},
			{up: true, flags: ".", seq: 102, ack: 5002, at: 501 * ms},
			{up: true, flags: "F.", seq: 101, ack: 5002, at: 700 * ms},
			{flags: ".", seq: 5002, ack: 102, at: 701 * ms},
		}),
		// After the client's FIN the server sends data; the client, gone, resets with a stale seq outside the
		// window, and then with the right one.
		"synth-rst-outside.pcap": join(handshake, []seg{
			{up: true, flags: "F.", seq: 101, ack: 5001, at: 10 * ms},
			{flags: ".", seq: 5001, ack: 102, at: 11 * ms},
			{flags: "P.", seq: 5001, ack: 102, data: "late", at: 20 * ms},
			{up: true, flags: "R", seq: 3000000000, at: 21 * ms},
			{up: true, flags: "R", seq: 102, at: 22 * ms},
		}),
		// An RST to a half-open connection: SYN, SYN-ACK, and a reset that acknowledges the SYN-ACK.
		"synth-halfopen-rst.pcap": {
			{up: true, flags: "S", seq: 100},
			{flags: "S.", seq: 5000, ack: 101, at: ms},
			{up: true, flags: "R.", seq: 101, ack: 5001, at: 2 * ms},
		},
	}
}
