package probe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

// SYN cookies (RFC 4987 §3.6, D. J. Bernstein's layout): with --syn-cookie
// the listener keeps nothing for a SYN. Our SYN-ACK's ISN carries in its 32
// bits what a listener would otherwise keep, and the client's ACK brings it
// back as ack − 1:
//
//	bits 31-27  t: the time in 64-second units, mod 32 (so a cookie expires)
//	bits 26-24  an index into cookieMSS: the MSS we agreed to, rounded down
//	bits 23-0   24 bits of HMAC-SHA256(secret, both addresses and ports, the
//	            client's ISN, t, the MSS index): only we can make a cookie
//	            that checks, and its other bits cannot be changed
//
// The window scale, SACK and timestamps the client offered have no room in
// it (Linux hides them in the timestamp option when timestamps are on), so a
// cookie connection goes without them.

// cookieMSS are the MSS values a cookie can name (3 bits).
var cookieMSS = [8]uint16{536, 1220, 1300, 1360, 1400, 1440, 1452, 1460}

// cookieMaxAge is how many 64-second periods old a cookie may be: t now, or
// the one before (a cookie lives 64 to 128 s).
const cookieMaxAge = 1

// CookieJar makes and checks SYN cookies with one secret (crypto/rand).
type CookieJar struct {
	secret [32]byte
	now    func() time.Time
}

// NewCookieJar returns a jar with a fresh secret; now is the clock.
func NewCookieJar(now func() time.Time) *CookieJar {
	j := &CookieJar{now: now}
	rand.Read(j.secret[:]) // crypto/rand's Read never fails (it crashes the program instead)
	return j
}

// counter is t: the time in 64-second units, mod 32.
func (j *CookieJar) counter() uint32 { return uint32(j.now().Unix()/64) % 32 }

func (j *CookieJar) hash(k capture.Key, clientISN craft.Seq, t uint32, idx int) uint32 {
	m := hmac.New(sha256.New, j.secret[:])
	for _, ap := range []struct {
		a []byte
		p uint16
	}{{k.Local.Addr().AsSlice(), k.Local.Port()}, {k.Remote.Addr().AsSlice(), k.Remote.Port()}} {
		m.Write(ap.a)
		m.Write(binary.BigEndian.AppendUint16(nil, ap.p))
	}
	m.Write(binary.BigEndian.AppendUint32(nil, uint32(clientISN)))
	m.Write([]byte{byte(t), byte(idx)})
	return binary.BigEndian.Uint32(m.Sum(nil)) & 0xffffff
}

// cookie is what one cookie says, decoded.
type cookie struct {
	value   craft.Seq
	t, age  uint32
	index   int
	mss     uint16
	hashVal uint32
}

// Make returns the cookie for the connection k (our end first) whose
// client sent ISN clientISN and may receive segments of mss bytes: the MSS
// is rounded down to the table.
func (j *CookieJar) Make(k capture.Key, clientISN craft.Seq, mss uint16) cookie {
	idx := 0
	for i, m := range cookieMSS {
		if m <= mss {
			idx = i
		}
	}
	t := j.counter()
	h := j.hash(k, clientISN, t, idx)
	return cookie{value: craft.Seq(t<<27 | uint32(idx)<<24 | h), t: t, index: idx, mss: cookieMSS[idx], hashVal: h}
}

// Check decodes the cookie an ACK brings back (its ack − 1) and says
// whether it is ours and fresh; why says what failed.
func (j *CookieJar) Check(k capture.Key, clientISN, value craft.Seq) (c cookie, ok bool, why string) {
	v := uint32(value)
	c = cookie{value: value, t: v >> 27, index: int(v>>24) & 7, hashVal: v & 0xffffff}
	c.mss = cookieMSS[c.index]
	c.age = (j.counter() - c.t) % 32
	switch {
	case c.age > cookieMaxAge:
		return c, false, fmt.Sprintf("its time t = %d is %d periods of 64 s old (at most %d are taken)", c.t, c.age, cookieMaxAge)
	case j.hash(k, clientISN, c.t, c.index) != c.hashVal:
		return c, false, "its 24 hash bits do not match the addresses, ports and ISN of this ACK: not a cookie of ours"
	}
	return c, true, ""
}

// bits words a cookie's layout for the steps.
func (c cookie) bits() string {
	return fmt.Sprintf("%d = t %d (bits 31-27: the time in 64 s units, mod 32) · MSS index %d (bits 26-24: %d bytes) · hash %06x (bits 23-0: HMAC-SHA256 of the addresses, ports, the client's ISN, t and the index, with our secret)",
		uint32(c.value), c.t, c.index, c.mss, c.hashVal)
}

// cookieSYN answers a SYN with a SYN cookie and keeps nothing: our end stays
// in LISTEN, no TCB is made, and the SYN-ACK is not queued for
// retransmission (RFC 4987 §3.6).
func (s *Session) cookieSYN(rep capture.Reply, seg *craft.Segment) {
	k := capture.Key{Local: s.cfg.Local, Remote: s.cfg.Remote}
	theirs, said := seg.Options.MSS()
	if !said {
		theirs = craft.DefaultMSSv4
		if s.cfg.Remote.Addr().Is6() {
			theirs = craft.DefaultMSSv6
		}
	}
	ours := s.cfg.SYN.MSS
	if ours == 0 {
		ours = theirs
	}
	c := s.teach.cookies.Make(k, seg.Seq, min(theirs, ours))
	st := event.StepOf(0, 0, "received", seg)
	st.TTL = seg.TTL
	st.Explain = []string{
		fmt.Sprintf("SYN: the client opens with ISN %d; --syn-cookie: we keep nothing for it, no TCB, our end stays in LISTEN (RFC 4987 §3.6)", uint32(seg.Seq)),
		fmt.Sprintf("the client offers MSS %d; the cookie can name %d (the largest of its 8 values not above min(%d, %d))", theirs, c.mss, theirs, ours),
	}
	var lost []string
	if _, ws := seg.Options.WindowScale(); ws {
		lost = append(lost, "window scale")
	}
	if seg.Options.SACKPermitted() {
		lost = append(lost, "SACK")
	}
	if _, _, ts := seg.Options.Timestamps(); ts {
		lost = append(lost, "timestamps")
	}
	if len(lost) > 0 {
		st.Explain = append(st.Explain, fmt.Sprintf("its %s have no room in the cookie: the connection goes without them (Linux hides them in the timestamp option when timestamps are on)", joinWords(lost)))
	}
	st.Explain = append(st.Explain, changes(tcpstate.Change{}, s.peer.Send(seg))...)
	s.states(&st)
	s.emit.received++
	s.emit.now(&st, rep.Time, &rep)

	synAck := craft.Segment{Src: s.cfg.Local, Dst: s.cfg.Remote, Seq: c.value, Ack: seg.Seq.Add(1), Flags: craft.SYN | craft.ACK,
		Window: s.cfg.Window, TTL: s.cfg.TTL, ID: uint16(s.env.Rand()), Options: craft.SYNOptions(craft.SYNOptionSet{MSS: c.mss, WScale: -1})}
	why := []string{
		"SYN-ACK with a SYN cookie as our ISN: " + c.bits(),
		fmt.Sprintf("ack %d = the client's seq %d + 1; nothing is kept and nothing will be retransmitted: if this is lost, the client's repeated SYN gets a new one", uint32(synAck.Ack), uint32(seg.Seq)),
	}
	s.sendStateless(synAck, why, 0)
}

// sendStateless sends a segment that belongs to no TCB of ours (a cookie's
// SYN-ACK, a listener's RST): the model of the client judges it, our end
// does not move; relSeq is its relative seq for the step.
func (s *Session) sendStateless(seg craft.Segment, why []string, relSeq uint32) {
	pkt, err := seg.Marshal()
	if err == nil {
		err = s.env.Sender.Send(pkt, s.cfg.Remote.Addr())
	}
	if err != nil {
		s.fail(fmt.Errorf("session: send %s: %w", seg.Flags.Tcpdump(), err))
		return
	}
	st := event.StepOf(0, 0, "sent", &seg)
	st.RelSeq = relSeq
	if seg.Flags.Has(craft.ACK) {
		st.RelAck = 1
	}
	st.Explain = append(why, changes(tcpstate.Change{}, s.peer.Input(&seg).Change)...)
	s.tallySent(&seg)
	s.states(&st)
	now := s.env.Now()
	s.emit.sentStep(st, seg.Clone(), now)
	s.emit.before(now)
}

// cookieACK checks the cookie an ACK brings back in LISTEN. A good one
// makes the connection now, from the ACK alone, in SYN-RECEIVED, and
// reports false so the ACK itself is then processed (it completes the
// handshake); a bad one is refused with an RST and reported true.
func (s *Session) cookieACK(rep capture.Reply, seg *craft.Segment) bool {
	k := capture.Key{Local: s.cfg.Local, Remote: s.cfg.Remote}
	value, clientISN := seg.Ack.Add(^uint32(0)), seg.Seq.Add(^uint32(0))
	c, ok, why := s.teach.cookies.Check(k, clientISN, value)
	if !ok {
		s.ignored["bad-cookie"]++
		st := event.StepOf(0, 0, "received", seg)
		st.Ignored, st.TTL = true, seg.TTL
		st.Explain = []string{fmt.Sprintf("an ACK in LISTEN: ack − 1 = %d would be our cookie, but %s; a listener answers an ACK with RST <SEQ=SEG.ACK> (RFC 9293 §3.10.7.2)", uint32(value), why)}
		s.states(&st)
		s.emit.received++
		s.emit.now(&st, rep.Time, &rep)
		rst := craft.Segment{Src: s.cfg.Local, Dst: s.cfg.Remote, Seq: seg.Ack, Flags: craft.RST, TTL: s.cfg.TTL, ID: uint16(s.env.Rand())}
		s.rstSent++
		s.sendStateless(rst, []string{fmt.Sprintf("RST with seq %d = the ACK's ack: we know no such connection", uint32(seg.Ack))}, 0)
		return true
	}
	// The TCB, made from this ACK alone: the cookie is our ISN, the
	// client's ISN is its seq − 1, the MSS is the cookie's.
	s.me.State, s.me.Passive = tcpstate.SynReceived, true
	s.me.ISS, s.me.SndUna, s.me.SndNxt = value, value, value.Add(1)
	s.me.IRS, s.me.RcvNxt = clientISN, seg.Seq
	s.me.SndWnd, s.me.SndWL1, s.me.SndWL2, s.me.MaxSndWnd = uint32(seg.Window), seg.Seq, seg.Ack, uint32(seg.Window)
	s.me.RcvWnd = uint32(s.cfg.Window)
	s.opt = negotiated{peerMSS: c.mss, mss: c.mss}
	s.snd.setMSS(uint32(s.maxSegment()))
	s.peer = tcpstate.NewEstablished(seg.Seq, seg.Ack)
	s.peer.ModelWindow, s.peer.RcvWnd = true, uint32(seg.Window)
	s.ackSent = true
	s.noteAt(fmt.Sprintf("the ACK brings our cookie back: ack − 1 = %s; t is %d period(s) of 64 s old and the hash checks, so the connection is made now, from this ACK alone: our ISN %d, the client's %d, MSS %d; "+
		"we: LISTEN → SYN-RECEIVED (a valid SYN cookie)", c.bits(), c.age, uint32(value), uint32(clientISN), c.mss), rep.Time)
	return false
}
