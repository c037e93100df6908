package analyze

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"tcpshake/craft"
	"tcpshake/event"
)

// DefaultLinger is how long, in capture time, a finished conversation (both FINs acknowledged, or reset) is kept
// for late packets (a retransmitted FIN, the last ACK) before its row is emitted and its memory freed.
const DefaultLinger = 2 * time.Minute

// Config says what to analyze and what to show.
type Config struct {
	File string // the file's name, for the summary

	// Host and Port filter the conversations shown: one of the two endpoints must have the address Host (when
	// valid) and one must use Port (when not 0). Conversations are numbered before filtering.
	Host netip.Addr
	Port uint16

	// Conn picks one conversation for the step-by-step story: by Conn.Index (from 1) or by its two endpoints
	// (in either order). The zero value picks none.
	Conn ConnSelector

	// Linger is DefaultLinger when zero.
	Linger time.Duration

	// Warn receives one line per link type or encapsulation that was not decoded, with the number of packets
	// skipped for it (the command's standard error). The same warnings are in the event stream as event.Warning.
	Warn io.Writer

	// stories, when set, tells every conversation step by step, each to the sink it returns for the
	// conversation's index (the corpus test compares every step with tshark's).
	stories func(index int) event.Sink
	// maxUncompressed, when not 0, bounds what a compressed file may uncompress to (the fuzz test).
	maxUncompressed int64
}

// ConnSelector names one conversation.
type ConnSelector struct {
	Index int
	A, B  netip.AddrPort
}

// IsZero reports whether the selector names nothing.
func (s ConnSelector) IsZero() bool { return s.Index == 0 && !s.A.IsValid() }

func (s ConnSelector) String() string {
	if s.Index > 0 {
		return "#" + strconv.Itoa(s.Index)
	}
	return s.A.String() + " <-> " + s.B.String()
}

// ParseConnSelector reads a conversation number ("3") or two endpoints separated by a comma, a space or "<->"
// ("198.51.100.1:40000,198.51.100.2:80", "[2001:db8::1]:40000 <-> [2001:db8::2]:80").
func ParseConnSelector(s string) (ConnSelector, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return ConnSelector{}, fmt.Errorf("analyze: conversation number %d: numbers start at 1", n)
		}
		return ConnSelector{Index: n}, nil
	}
	parts := strings.FieldsFunc(strings.ReplaceAll(s, "<->", " "), func(r rune) bool { return r == ',' || r == ' ' })
	if len(parts) != 2 {
		return ConnSelector{}, fmt.Errorf("analyze: conversation %q: want a number or two ADDR:PORT endpoints", s)
	}
	var sel ConnSelector
	for i, p := range parts {
		ap, err := netip.ParseAddrPort(p)
		if err != nil {
			return ConnSelector{}, fmt.Errorf("analyze: conversation %q: %w", s, err)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if i == 0 {
			sel.A = ap
		} else {
			sel.B = ap
		}
	}
	return sel, nil
}

// ErrNotFound is returned by Run when the conversation asked for does not exist or the filter matches nothing.
var ErrNotFound = errors.New("analyze: no such conversation")

// analyzer holds the state of one run.
type analyzer struct {
	cfg     Config
	sink    event.Sink
	parser  *craft.Parser
	pkt     craft.Packet
	convs   map[key]*conv
	done    []*conv // finished conversations, in the order they finished
	next    int     // index of the next conversation
	start   int64   // capture time of the first packet
	last    int64
	sum     event.CaptureSummary
	found   bool // the --conn conversation was seen
	linger  int64
	emitted []*conv // scratch for the final flush
	zeros   []byte  // stands in for payload bytes a short snap length cut off
	deep    *deep   // the slow path, made at its first use
	// undecoded counts the packets skipped per link type or encapsulation not decoded.
	undecoded map[string]uint64
}

// Run reads a capture from r, emits one event.Connection per conversation that passes the filter (or, with
// cfg.Conn, the steps of that one conversation and its event.Connection), then an event.CaptureSummary. It keeps
// only open conversations in memory, plus finished ones for cfg.Linger of capture time.
//
// A file that is truncated or damaged ends the reading: everything before the damage is reported, the summary
// carries the error, and Run returns it. Run returns ErrNotFound (wrapped) when cfg.Conn names no conversation
// or the filter matches none, and ctx's error when cancelled.
func Run(ctx context.Context, r io.Reader, cfg Config, sink event.Sink) (event.CaptureSummary, error) {
	rd, err := newReader(r, cfg.maxUncompressed)
	if err != nil {
		return event.CaptureSummary{File: cfg.File}, err
	}
	a := newAnalyzer(cfg, sink)
	a.sum.Format = rd.Format()
	var readErr error
	for n := 0; ; n++ {
		if n&0xfff == 0 && ctx.Err() != nil {
			readErr = ctx.Err()
			break
		}
		frame, link, ci, err := rd.NextFrame()
		if err != nil {
			if err != io.EOF {
				readErr = fmt.Errorf("analyze: %s: packet %d: %w", cfg.File, a.sum.Packets+1, err)
			}
			break
		}
		a.packet(frame, link, ci.Timestamp, ci.Length, ci.CaptureLength < ci.Length)
		if n&0xfff == 0 {
			a.evict()
		}
	}
	a.sum.LinkType = linkName(rd.LinkType())
	return a.finish(readErr)
}

func newAnalyzer(cfg Config, sink event.Sink) *analyzer {
	linger := cfg.Linger
	if linger <= 0 {
		linger = DefaultLinger
	}
	return &analyzer{
		cfg: cfg, sink: sink, parser: craft.NewParser(), convs: make(map[key]*conv, 1024), next: 1,
		linger: int64(linger), sum: event.CaptureSummary{File: cfg.File},
	}
}

// uncut makes a packet that the capture's snap length cut short decodable: when the IP header announces more
// bytes than were captured, it rewrites the header's length to what is there and returns how many bytes are
// missing. Checksums are not verified, so the change is harmless.
//
// In a frame captured whole (cut false) the bytes that are there are all there is: the header's length is
// rewritten the same way, and nothing is missing.
func uncut(ip []byte, cut bool) int {
	missing := 0
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if total > len(ip) && total-len(ip) < 1<<16 {
			binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
			missing = total - len(ip)
		}
	case len(ip) >= 40 && ip[0]>>4 == 6:
		total := 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if total > len(ip) {
			binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
			missing = total - len(ip)
		}
	}
	if !cut {
		return 0
	}
	return missing
}

// packet accounts one packet record: frame is its data of the given link type, t its capture time and frameLen
// its length on the wire.
//
// cut says the snap length cut the frame short: an IP header announcing more bytes than the frame holds is then
// believed (the missing payload is counted, as tshark counts it); in a frame that was captured whole, such a
// length is malformed and only the bytes there count, as tshark does ("IPv4 total length exceeds packet length").
func (a *analyzer) packet(frame []byte, link layers.LinkType, ts time.Time, frameLen int, cut bool) {
	t := ts.UnixNano()
	if a.sum.Packets == 0 {
		a.start, a.last = t, t
	}
	a.sum.Packets++
	// Durations run from the earliest to the latest timestamp: a capture's records need not be in time order.
	a.start, a.last = min(a.start, t), max(a.last, t)
	ip := StripLink(link, frame)
	deepFrom := gopacket.Decoder(nil)
	switch {
	case ip == nil && fastLink(link):
		if !a.etherNotIP(link, frame) {
			deepFrom = link
		}
	case ip == nil && linkKnown(link):
		deepFrom = link
	case ip == nil:
		a.notDecoded(linkTypeWords(link))
		return
	}
	if ip != nil {
		lenAt := 2 // the IP header's length field, which uncut may rewrite: the slow path wants the original
		if ip[0]>>4 == 6 {
			lenAt = 4
		}
		var origLen [2]byte
		if len(ip) >= lenAt+2 {
			copy(origLen[:], ip[lenAt:])
		}
		missing := uncut(ip, cut)
		if err := a.parser.Parse(ip, &a.pkt); err != nil {
			if b := shortOffset(ip); b == nil || a.parser.Parse(b, &a.pkt) != nil || a.pkt.Kind != craft.KindTCP {
				a.sum.Undecodable++
				return
			}
		}
		if a.pkt.Kind == craft.KindTCP || a.pkt.Kind == craft.KindICMP {
			a.handle(t, frameLen, missing)
			return
		}
		if !needsDeep(ip) {
			a.sum.Skipped++
			return
		}
		if len(ip) >= lenAt+2 {
			copy(ip[lenAt:], origLen[:])
		}
		deepFrom, frame = layers.LayerTypeIPv4, ip
		if ip[0]>>4 == 6 {
			deepFrom = layers.LayerTypeIPv6
		}
	}
	if deepFrom == nil {
		a.sum.Skipped++
		return
	}
	if a.deep == nil {
		a.deep = newDeep()
	}
	inner, why := a.deep.decode(deepFrom, frame, ts)
	if inner == nil {
		if why != "" {
			a.notDecoded(why)
			return
		}
		a.sum.Skipped++
		return
	}
	missing := uncut(inner, cut)
	if err := a.parser.Parse(inner, &a.pkt); err != nil {
		a.sum.Undecodable++
		return
	}
	if a.pkt.Kind != craft.KindTCP && a.pkt.Kind != craft.KindICMP {
		a.sum.Skipped++
		return
	}
	a.handle(t, frameLen, missing)
}

// handle accounts a parsed TCP segment or ICMP error; cut is how many bytes the snap length cut off.
func (a *analyzer) handle(t int64, frameLen, cut int) {
	switch a.pkt.Kind {
	case craft.KindTCP:
		a.sum.TCPPackets++
		if cut > 0 {
			if a.zeros == nil {
				a.zeros = make([]byte, 1<<16)
			}
			// The snap length cut the payload: count its real length, as tshark does. The stand-in bytes are
			// zeros; only their number is used.
			a.pkt.Seg.Payload = a.zeros[:len(a.pkt.Seg.Payload)+cut]
		}
		a.tcp(&a.pkt.Seg, t, frameLen)
	case craft.KindICMP:
		a.sum.ICMPErrors++
		a.icmp(&a.pkt.ICMP, t)
	}
}

// shortOffset returns a copy of an IP packet whose TCP header's data offset runs past the packet, with the offset
// cut to the bytes there: tshark still counts such a segment in its conversation (its options are lost, it has
// no payload). It returns nil for anything else, a data offset below 5 included (tshark drops those).
func shortOffset(ip []byte) []byte {
	var hl int
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4 && ip[9] == 6 && binary.BigEndian.Uint16(ip[6:])&0x3fff == 0:
		hl = int(ip[0]&0x0f) * 4
	case len(ip) >= 40 && ip[0]>>4 == 6 && ip[6] == 6:
		hl = 40
	default:
		return nil
	}
	if hl < 20 || len(ip) < hl+20 {
		return nil
	}
	doff := int(ip[hl+12] >> 4)
	avail := (len(ip) - hl) / 4
	if doff < 5 || doff <= avail {
		return nil
	}
	b := append([]byte(nil), ip...)
	b[hl+12] = b[hl+12]&0x0f | byte(min(avail, 15))<<4
	return b
}

// fastLink reports whether StripLink reads the link type itself.
func fastLink(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw, linkTypeRawBSD,
		linkTypeRawOpenBSD, layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkTypeNull, layers.LinkTypeLoop:
		return true
	}
	return false
}

// etherNotIP reports frames that StripLink read and that carry a protocol with no IP inside (ARP, LLDP...), so
// the slow path need not look at them.
func (a *analyzer) etherNotIP(link layers.LinkType, frame []byte) bool {
	var et uint16
	switch {
	case link == layers.LinkTypeEthernet && len(frame) >= 14:
		et = binary.BigEndian.Uint16(frame[12:])
	case link == layers.LinkTypeLinuxSLL && len(frame) >= 16:
		et = binary.BigEndian.Uint16(frame[14:])
	case link == layers.LinkTypeLinuxSLL2 && len(frame) >= 20:
		et = binary.BigEndian.Uint16(frame[0:])
	default:
		return false
	}
	switch et {
	case 0x0806, 0x8035, 0x88cc, 0x888e, 0x8809: // ARP, RARP, LLDP, EAPOL, slow protocols (LACP)
		return true
	}
	return false
}

// notDecoded counts a packet skipped because a link type or an encapsulation in it is not decoded; Run warns
// about each one at the end, with the count.
func (a *analyzer) notDecoded(what string) {
	a.sum.Skipped++
	if a.undecoded == nil {
		a.undecoded = map[string]uint64{}
	}
	a.undecoded[what]++
}

func (a *analyzer) tcp(seg *craft.Segment, t int64, frameLen int) {
	k := keyOf(seg.Src, seg.Dst)
	c := a.convs[k]
	var prev *conv
	prevIndex := 0
	if c != nil && seg.Flags&(craft.SYN|craft.ACK) == craft.SYN {
		// tshark's port reuse (packet-tcp.c): a SYN whose seq is not the base seq of its direction starts a
		// new conversation on the same ports, closed or not; a SYN sent again with the same seq does not.
		if s := &c.sides[c.dirOf(seg.Src)]; s.tsBaseSet && s.tsBase != seg.Seq {
			if !c.finished() {
				prev = c // still open: a SYN into it (an in-window SYN) or a reuse that tshark splits all the same
				prevIndex = c.index
			}
			a.emit(c)
			delete(a.convs, k)
			c = nil
		}
	}
	if c == nil {
		c = a.newConv(k, seg, t)
		if prev != nil {
			c.inherit(prev)
			c.splitFrom = prevIndex
		}
	}
	wasDone := c.finished()
	out := c.observe(seg, frameLen, t)
	if c.story != nil {
		c.story.segment(c, seg, t, out)
	}
	if !wasDone && c.finished() {
		a.done = append(a.done, c)
	}
}

func (a *analyzer) newConv(k key, seg *craft.Segment, t int64) *conv {
	c := &conv{index: a.next, client: seg.Src, server: seg.Dst, first: t}
	a.next++
	if seg.Flags.Has(craft.SYN) && seg.Flags.Has(craft.ACK) {
		// The handshake's first SYN was not captured: the SYN-ACK's receiver sent it.
		c.client, c.server = seg.Dst, seg.Src
	}
	c.shown = a.match(c)
	sel := a.cfg.Conn
	if !a.found && !sel.IsZero() && (sel.Index == c.index ||
		(sel.Index == 0 && ((sel.A == c.client && sel.B == c.server) || (sel.A == c.server && sel.B == c.client)))) {
		a.found = true
		c.story = newStory(a.sink, a.start)
	} else if a.cfg.stories != nil {
		c.story = newStory(a.cfg.stories(c.index), a.start)
	}
	a.convs[k] = c
	return c
}

// match applies the host and port filter.
func (a *analyzer) match(c *conv) bool {
	if h := a.cfg.Host; h.IsValid() && c.client.Addr() != h && c.server.Addr() != h {
		return false
	}
	if p := a.cfg.Port; p != 0 && c.client.Port() != p && c.server.Port() != p {
		return false
	}
	return true
}

// icmp accounts an ICMP error quoting a TCP segment of a known conversation; errors about unknown conversations
// are only counted in the summary.
func (a *analyzer) icmp(e *craft.ICMPError, t int64) {
	q := &e.Quoted
	c := a.convs[keyOf(q.Src, q.Dst)]
	if c == nil {
		return
	}
	c.icmp++
	c.first, c.last = min(c.first, t), max(c.last, t)
	if c.icmpReason == "" {
		c.icmpReason = e.Reason()
	}
	if c.story != nil {
		c.story.icmp(c, e, t)
	}
}

// evict emits and forgets finished conversations that have been quiet for the linger time.
func (a *analyzer) evict() {
	i := 0
	for ; i < len(a.done); i++ {
		c := a.done[i]
		if a.last-c.closedAt < a.linger {
			break
		}
		if a.last-c.last < a.linger {
			// Still active after it finished: look again later.
			c.closedAt = c.last
			a.done = append(a.done, c)
			continue
		}
		if a.convs[keyOf(c.client, c.server)] == c {
			delete(a.convs, keyOf(c.client, c.server))
		}
		a.emit(c)
	}
	a.done = append(a.done[:0], a.done[i:]...)
}

// emit sends the conversation's event if it passes the filter or is the one asked for.
func (a *analyzer) emit(c *conv) {
	if c.index == 0 {
		return // already emitted
	}
	if c.story != nil {
		c.story.flush(c)
	}
	show := c.shown
	if !a.cfg.Conn.IsZero() {
		show = c.story != nil
	}
	if show {
		a.sum.Shown++
		a.sink.Emit(a.connection(c))
	}
	c.index = 0
}

// connection describes c as an event.
func (a *analyzer) connection(c *conv) event.Connection {
	opened := c.opened()
	return event.Connection{
		Index: c.index, Client: c.client.String(), Server: c.server.String(),
		PacketsToServer: c.pkts[0], BytesToServer: c.bytes[0], PacketsToClient: c.pkts[1], BytesToClient: c.bytes[1],
		StartMs: nsToMs(c.first - a.start), DurationMs: nsToMs(c.last - c.first),
		Opened: opened, Closed: c.closed(opened),
		Retransmissions: c.retrans, OutOfOrder: c.ooo, ICMP: c.icmp,
		Segments: c.segments(),
	}
}

// segments is c's count by phase for the story of one conversation (--conn), nil otherwise: a table of
// millions of rows allocates nothing per row.
func (c *conv) segments() *event.SegmentCount {
	if c.story == nil || c.segs.Total == 0 {
		return nil
	}
	sc := c.segs
	sc.BytesSent, sc.BytesReceived = c.data[0], c.data[1]
	return &sc
}

// finish emits the conversations still in memory, in the order they began, and the summary.
func (a *analyzer) finish(readErr error) (event.CaptureSummary, error) {
	a.sum.Conversations = a.next - 1
	rest := a.emitted[:0]
	for _, c := range a.convs {
		rest = append(rest, c)
	}
	slices.SortFunc(rest, func(x, y *conv) int { return x.index - y.index })
	for _, c := range rest {
		a.emit(c)
	}
	a.convs = nil
	a.done = nil
	if a.sum.Packets > 0 {
		a.sum.DurationMs = nsToMs(a.last - a.start)
	}
	a.warnings()
	err := readErr
	if err != nil {
		a.sum.Error = err.Error()
	}
	a.sink.Emit(a.sum)
	if err == nil {
		switch {
		case !a.cfg.Conn.IsZero() && !a.found:
			err = fmt.Errorf("%w %s in %s (%d conversations)", ErrNotFound, a.cfg.Conn, a.cfg.File, a.sum.Conversations)
		case a.sum.Shown == 0 && (a.cfg.Host.IsValid() || a.cfg.Port != 0):
			err = fmt.Errorf("%w: the filter matches none of the %d conversations", ErrNotFound, a.sum.Conversations)
		}
	}
	return a.sum, err
}

// warnings tells, one line each, what was not decoded and how many packets it cost, and the fragments that never
// made a whole packet.
func (a *analyzer) warnings() {
	var lines []string
	for what, n := range a.undecoded {
		lines = append(lines, fmt.Sprintf("%s skipped: %s not decoded", npackets(n), what))
	}
	slices.Sort(lines)
	if a.deep != nil {
		if n := a.deep.incomplete(); n > 0 {
			lines = append(lines, fmt.Sprintf("%s never reassembled (IP fragments missing from the capture)", npackets(uint64(n))))
		}
	}
	for _, l := range lines {
		if a.cfg.Warn != nil {
			fmt.Fprintf(a.cfg.Warn, "tcpshake: warning: %s\n", l)
		}
		a.sink.Emit(event.Warning{Message: l})
	}
}

func npackets(n uint64) string {
	if n == 1 {
		return "1 packet"
	}
	return strconv.FormatUint(n, 10) + " packets"
}

func nsToMs(ns int64) float64 { return float64(ns) / 1e6 }
