package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/craft"
	"tcpshake/probe/observe"
)

// fakeKernel answers sock_diag questions from a table the test sets.
type fakeKernel struct {
	socks map[key]uint8 // Linux state of each socket
	err   error
	gets  int
	dumps int
}

func (f *fakeKernel) get(ns uint32, local, remote netip.AddrPort) (observe.Reading, error) {
	f.gets++
	if f.err != nil {
		return observe.Reading{Err: f.err}, f.err
	}
	st, ok := f.socks[key{ns, local, remote}]
	if !ok {
		return observe.Reading{}, nil
	}
	return observe.FromLinux(st, time.Time{}), nil
}

func (f *fakeKernel) sockets(ns uint32, mask uint32) ([]observe.Socket, error) {
	f.dumps++
	if f.err != nil {
		return nil, f.err
	}
	var out []observe.Socket
	for k, st := range f.socks {
		if k.netns == ns && mask&(1<<st) != 0 {
			out = append(out, observe.Socket{Local: k.local, Remote: k.remote, Linux: st})
		}
	}
	return out, nil
}

var (
	cli = netip.MustParseAddrPort("198.51.100.1:40000")
	srv = netip.MustParseAddrPort("198.51.100.2:80")
	t0  = time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
)

const ns = 4026532000

func rec(mono uint64, sk uint64, from, to uint32) raw {
	return raw{mono: mono, sk: sk, netns: ns, family: afInet, kind: kindState, old: from, new: to, local: cli, remote: srv}
}

func newTestTracker(k kernel, drops bool) (*tracker, *time.Time) {
	now := t0
	tr := newTracker(func(m uint64) time.Time { return t0.Add(time.Duration(m)) }, map[uint32]string{3: "NO_SOCKET", 2: "NOT_SPECIFIED"}, k, drops)
	tr.now = func() time.Time { return now }
	return tr, &now
}

// lines renders events compactly: "µs local→remote FROM→TO [timewait] [polled] note".
func lines(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		switch {
		case ev.Change != nil:
			c := ev.Change
			s := fmt.Sprintf("%d %v→%v %v→%v", c.At.Sub(t0).Microseconds(), c.Local, c.Remote, c.From, c.To)
			if c.Socket == TimeWait {
				s += " timewait"
			}
			if c.Polled {
				s += " polled"
			}
			if c.Note != "" {
				s += " " + c.Note
			}
			out = append(out, s)
		case ev.Drop != nil:
			d := ev.Drop
			out = append(out, fmt.Sprintf("%d drop %v→%v %s %s len=%d %s", d.At.Sub(t0).Microseconds(), d.Src, d.Dst, d.Flags, d.Reason, d.Len, d.Note))
		default:
			out = append(out, "warning "+ev.Warning)
		}
	}
	return out
}

func TestTrackerActiveClose(t *testing.T) {
	k := &fakeKernel{socks: map[key]uint8{}}
	tr, now := newTestTracker(k, false)
	var got []Event
	us := uint64(time.Microsecond)
	// connect: the port is not chosen when the tracepoint first fires.
	first := rec(0, 1, linuxClose, 2)
	first.local = netip.AddrPortFrom(cli.Addr(), 0)
	got = append(got, tr.add(first)...)
	if len(got) != 0 {
		t.Fatalf("CLOSED → SYN-SENT with port 0 shown at once: %v", lines(got))
	}
	got = append(got, tr.add(rec(100*us, 1, 2, 1))...)
	got = append(got, tr.add(rec(200*us, 1, 1, linuxFinWait1))...)
	got = append(got, tr.add(rec(250*us, 1, linuxFinWait1, linuxFinWait1))...) // tcp_close after shutdown
	got = append(got, tr.add(rec(300*us, 1, linuxFinWait1, linuxFinWait2))...)
	// tcp_time_wait: the timewait socket is hashed, then the full socket closes.
	k.socks[key{ns, cli, srv}] = linuxTimeWait
	got = append(got, tr.add(rec(400*us, 1, linuxFinWait2, linuxClose))...)
	// The timewait socket ends 60 s later; a poll sees it.
	*now = t0.Add(30 * time.Second)
	got = append(got, tr.tick()...)
	delete(k.socks, key{ns, cli, srv})
	*now = t0.Add(60 * time.Second)
	got = append(got, tr.tick()...)
	*now = t0.Add(61 * time.Second)
	got = append(got, tr.tick()...)
	want := []string{
		"0 198.51.100.1:40000→198.51.100.2:80 CLOSED→SYN-SENT",
		"100 198.51.100.1:40000→198.51.100.2:80 SYN-SENT→ESTABLISHED",
		"200 198.51.100.1:40000→198.51.100.2:80 ESTABLISHED→FIN-WAIT-1",
		"300 198.51.100.1:40000→198.51.100.2:80 FIN-WAIT-1→FIN-WAIT-2",
		"400 198.51.100.1:40000→198.51.100.2:80 FIN-WAIT-2→TIME-WAIT timewait",
		"60000000 198.51.100.1:40000→198.51.100.2:80 TIME-WAIT→CLOSED timewait polled the timewait socket ended",
	}
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if k.dumps != 1 {
		t.Errorf("%d dumps, want 1 (none while TIME-WAIT is young, none after it ended)", k.dumps)
	}
}

func TestTrackerOrphanFinWait2(t *testing.T) {
	k := &fakeKernel{socks: map[key]uint8{}}
	tr, _ := newTestTracker(k, false)
	us := uint64(time.Microsecond)
	var got []Event
	got = append(got, tr.add(rec(0, 1, linuxFinWait1, linuxFinWait2))...)
	// An orphaned socket goes to a timewait socket in FIN-WAIT-2 at once.
	k.socks[key{ns, cli, srv}] = linuxFinWait2
	got = append(got, tr.add(rec(10*us, 1, linuxFinWait2, linuxClose))...)
	// The peer's FIN: the timewait socket moves to TIME-WAIT, and the
	// kernel frees the FIN (reason NOT_SPECIFIED).
	k.socks[key{ns, cli, srv}] = linuxTimeWait
	fin := raw{mono: 5000 * us, netns: ns, family: afInet, kind: kindDrop, local: srv, remote: cli,
		flags: uint8(craft.FIN | craft.ACK), reason: 2, iplen: 40, iphl: 20, doff: 5}
	got = append(got, tr.add(fin)...)
	want := []string{
		"0 198.51.100.1:40000→198.51.100.2:80 FIN-WAIT-1→FIN-WAIT-2",
		"5000 198.51.100.1:40000→198.51.100.2:80 FIN-WAIT-2→TIME-WAIT timewait",
	}
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestTrackerCloseWithoutTimeWait(t *testing.T) {
	k := &fakeKernel{socks: map[key]uint8{}}
	tr, _ := newTestTracker(k, false)
	// A reset in FIN-WAIT-2: no timewait socket, the connection is CLOSED.
	got := lines(tr.add(rec(0, 1, linuxFinWait2, linuxClose)))
	want := []string{"0 198.51.100.1:40000→198.51.100.2:80 FIN-WAIT-2→CLOSED"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// sock_diag failing: the change is shown as the tracepoint says, and
	// undecided.
	k.err = errors.New("permission denied")
	got = lines(tr.add(rec(0, 2, linuxClosing, linuxClose)))
	if len(got) != 1 || !strings.Contains(got[0], "CLOSING→CLOSED undecided whether a timewait socket holds the connection now: permission denied") {
		t.Errorf("got %q", got)
	}
	// LAST-ACK → CLOSED needs no question.
	gets := k.gets
	tr.add(rec(0, 3, 9, linuxClose))
	if k.gets != gets {
		t.Errorf("LAST-ACK → CLOSED asked sock_diag")
	}
}

func TestTrackerConnectPortFromDump(t *testing.T) {
	// A SYN that draws no answer: the next record comes only at the
	// timeout, so after 50 ms a dump of SYN-SENT sockets names the port.
	k := &fakeKernel{socks: map[key]uint8{{ns, cli, srv}: 2}}
	tr, now := newTestTracker(k, false)
	first := rec(0, 1, linuxClose, 2)
	first.local = netip.AddrPortFrom(cli.Addr(), 0)
	if got := tr.add(first); len(got) != 0 {
		t.Fatalf("shown at once: %v", lines(got))
	}
	*now = t0.Add(10 * time.Millisecond)
	if got := tr.tick(); len(got) != 0 {
		t.Fatalf("shown after 10 ms: %v", lines(got))
	}
	*now = t0.Add(60 * time.Millisecond)
	want := []string{"0 198.51.100.1:40000→198.51.100.2:80 CLOSED→SYN-SENT"}
	if diff := cmp.Diff(want, lines(tr.tick())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestTrackerDrops(t *testing.T) {
	k := &fakeKernel{socks: map[key]uint8{}}
	tr, _ := newTestTracker(k, true)
	d := raw{mono: 7000, netns: ns, family: afInet, kind: kindDrop, local: cli, remote: srv,
		flags: uint8(craft.SYN), reason: 3, seq: 100, iplen: 60, iphl: 20, doff: 10}
	want := []string{"7 drop 198.51.100.1:40000→198.51.100.2:80 S NO_SOCKET len=0 "}
	if diff := cmp.Diff(want, lines(tr.add(d))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	d.reason, d.iplen, d.doff = 99, 50, 5
	got := lines(tr.add(d))
	if len(got) != 1 || !strings.Contains(got[0], "reason-99 len=10") {
		t.Errorf("unknown reason and data length: %q", got)
	}
	// Without drops, records only feed TIME-WAIT.
	tr2, _ := newTestTracker(k, false)
	if got := tr2.add(d); len(got) != 0 {
		t.Errorf("drop shown without drops: %v", lines(got))
	}
}

func TestRawRoundTrip(t *testing.T) {
	for _, r := range []raw{
		{mono: 1, sk: 2, netns: 3, family: afInet, kind: kindState, old: 2, new: 1, local: cli, remote: srv},
		{mono: 1, netns: 3, family: afInet6, kind: kindDrop, local: netip.MustParseAddrPort("[2001:db8::1]:5"),
			remote: netip.MustParseAddrPort("[2001:db8::2]:7"), reason: 5, seq: 1 << 31, ack: 7, flags: 0x12, doff: 8, iplen: 52},
	} {
		got, err := decode(encode(r))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, got, cmp.AllowUnexported(raw{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	if _, err := decode(make([]byte, 10)); err == nil {
		t.Error("short record decoded")
	}
	b := encode(raw{family: 1})
	if _, err := decode(b); err == nil {
		t.Error("AF_UNIX record decoded")
	}
}
