package analyze

import (
	"fmt"
	"io"
	"strconv"

	"tcpshake/event"
)

// Table renders analyze's events for people: the conversations as a table streamed one row per conversation
// (fixed column widths, so nothing is buffered), a story's steps through event.Text, and the summary.
type Table struct {
	W       io.Writer
	Verbose bool // every explanation of every step, not only the first of each kind

	text   *event.Text
	header bool
	buf    []byte
}

// NewTable returns a Table writing to w.
func NewTable(w io.Writer, verbose bool) *Table {
	return &Table{W: w, Verbose: verbose, text: &event.Text{W: w, Verbose: verbose}}
}

// columns are the table's headers with their widths; a negative width left-aligns. The endpoint columns fit IPv4
// and grow for IPv6 (rows are streamed, so widths cannot adapt).
var columns = [...]struct {
	name  string
	width int
}{
	{"#", 5}, {"CLIENT", -21}, {"SERVER", -21}, {"C>S PKT/BYTES", 13}, {"S>C PKT/BYTES", 13},
	{"START", 9}, {"DURATION", 9}, {"OPENED", -17}, {"CLOSED", -18}, {"RETRANS", 7}, {"OOO", 5},
}

// Emit implements event.Sink.
func (t *Table) Emit(e event.Event) {
	switch e := e.(type) {
	case event.Connection:
		t.row(e)
	case event.CaptureSummary:
		t.summary(e)
	case event.Warning:
		// Config.Warn already put it on standard error.
	default:
		t.text.Emit(e)
	}
}

// row writes one conversation. It formats into a reused buffer without allocating: a capture can hold millions
// of conversations.
func (t *Table) row(e event.Connection) {
	b := t.buf[:0]
	if !t.header {
		t.header = true
		for i, c := range columns {
			b = cell(b, i, c.name)
		}
		b = append(b, '\n')
	}
	var n [48]byte
	b = cellNum(b, 0, strconv.AppendInt(n[:0], int64(e.Index), 10))
	b = cell(b, 1, e.Client)
	b = cell(b, 2, e.Server)
	b = cellNum(b, 3, pair(n[:0], e.PacketsToServer, e.BytesToServer))
	b = cellNum(b, 4, pair(n[:0], e.PacketsToClient, e.BytesToClient))
	b = cellNum(b, 5, appendSeconds(n[:0], e.StartMs))
	b = cellNum(b, 6, appendSeconds(n[:0], e.DurationMs))
	b = cell(b, 7, e.Opened)
	b = cell(b, 8, e.Closed)
	b = cellNum(b, 9, strconv.AppendUint(n[:0], e.Retransmissions, 10))
	b = cellNum(b, 10, strconv.AppendUint(n[:0], e.OutOfOrder, 10))
	b = append(b, '\n')
	if e.Segments != nil {
		b = append(b, "segments: "+e.Segments.Words("from the client", "from the server")+"\n"...)
	}
	_, _ = t.W.Write(b)
	t.buf = b
}

// cell appends column i's value padded to its width, with two spaces before every column but the first.
func cell(b []byte, i int, v string) []byte {
	if i > 0 {
		b = append(b, ' ', ' ')
	}
	w := columns[i].width
	pad := max(0, abs(w)-len(v))
	if w > 0 {
		b = append(b, spaces[:pad]...)
	}
	b = append(b, v...)
	if w < 0 && i < len(columns)-1 {
		b = append(b, spaces[:pad]...)
	}
	return b
}

// cellNum is cell for a value formatted into a scratch buffer.
func cellNum(b []byte, i int, v []byte) []byte {
	if i > 0 {
		b = append(b, ' ', ' ')
	}
	if pad := columns[i].width - len(v); pad > 0 {
		b = append(b, spaces[:pad]...)
	}
	return append(b, v...)
}

const spaces = "                                "

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// pair appends "packets/bytes".
func pair(b []byte, p, n uint64) []byte {
	b = strconv.AppendUint(b, p, 10)
	b = append(b, '/')
	return strconv.AppendUint(b, n, 10)
}

// appendSeconds appends milliseconds as seconds with microsecond precision: "0.002653s".
func appendSeconds(b []byte, ms float64) []byte {
	return append(strconv.AppendFloat(b, ms/1000, 'f', 6, 64), 's')
}

func (t *Table) summary(e event.CaptureSummary) {
	fmt.Fprintf(t.W, "\n--- %s: %s, %s ---\n", e.File, e.Format, e.LinkType)
	fmt.Fprintf(t.W, "%d packets in %s: %d TCP, %d ICMP errors about TCP, %d other, %d undecodable\n",
		e.Packets, fmtSeconds(e.DurationMs), e.TCPPackets, e.ICMPErrors, e.Skipped, e.Undecodable)
	fmt.Fprintf(t.W, "%d TCP conversations, %d shown\n", e.Conversations, e.Shown)
	if e.Error != "" {
		fmt.Fprintf(t.W, "stopped early: %s (the results above are complete up to there)\n", e.Error)
	}
}

// fmtSeconds prints milliseconds as seconds with microsecond precision.
func fmtSeconds(ms float64) string {
	return strconv.FormatFloat(ms/1000, 'f', 6, 64) + "s"
}
