package trace

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// A Renderer writes events as text lines (one per change or drop, times in
// seconds since the first) or as JSON lines. It is not safe for concurrent
// use.
type Renderer struct {
	w    *bufio.Writer
	json bool
	// ShowNetns adds the namespace's name to each text line (when more
	// than one namespace is watched).
	ShowNetns bool
	// Name names a namespace inode.
	Name func(uint32) string
	t0   time.Time
}

// NewRenderer writes to w, as JSON lines when asJSON.
func NewRenderer(w io.Writer, asJSON bool, name func(uint32) string) *Renderer {
	return &Renderer{w: bufio.NewWriter(w), json: asJSON, Name: name}
}

type jsonChange struct {
	Type       string `json:"type"`
	Time       string `json:"time"`
	TUs        int64  `json:"t_us"`
	Netns      string `json:"netns"`
	NetnsInode uint32 `json:"netns_inode"`
	Local      string `json:"local"`
	Remote     string `json:"remote"`
	From       string `json:"from"`
	To         string `json:"to"`
	Socket     string `json:"socket"`
	Polled     bool   `json:"polled,omitempty"`
	Note       string `json:"note,omitempty"`
}

type jsonDrop struct {
	Type       string `json:"type"`
	Time       string `json:"time"`
	TUs        int64  `json:"t_us"`
	Netns      string `json:"netns"`
	NetnsInode uint32 `json:"netns_inode"`
	Src        string `json:"src"`
	Dst        string `json:"dst"`
	Flags      string `json:"flags"`
	Seq        uint32 `json:"seq"`
	Ack        uint32 `json:"ack"`
	Len        int    `json:"len"`
	Reason     string `json:"reason"`
	Code       uint32 `json:"reason_code"`
	Note       string `json:"note,omitempty"`
}

type jsonWarning struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (r *Renderer) rel(at time.Time) time.Duration {
	if r.t0.IsZero() {
		r.t0 = at
	}
	return at.Sub(r.t0)
}

// Event writes one event and flushes it.
func (r *Renderer) Event(ev Event) error {
	switch {
	case ev.Change != nil:
		r.change(ev.Change)
	case ev.Drop != nil:
		r.drop(ev.Drop)
	case ev.Warning != "":
		r.Warning(ev.Warning)
	}
	return r.w.Flush()
}

// Warning writes a warning (in text: a line starting with "warning:").
func (r *Renderer) Warning(msg string) {
	if r.json {
		r.encode(jsonWarning{Type: "warning", Message: msg})
		return
	}
	fmt.Fprintf(r.w, "warning: %s\n", msg)
}

func (r *Renderer) encode(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and numbers
	}
	r.w.Write(append(b, '\n'))
}

func (r *Renderer) prefix(at time.Time, ns uint32) {
	d := r.rel(at)
	fmt.Fprintf(r.w, "%d.%06d  ", int64(d/time.Second), int64(d%time.Second/time.Microsecond))
	if r.ShowNetns {
		fmt.Fprintf(r.w, "%-16s ", r.Name(ns))
	}
}

func (r *Renderer) change(c *Change) {
	if r.json {
		r.encode(jsonChange{
			Type: "change", Time: c.At.UTC().Format(time.RFC3339Nano), TUs: r.rel(c.At).Microseconds(),
			Netns: r.Name(c.Netns), NetnsInode: c.Netns, Local: c.Local.String(), Remote: c.Remote.String(),
			From: c.From.String(), To: c.To.String(), Socket: c.Socket.String(), Polled: c.Polled, Note: c.Note,
		})
		return
	}
	r.prefix(c.At, c.Netns)
	fmt.Fprintf(r.w, "%s → %s  %s → %s", c.Local, c.Remote, c.From, c.To)
	var notes []string
	if c.Socket == TimeWait {
		notes = append(notes, "timewait socket")
	}
	if c.Polled {
		notes = append(notes, "seen by a poll")
	}
	if c.Note != "" {
		notes = append(notes, c.Note)
	}
	for i, n := range notes {
		if i == 0 {
			fmt.Fprintf(r.w, "  (%s", n)
		} else {
			fmt.Fprintf(r.w, "; %s", n)
		}
	}
	if len(notes) > 0 {
		r.w.WriteString(")")
	}
	r.w.WriteString("\n")
}

func (r *Renderer) drop(d *Drop) {
	if r.json {
		r.encode(jsonDrop{
			Type: "drop", Time: d.At.UTC().Format(time.RFC3339Nano), TUs: r.rel(d.At).Microseconds(),
			Netns: r.Name(d.Netns), NetnsInode: d.Netns, Src: d.Src.String(), Dst: d.Dst.String(),
			Flags: d.Flags.String(), Seq: d.Seq, Ack: d.Ack, Len: d.Len, Reason: d.Reason, Code: d.Code, Note: d.Note,
		})
		return
	}
	r.prefix(d.At, d.Netns)
	fmt.Fprintf(r.w, "%s → %s  dropped [%s] seq %d ack %d len %d: %s", d.Src, d.Dst, d.Flags, d.Seq, d.Ack, d.Len, d.Reason)
	if d.Note != "" {
		fmt.Fprintf(r.w, "  (%s)", d.Note)
	}
	r.w.WriteString("\n")
}
