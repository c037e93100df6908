package trace

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"tcpshake/craft"
	"tcpshake/probe/observe"
)

// key names one socket: its namespace and 4-tuple.
type key struct {
	netns         uint32
	local, remote netip.AddrPort
}

// maxTracked bounds each table of the tracker; past it the oldest state is
// forgotten, which at worst shows one change less exactly.
const maxTracked = 1 << 17

// kernel is what the tracker asks the kernel's socket tables (sock_diag),
// per network namespace; a fake in tests.
type kernel interface {
	// get reads one socket; exists is false when there is none.
	get(netns uint32, local, remote netip.AddrPort) (r observe.Reading, err error)
	// sockets dumps the sockets in the Linux states of mask.
	sockets(netns uint32, mask uint32) ([]observe.Socket, error)
}

// tracker turns the kernel's records into the changes ss(8) would show.
//
//   - When a closing socket hands over to a timewait socket (tcp_time_wait)
//     the tracepoint reports FIN-WAIT-2 → CLOSE (or CLOSING → CLOSE) for the
//     full socket, though the connection is still in TIME-WAIT (or, for an
//     orphaned socket, FIN-WAIT-2) in the timewait socket, which no
//     tracepoint follows. The tracker asks sock_diag for the 4-tuple at once
//     (the timewait socket is hashed before the tracepoint fires) and shows
//     what it holds, at the tracepoint's time.
//   - A timewait socket in FIN-WAIT-2 moves to TIME-WAIT when the peer's FIN
//     arrives; the kernel then frees that FIN (skb:kfree_skb), which the
//     tracker sees, confirms with sock_diag and shows at the FIN's time.
//   - A timewait socket's end is seen by polling the tracked ones (a dump of
//     TIME-WAIT and FIN-WAIT-2 sockets per namespace every 250 ms, only
//     while one of them is in FIN-WAIT-2 or nearly 60 s in TIME-WAIT).
//   - The tracepoint reports CLOSED → SYN-SENT before connect(2) picks the
//     local port; the change is held until the socket's next record (or a
//     dump of SYN-SENT sockets) names the port.
type tracker struct {
	wall    func(mono uint64) time.Time
	reasons map[uint32]string
	k       kernel
	drops   bool // report drops (otherwise FIN records only feed TIME-WAIT)
	now     func() time.Time

	tw       map[key]twSock     // timewait sockets
	connect  map[uint64]*Change // CLOSED → SYN-SENT waiting for its port, by socket pointer
	lastPoll time.Time
	every    time.Duration
}

// twSock is a timewait socket the tracker follows.
type twSock struct {
	sub   uint8     // its substate: TIME-WAIT or FIN-WAIT-2
	since time.Time // when it entered sub
}

// timeWaitLen is Linux's TIME-WAIT (TCP_TIMEWAIT_LEN, 60 s); a timewait
// socket in TIME-WAIT is polled for its end only once it is this old less
// a second, so a loop of short connections costs no dumps.
const timeWaitLen = 60 * time.Second

func newTracker(wall func(uint64) time.Time, reasons map[uint32]string, k kernel, drops bool) *tracker {
	return &tracker{
		wall: wall, reasons: reasons, k: k, drops: drops, now: time.Now,
		tw: map[key]twSock{}, connect: map[uint64]*Change{}, every: 250 * time.Millisecond,
	}
}

func bound[K comparable, V any](m map[K]V) {
	if len(m) < maxTracked {
		return
	}
	for k := range m {
		delete(m, k)
		if len(m) < maxTracked/2 {
			return
		}
	}
}

// add takes one record and returns the events it makes.
func (t *tracker) add(r raw) []Event {
	switch r.kind {
	case kindState:
		return t.state(r)
	case kindDrop:
		return t.drop(r)
	}
	return nil
}

func (t *tracker) change(r raw, from, to uint8, sock SocketKind, note string) *Change {
	return &Change{
		At: t.wall(r.mono), Netns: r.netns, Local: r.local, Remote: r.remote,
		From: fromLinux(uint32(from)), To: fromLinux(uint32(to)), FromLinux: from, ToLinux: to,
		Socket: sock, Note: note,
	}
}

func (t *tracker) state(r raw) []Event {
	var out []Event
	if c, ok := t.connect[r.sk]; ok {
		delete(t.connect, r.sk)
		if r.local.Port() != 0 {
			c.Local = r.local
		}
		out = append(out, Event{Change: c})
	}
	from, to := uint8(r.old), uint8(r.new)
	if from == to {
		// tcp_close calls tcp_set_state(FIN-WAIT-1) again on a socket
		// shut down for writing: no change.
		return out
	}
	if from == linuxClose && r.local.Port() == 0 && to != linuxClose {
		bound(t.connect)
		t.connect[r.sk] = t.change(r, from, to, Full, "")
		return out
	}
	if to == linuxClose && (from == linuxFinWait2 || from == linuxClosing || from == linuxFinWait1) {
		k := key{r.netns, r.local, r.remote}
		rd, err := t.k.get(r.netns, r.local, r.remote)
		switch {
		case err != nil:
			return append(out, Event{Change: t.change(r, from, to, Full,
				fmt.Sprintf("undecided whether a timewait socket holds the connection now: %v", err))})
		case rd.Exists && (rd.Linux == linuxTimeWait || rd.Linux == linuxFinWait2):
			bound(t.tw)
			t.tw[k] = twSock{rd.Linux, t.wall(r.mono)}
			if rd.Linux == from {
				// An orphaned FIN-WAIT-2 socket: the connection stays
				// in FIN-WAIT-2, now in a timewait socket.
				return out
			}
			return append(out, Event{Change: t.change(r, from, rd.Linux, TimeWait, "")})
		}
	}
	return append(out, Event{Change: t.change(r, from, to, Full, "")})
}

func (t *tracker) drop(r raw) []Event {
	var out []Event
	d := &Drop{
		At: t.wall(r.mono), Netns: r.netns, Src: r.local, Dst: r.remote,
		Flags: craft.Flags(r.flags), Seq: r.seq, Ack: r.ack, Code: r.reason, Reason: t.reasons[r.reason],
	}
	if d.Reason == "" {
		d.Reason = "reason-" + strconv.FormatUint(uint64(r.reason), 10)
	}
	d.Len = max(int(r.iplen)-int(r.iphl)-int(r.doff)*4, 0)
	// The socket the segment was for, as its owner sees it.
	k := key{r.netns, r.remote, r.local}
	if tw, ok := t.tw[k]; ok {
		d.Note = "a timewait socket's segment: it handled it, then freed it"
		if tw.sub == linuxFinWait2 && d.Flags.Has(craft.FIN) {
			if rd, err := t.k.get(k.netns, k.local, k.remote); err == nil && rd.Exists && rd.Linux == linuxTimeWait {
				t.tw[k] = twSock{linuxTimeWait, d.At}
				c := t.change(r, linuxFinWait2, linuxTimeWait, TimeWait, "")
				c.Local, c.Remote = k.local, k.remote
				out = append(out, Event{Change: c})
			}
		}
	}
	if t.drops {
		out = append(out, Event{Drop: d})
	}
	return out
}

// tick does what waits on time: ports of connects still unknown after
// 50 ms, and every 250 ms the timewait sockets' ends.
func (t *tracker) tick() []Event {
	var out []Event
	now := t.now()
	for sk, c := range t.connect {
		if now.Sub(c.At) < 50*time.Millisecond {
			continue
		}
		delete(t.connect, sk)
		socks, err := t.k.sockets(c.Netns, observe.LinuxStates(2))
		if err == nil {
			var found []netip.AddrPort
			for _, s := range socks {
				if s.Remote == c.Remote && s.Local.Addr() == c.Local.Addr() {
					found = append(found, s.Local)
				}
			}
			if len(found) == 1 {
				c.Local = found[0]
			}
		}
		if c.Local.Port() == 0 {
			c.Note = "the local port was not chosen yet when the kernel reported it, and no single SYN-SENT socket to this peer was found later"
		}
		out = append(out, Event{Change: c})
	}
	if now.Sub(t.lastPoll) < t.every || len(t.tw) == 0 {
		return out
	}
	t.lastPoll = now
	// Only namespaces with a timewait socket that may end soon: one in
	// FIN-WAIT-2 (its end is tcp_fin_timeout, per namespace), or in
	// TIME-WAIT for nearly 60 s.
	byNS := map[uint32]bool{}
	for k, tw := range t.tw {
		if tw.sub == linuxFinWait2 || now.Sub(tw.since) >= timeWaitLen-time.Second {
			byNS[k.netns] = true
		}
	}
	for ns := range byNS {
		socks, err := t.k.sockets(ns, observe.LinuxStates(linuxTimeWait, linuxFinWait2))
		if err != nil {
			out = append(out, Event{Warning: fmt.Sprintf("timewait sockets of netns %d not polled: %v", ns, err)})
			continue
		}
		have := make(map[key]uint8, len(socks))
		for _, s := range socks {
			have[key{ns, s.Local, s.Remote}] = s.Linux
		}
		for k, tw := range t.tw {
			if k.netns != ns {
				continue
			}
			st, ok := have[k]
			if ok && st == tw.sub {
				continue
			}
			c := &Change{At: now, Netns: ns, Local: k.local, Remote: k.remote, Socket: TimeWait, Polled: true,
				From: fromLinux(uint32(tw.sub)), FromLinux: tw.sub}
			if ok {
				t.tw[k] = twSock{st, now}
				c.To, c.ToLinux = fromLinux(uint32(st)), st
			} else {
				delete(t.tw, k)
				c.To, c.ToLinux = fromLinux(linuxClose), linuxClose
				c.Note = "the timewait socket ended"
			}
			out = append(out, Event{Change: c})
		}
	}
	return out
}
