package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// ListenConfig describes what `tcpshake listen` serves: the port, what each
// connection does once established, and when to stop.
type ListenConfig struct {
	// Local is our address and port; an invalid or unspecified address
	// accepts connections to every address of the host, both families.
	Local netip.AddrPort
	// Session is every connection's template (ISN, window, options,
	// timers); Local and Remote are filled in per connection.
	Session SessionConfig
	Echo    bool   // send back every byte the client sends
	Reply   []byte // send this once, after the client's first data
	Close   CloseMode
	Count   int // connections to serve, then stop (0: 1)
	// Parallel is how many connections are served at once (0: 1); the
	// SYNs of more wait in a backlog of 64.
	Parallel int
	Wait     time.Duration // how long to wait for each next client (0: DefaultListenWait)
	DropSYN  int           // ignore each client's first N SYNs (--drop-syn)
	NoAck    int           // leave each client's first N data segments unacknowledged (--no-ack)
	// SynCookie answers every SYN with a SYN cookie and keeps no state
	// until the client's ACK brings it back (--syn-cookie).
	SynCookie bool
	// Prepare, when set, completes each connection's config from its
	// client (the route back to it: MTU, MSS).
	Prepare func(*SessionConfig)
	// Manual, when set, drives each connection by hand instead of the
	// answer and close above (shell --listen): it gets the session right
	// after the client's SYN, in SYN-RECEIVED, our SYN-ACK not yet sent
	// (Session.SynAck sends it).
	Manual func(ctx context.Context, s *Session) error
	// Stepper, when set, asks before each segment we send (--step); the
	// CLI passes it on in ListenEnv.
	Stepper Stepper
}

// DefaultListenWait bounds the wait for a client: listen stops by itself.
const DefaultListenWait = 60 * time.Second

// ErrNoClient ends a listen during which no client came in time.
var ErrNoClient = errors.New("no client connected")

// A PortGuard holds back the local kernel's RSTs from a whole listening port
// (it has no socket there and would refuse every client).
type PortGuard interface {
	HoldPort(local netip.AddrPort) (release func() error, err error)
}

// ListenEnv is what a listener needs from the outside world: the session
// environment every connection shares (its Matcher must read through
// Listener.Source), and the port's guard.
type ListenEnv struct {
	SessionEnv
	PortGuard PortGuard // nil: no guard
	// Tap, when set, receives every frame to or from the port (for -w),
	// also the SYNs that came before a connection existed.
	Tap func(*capture.Frame)
	// Ready, when set, is called once the port is guarded and clients may
	// connect.
	Ready func()
	// Lane, when set, is the sink of connection n (counted from 1) with the
	// 4-tuple k (our end first), instead of Sink: connections that run at
	// once each tell their story in their own lane.
	Lane func(n int, k capture.Key) event.Sink
}

// A Listener plays the server on one port from raw sockets: it reads every
// segment arriving for the port (Source), opens a passive session for each
// client's SYN and serves it as ListenConfig says, up to Parallel
// connections at once; SYNs of more clients wait in a backlog meanwhile.
type Listener struct {
	cfg ListenConfig
	env ListenEnv // set by Run
	tap atomic.Pointer[func(*capture.Frame)]

	syns    chan capture.Reply
	ready   chan ticket  // Run's leave to begin the next connection in offer (at most one out)
	begun   chan started // a connection offer began with that leave
	mu      sync.Mutex
	owned   map[capture.Key]bool // 4-tuples a session owns (their segments go to its stream)
	streamN int                  // the stream buffer the last connection needed (Run's goroutine, or the ticket holder)
	backlog uint64               // SYNs dropped because the backlog was full
	parser  *craft.Parser
	pkt     craft.Packet
	cookies *CookieJar // --syn-cookie: one secret for the whole listen
}

// backlogSize is how many SYNs wait while a connection is served.
const backlogSize = 64

// A ticket is Run's leave to begin connection n: a slot is free and n is
// within Count. Only one is out at a time, so whoever holds it (Run, or
// offer in the matcher's goroutine) is the only one beginning a
// connection, and the channels that pass it order everything it touches.
type ticket struct {
	n      int
	stream chan capture.Reply // the connection's stream buffer, made while no SYN waits
}

// started is a connection begun with a ticket: its SYN is answered, its
// goroutine not yet started.
type started struct {
	s   *Session
	env SessionEnv
}

// NewListener prepares a listener; nothing happens until Run, and nothing
// arrives until its Source is read.
func NewListener(cfg ListenConfig) *Listener {
	if cfg.Count <= 0 {
		cfg.Count = 1
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 1
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultListenWait
	}
	if cfg.Close == "" {
		cfg.Close = CloseWait
	}
	l := &Listener{cfg: cfg, syns: make(chan capture.Reply, backlogSize),
		ready: make(chan ticket, 1), begun: make(chan started, 1),
		owned: map[capture.Key]bool{}, parser: craft.NewParser()}
	if cfg.SynCookie {
		l.cookies = NewCookieJar(time.Now)
	}
	return l
}

// Source wraps the packet source the listener's matcher reads: every frame
// passes on unchanged, and a SYN for the port from a 4-tuple no session owns
// is also handed to the listener.
func (l *Listener) Source(inner capture.Source) capture.Source {
	return &listenSource{inner: inner, l: l}
}

type listenSource struct {
	inner capture.Source
	l     *Listener
}

func (s *listenSource) Read(f *capture.Frame) error {
	if err := s.inner.Read(f); err != nil {
		return err
	}
	s.l.offer(f)
	return nil
}

func (s *listenSource) Close() error { return s.inner.Close() }

// mine reports whether a TCP segment is to (incoming) or from (outgoing)
// the listening port.
func (l *Listener) mine(seg *craft.Segment, outgoing bool) bool {
	end := seg.Dst
	if outgoing {
		end = seg.Src
	}
	if end.Port() != l.cfg.Local.Port() {
		return false
	}
	a := l.cfg.Local.Addr()
	return !a.IsValid() || a.IsUnspecified() || end.Addr().Unmap() == a.Unmap()
}

// offer looks at one frame in the matcher's goroutine: frames of the port
// go to the tap (-w), and a client's SYN that no session owns is begun at
// once when Run has left a ticket (the SYN-ACK goes out from this
// goroutine, before the matcher reads on: no goroutine is woken on the way),
// or goes to the backlog. It never blocks.
func (l *Listener) offer(f *capture.Frame) {
	if err := l.parser.Parse(f.Data, &l.pkt); err != nil || l.pkt.Kind != craft.KindTCP {
		return
	}
	seg := &l.pkt.Seg
	if !l.mine(seg, f.Outgoing) {
		return
	}
	if tap := l.tap.Load(); tap != nil {
		(*tap)(f)
	}
	if f.Outgoing || !seg.Flags.Has(craft.SYN) || seg.Flags.Has(craft.ACK) || seg.Flags.Has(craft.RST) {
		return
	}
	k := capture.Key{Local: seg.Dst, Remote: seg.Src}
	l.mu.Lock()
	if l.owned[k] {
		l.mu.Unlock()
		return
	}
	var t ticket
	took := false
	select {
	case t = <-l.ready:
		l.owned[k], took = true, true
	default:
	}
	l.mu.Unlock()
	syn := capture.Reply{Packet: craft.Packet{Kind: craft.KindTCP, Seg: seg.Clone()}, Time: f.Time}
	if took {
		s, env := l.begin(syn, t)
		l.begun <- started{s, env} // room: one ticket, one result
		return
	}
	l.queue(syn)
}

// claim marks k owned for a SYN from the backlog (Run holds the ticket);
// false: a session owns it already (the SYN was repeated meanwhile).
func (l *Listener) claim(k capture.Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owned[k] {
		return false
	}
	l.owned[k] = true
	return true
}

// withdraw takes Run's ticket back if offer has not taken it.
func (l *Listener) withdraw() bool {
	select {
	case <-l.ready:
		return true
	default:
		return false
	}
}

// next waits for connection t.n: a SYN from the backlog, begun here, or one
// offer begins with the ticket left for it. It ends with ErrNoClient after
// Wait without a client, or ctx's error.
func (l *Listener) next(ctx context.Context, t ticket) (started, error) {
	wait := time.NewTimer(l.cfg.Wait)
	defer wait.Stop()
	for {
		select { // SYNs that waited in the backlog go first
		case syn := <-l.syns:
			if l.claim(synKey(syn)) {
				s, env := l.begin(syn, t)
				return started{s, env}, nil
			}
			continue
		default:
		}
		l.ready <- t // room: Run holds the only ticket
		var end error
		select {
		case st := <-l.begun:
			return st, nil
		case syn := <-l.syns: // queued just before the ticket was out
			if !l.withdraw() {
				l.queue(syn)
				return <-l.begun, nil
			}
			l.queue(syn)
			continue
		case <-wait.C:
			end = ErrNoClient
		case <-ctx.Done():
			end = ctx.Err()
		}
		if !l.withdraw() {
			return <-l.begun, nil // a client came just now: offer is beginning it
		}
		return started{}, end
	}
}

// queue puts a SYN in the backlog (again, from Run), or counts it dropped
// when the backlog is full.
func (l *Listener) queue(syn capture.Reply) {
	select {
	case l.syns <- syn:
	default:
		l.mu.Lock()
		l.backlog++
		l.mu.Unlock()
	}
}

func synKey(syn capture.Reply) capture.Key {
	return capture.Key{Local: syn.Packet.Seg.Dst, Remote: syn.Packet.Seg.Src}
}

// Ended is how one connection of a listener ended, for its summary: err
// (nil: as asked), the state before any abort, and whether we reset it.
type Ended struct {
	Session *Session
	Sink    event.Sink // where the connection's events went (its lane)
	Err     error
	Before  tcpstate.State
	Reset   bool
}

// Run holds the port's guard (env.PortGuard) and serves Count connections,
// up to Parallel at once, calling done after each (the caller emits the
// summary; done may be called from several goroutines at once). It returns
// when Count connections were served (the first error among them, if any),
// when no client came within Wait (ErrNoClient, once the connections under
// way have ended), or when ctx is done.
func (l *Listener) Run(ctx context.Context, env ListenEnv, done func(Ended)) error {
	l.env = env
	if env.Tap != nil {
		l.tap.Store(&env.Tap)
	}
	var release func() error
	if l.env.PortGuard != nil {
		var err error
		if release, err = l.env.PortGuard.HoldPort(l.cfg.Local); err != nil {
			return fmt.Errorf("kernel-RST guard: %w", err)
		}
	}
	defer func() {
		if release != nil {
			release()
		}
	}()
	if env.Ready != nil {
		env.Ready()
	}
	var (
		wg    sync.WaitGroup // the connections under way
		held  sync.WaitGroup // the connections whose handshake (and own guard rule) is not yet past
		mu    sync.Mutex
		first error
	)
	slots := make(chan struct{}, l.cfg.Parallel)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	stop := func(err error) error {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(first, err)
	}
	for accepted := 0; accepted < l.cfg.Count; accepted++ {
		select {
		case slots <- struct{}{}: // at most Parallel at once; SYNs wait in the backlog meanwhile
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		st, err := l.next(ctx, ticket{n: accepted + 1, stream: make(chan capture.Reply, l.streamN)})
		if errors.Is(err, ErrNoClient) {
			<-slots
			return stop(fmt.Errorf("%w within %v (%d of %d served)", ErrNoClient, l.cfg.Wait, accepted, l.cfg.Count))
		}
		if err != nil {
			<-slots
			wg.Wait()
			return err
		}
		wg.Add(1)
		held.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			e := l.serve(ctx, st.s, st.env, held.Done)
			if done != nil {
				done(e)
			}
			if e.Err != nil {
				fail(e.Err)
			}
		}()
	}
	// Every connection is accepted: once each holds its own 4-tuple (its
	// handshake is past), the port's guard goes, and new clients are
	// refused by our kernel as at a closed port.
	held.Wait()
	if release != nil {
		release()
		release = nil
	}
	return stop(nil)
}

func (l *Listener) owns(k capture.Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.owned[k]
}

// Backlogged is how many SYNs were dropped because the backlog was full.
func (l *Listener) Backlogged() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.backlog
}

// begin opens connection t.n from its first SYN and answers it, in the
// goroutine that holds the ticket (offer's: the matcher's, or Run's): the
// SYN-ACK leaves before any goroutine of the connection is scheduled, and
// the connection's stream buffer was made beforehand. The session's own
// goroutine (serve) takes over once begin returns: until then nothing else
// touches it, so its loop still owns all of its I/O from then on.
func (l *Listener) begin(syn capture.Reply, t ticket) (*Session, SessionEnv) {
	k := synKey(syn)
	cfg := l.cfg.Session
	cfg.Local, cfg.Remote = k.Local, k.Remote
	if cfg.Host == "" {
		cfg.Host = k.Remote.Addr().String()
	}
	if l.cfg.Prepare != nil {
		l.cfg.Prepare(&cfg) // one ticket holder at a time: never called concurrently
	}
	env := l.env.SessionEnv
	if l.env.Lane != nil {
		env.Sink = l.env.Lane(t.n, k)
	}
	s := NewPassiveSession(cfg, env, Teaching{DropSYN: l.cfg.DropSYN, NoAck: l.cfg.NoAck, Cookies: l.cookies, Manual: l.cfg.Manual != nil})
	s.teach.stream = t.stream
	l.streamN = s.streamBuffer()
	s.teach.beginErr = s.AcceptSYN(syn)
	return s, env
}

// serve runs a connection begun by begin to its end; Run has marked its
// 4-tuple owned. accepted is called once the handshake is past (the
// session holds its own 4-tuple, or has failed).
func (l *Listener) serve(ctx context.Context, s *Session, env SessionEnv, accepted func()) Ended {
	k := capture.Key{Local: s.cfg.Local, Remote: s.cfg.Remote}
	defer func() {
		l.mu.Lock()
		delete(l.owned, k)
		l.mu.Unlock()
	}()
	err := s.teach.beginErr
	if err == nil {
		err = s.Established(ctx)
	}
	accepted()
	switch {
	case err == nil && l.cfg.Manual != nil:
		err = l.cfg.Manual(ctx, s)
	case err == nil:
		err = l.converse(ctx, s)
	}
	e := Ended{Session: s, Err: err, Before: s.State(), Sink: env.Sink}
	if err != nil {
		e.Reset = s.Abort(err)
	}
	s.End()
	return e
}

// converse is the established connection: read the client's data, answer
// it (--echo, --reply), then close as --close says.
func (l *Listener) converse(ctx context.Context, s *Session) error {
	replied := false
	have := 0
	for {
		err := s.WaitData(ctx, have)
		if errors.Is(err, errDeadline) {
			what := "no data"
			if have > 0 {
				what = "nothing more"
			}
			s.note(fmt.Sprintf("the client sent %s within %v (--timeout)", what, s.cfg.Timeout))
			break
		}
		if err != nil {
			return err
		}
		got := s.Received()
		if len(got) > have {
			if l.cfg.Echo && s.canSend() {
				if err := s.Write(ctx, got[have:]); err != nil {
					return err
				}
			}
			if len(l.cfg.Reply) > 0 && !replied && s.canSend() {
				if err := s.Write(ctx, l.cfg.Reply); err != nil {
					return err
				}
			}
			replied = true
			have = len(got)
		}
		if s.me.FinRcvd || l.cfg.Close != CloseWait || !l.cfg.Echo {
			break // we answer once and close, or the client closed: only --echo --close wait keeps echoing
		}
	}
	return s.Close(ctx, l.cfg.Close)
}

// WaitData runs the connection until the peer's data goes beyond have
// bytes, its FIN arrives, or the timeout passes (an error wrapping
// errDeadline, which converse takes as "nothing more").
func (s *Session) WaitData(ctx context.Context, have int) error {
	return s.run(ctx, until{
		done:     func() bool { return len(s.me.Delivered) > have || s.me.FinRcvd },
		deadline: s.env.Now().Add(s.cfg.Timeout),
	})
}

// ListenNote words a listener's start for the user (the CLI prints it).
func ListenNote(cfg ListenConfig) string {
	where := cfg.Local.String()
	if a := cfg.Local.Addr(); !a.IsValid() || a.IsUnspecified() {
		where = fmt.Sprintf("port %d on every address", cfg.Local.Port())
	}
	return fmt.Sprintf("listening on %s from raw sockets (LISTEN); waiting up to %v for %s", where, cfg.Wait, plural(max(cfg.Count, 1), "connection"))
}
