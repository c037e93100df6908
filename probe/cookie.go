package probe

import (
	"context"
	"fmt"
	"strings"

	"tcpshake/craft"
)

// IRS is the peer's initial sequence number (its SYN's seq).
func (s *Session) IRS() craft.Seq { return s.me.IRS }

// CookieSign is what the options of a peer's SYN-ACKs say about SYN cookies
// when its sockets cannot be read.
type CookieSign uint8

const (
	// CookieUndecided: the answers cannot tell (see CookieEvidence.How).
	CookieUndecided CookieSign = iota
	// CookieSeen: the SYN-ACKs carry the signature of a SYN cookie.
	CookieSeen
	// CookieNoSign: the listener kept options that a cookie without
	// timestamps has no room for. Not a proof that it never sends cookies:
	// a stack may code them into the ISN itself (FreeBSD's syncookies do),
	// or send cookies only when its queue overflows.
	CookieNoSign
)

// CookieEvidence is the verdict of CookieFromOptions, with its reason in
// words.
type CookieEvidence struct {
	Sign CookieSign
	How  string
}

// CookieFromOptions compares the SYN-ACK to a SYN offering SACK-permitted,
// window scale and timestamps (withTS) with the SYN-ACK to the same SYN
// without timestamps (noTS). A SYN cookie keeps no state, so the options the
// listener agreed to must come back inside the final ACK: Linux codes window
// scale, SACK and ECN into the low 6 bits of the SYN-ACK's TSval, which the
// ACK echoes (net/ipv4/syncookies.c, cookie_init_timestamp), and for a SYN
// without timestamps it forgets them (tcp_conn_request: "if (want_cookie &&
// !tmp_opt.saw_tstamp) tcp_clear_options"), answering with MSS only. A
// listener that gives SACK and window scale with timestamps but not without
// them is answering with cookies (RFC 4987 §3.6).
func CookieFromOptions(withTS, noTS *craft.Segment) CookieEvidence {
	synAck := func(s *craft.Segment) bool {
		return s != nil && s.Flags.Has(craft.SYN) && s.Flags.Has(craft.ACK) && !s.Flags.Has(craft.RST)
	}
	if !synAck(withTS) || !synAck(noTS) {
		return CookieEvidence{How: "a SYN got no SYN-ACK, so the options cannot be compared"}
	}
	a, b := withTS.Options, noTS.Options
	_, _, aTS := a.Timestamps()
	_, aWS := a.WindowScale()
	_, bWS := b.WindowScale()
	aSACK, bSACK := a.SACKPermitted(), b.SACKPermitted()
	took := func(ws, sack bool) string {
		var p []string
		if ws {
			p = append(p, "window scale")
		}
		if sack {
			p = append(p, "SACK-permitted")
		}
		return strings.Join(p, " and ")
	}
	switch {
	case !aWS && !aSACK:
		return CookieEvidence{How: "its SYN-ACK carries neither window scale nor SACK-permitted even with timestamps, so a cookie that forgets them cannot be told from a stack that never sends them"}
	case !aTS:
		return CookieEvidence{How: "its SYN-ACK carries no timestamps, so a cookie kept in the timestamp cannot be looked for"}
	case (aWS && bWS) || (aSACK && bSACK):
		return CookieEvidence{Sign: CookieNoSign, How: fmt.Sprintf("to a SYN without timestamps its SYN-ACK still carried %s: a cookie without timestamps has no room for them, so the listener kept state for this half-open connection (it may still send cookies when its queue overflows)", took(aWS && bWS, aSACK && bSACK))}
	default:
		return CookieEvidence{Sign: CookieSeen, How: fmt.Sprintf("to a SYN with timestamps its SYN-ACK carried %s, to the same SYN without timestamps it carried %s: the listener answers with SYN cookies and keeps these options in the cookie's timestamp, so without one it forgets them (RFC 4987 §3.6)", took(aWS, aSACK), orNone(b.String()))}
	}
}

// CheckCookies sends the two SYNs of CookieFromOptions to cfg.Session.Remote
// (each from a fresh reserved port, each SYN-ACK reset at once, so nothing
// stays half-open on the peer) and compares their answers.
func CheckCookies(ctx context.Context, cfg ProfileConfig, env SessionEnv) (CookieEvidence, error) {
	cfg.defaults()
	p := &profiler{cfg: cfg, env: env}
	withTS := p.allOptions()
	noTS := p.synOptions(false)
	var answers [2]*craft.Segment
	for i, opts := range []craft.Options{withTS, noTS} {
		local, release, err := p.tuple(0, cfg.Session.Remote.Port())
		if err != nil {
			return CookieEvidence{}, err
		}
		a, err := p.syn(ctx, local, cfg.Session.Remote.Port(), craft.Seq(env.Rand()), opts)
		release()
		if err != nil {
			return CookieEvidence{}, err
		}
		if a != nil {
			answers[i] = &a.seg
		}
	}
	return CookieFromOptions(answers[0], answers[1]), nil
}

// synOptions offers MSS, SACK-permitted and window scale, and timestamps
// when ts.
func (p *profiler) synOptions(ts bool) craft.Options {
	mss := p.cfg.Session.SYN.MSS
	if mss == 0 {
		mss = 1460
	}
	return craft.SYNOptions(craft.SYNOptionSet{MSS: mss, SACKOK: true, Timestamp: ts, TSVal: p.env.Rand(), WScale: 7})
}
