package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"tcpshake/event"
)

// A SYN proxy (nftables/iptables SYNPROXY, a DDoS scrubber) or a tarpit
// answers SYN-ACK for ports where nothing listens, so a SYN scan takes them
// for open. Its tells, from the most to the least telling:
//   - window 0 in the SYN-ACK: Linux's synproxy (nf_synproxy_core.c,
//     synproxy_send_client_synack) and tarpits (LaBrea) announce no receive
//     window until the backend answers; a listening socket offers its buffer;
//   - a SYN-ACK without options: every common stack sends at least MSS;
//   - one ISN on several ports: a stateless responder with a fixed ISN;
//   - every port probed answered SYN-ACK, ports where nothing usually
//     listens among them.
// None of these alone says no service is behind it: a proxy in front of a
// real service relays its data. A port is called "open? a SYN proxy answers
// here" only when such a tell is seen and no data came back.

// allOpenMin is how many ports a host must have been probed on for "every
// port answered" to count as evidence: a host may well have 8 or 20 open
// ports, and a user list just those; 64 at once, where nothing else is
// closed, is a responder, not services.
const allOpenMin = 64

// portEvidence is what one verified port's own SYN-ACK tells.
func portEvidence(v *event.Verify) []string {
	var ev []string
	if v.SynAckWindow != nil && *v.SynAckWindow == 0 {
		ev = append(ev, "its SYN-ACK offered window 0 (a listening socket offers its receive buffer; a SYN proxy has none yet)")
	}
	if v.SynAckWindow != nil && v.SynAckOptions == "" {
		ev = append(ev, "its SYN-ACK carried no options (every common stack sends at least MSS)")
	}
	return ev
}

// verdict judges one port by its handshake, its answer and its own
// evidence; err is what ended the exchange early, if anything did. Only
// window 0 calls a port a SYN proxy's on its own: a SYN-ACK without options
// is odd (an embedded stack may send one) and is shown, not judged.
func verdict(v *event.Verify, err error) {
	v.Evidence = portEvidence(v)
	proxy := v.SynAckWindow != nil && *v.SynAckWindow == 0
	switch {
	case !v.Handshake && v.PeerReset:
		v.Verdict, v.Why = event.VerifyNoHandshake, "the peer answered RST this time: the port closed since it was probed, or the SYN-ACK was not its own"
	case !v.Handshake:
		v.Verdict, v.Why = event.VerifyNoHandshake, "the handshake did not complete"
		if err != nil {
			v.Why += ": " + err.Error()
		}
	case v.Bytes > 0:
		v.Verdict, v.Why = event.VerifyAnswered, "the service answered"
		if len(v.Evidence) > 0 {
			v.Why += ", though its SYN-ACK looks like a SYN proxy's: a proxy in front of a real service"
		}
	case proxy:
		v.Verdict, v.Why = event.VerifySYNProxy, "a SYN proxy answers here"
		v.Evidence = append(v.Evidence, afterHandshake(v, err))
	case v.PeerReset:
		v.Verdict, v.Why = event.VerifyReset, afterHandshake(v, err)
	default:
		v.Verdict, v.Why = event.VerifySilent, afterHandshake(v, err)
	}
}

// afterHandshake says what came after the handshake when no data did.
func afterHandshake(v *event.Verify, err error) string {
	sent := "nothing sent"
	if v.Hello > 0 {
		sent = fmt.Sprintf("after our %d bytes", v.Hello)
	}
	switch {
	case v.PeerReset:
		return fmt.Sprintf("the peer reset the connection without sending data (%s)", sent)
	case v.PeerClosed:
		return fmt.Sprintf("the peer closed without sending data (%s)", sent)
	case errors.Is(err, context.Canceled):
		return fmt.Sprintf("interrupted after %.0f ms, no data (%s)", v.WaitedMs, sent)
	case err != nil:
		return fmt.Sprintf("no data within %.0f ms (%s): %v", v.WaitedMs, sent, err)
	}
	return fmt.Sprintf("no data within %.0f ms (%s)", v.WaitedMs, sent)
}

// judgeHost adds what one host's ports show together: every port probed
// answered SYN-ACK, or one ISN on several ports. Ports of the host that got
// no data become syn-proxy verdicts on that evidence. It returns the notes
// for the host (the evidence, and what the ports not verified showed).
func judgeHost(h VerifyHost, ports []event.Verify) []string {
	var ev, notes []string
	if h.Probed >= allOpenMin && len(h.Open) == h.Probed {
		ev = append(ev, fmt.Sprintf("every one of the %d ports probed on %v answered SYN-ACK", h.Probed, h.Addr))
	}
	isns := map[uint32]int{}
	for i := range ports {
		if ports[i].Addr == h.Addr.String() && ports[i].ISN != nil {
			isns[*ports[i].ISN]++
		}
	}
	for isn, n := range isns {
		if n > 1 {
			ev = append(ev, fmt.Sprintf("%d ports of %v answered with the same ISN %d", n, h.Addr, isn))
		}
	}
	answered := 0
	for i := range ports {
		p := &ports[i]
		if p.Addr != h.Addr.String() {
			continue
		}
		if p.Bytes > 0 {
			answered++
		}
		if len(ev) > 0 && p.Handshake && p.Bytes == 0 && p.Verdict != event.VerifySYNProxy {
			p.Evidence = append(append(p.Evidence, ev...), p.Why)
			p.Verdict, p.Why = event.VerifySYNProxy, "a SYN proxy answers here"
		}
	}
	if len(ev) > 0 {
		what := "open? a SYN proxy or tarpit answers for this host"
		if answered > 0 {
			what = fmt.Sprintf("a SYN proxy or tarpit answers for this host; the %s that sent data are real services behind it", plural(answered, "port"))
		}
		notes = append(notes, fmt.Sprintf("%v: %s: %s", h.Addr, what, strings.Join(ev, "; ")))
	}
	zero := 0
	verified := map[uint16]bool{}
	for _, p := range ports {
		if p.Addr == h.Addr.String() {
			verified[p.Port] = true
		}
	}
	for _, r := range h.Open {
		if !verified[r.Port] && r.Window != nil && *r.Window == 0 {
			zero++
		}
	}
	if zero > 0 {
		notes = append(notes, fmt.Sprintf("%v: %s not verified answered SYN-ACK with window 0, as a SYN proxy does", h.Addr, plural(zero, "open port")))
	}
	return notes
}

// RenderBytes shows the first bytes of an answer in about width
// characters: quoted text (\r, \n, \t and \" escaped) when it is printable,
// else "hex " and the hex digits; "…" marks a cut.
func RenderBytes(b []byte, width int) string {
	if printableText(b) {
		var sb strings.Builder
		sb.WriteByte('"')
		cut, n := false, 1
		for _, r := range string(b) {
			var s string
			switch r {
			case '\r':
				s = `\r`
			case '\n':
				s = `\n`
			case '\t':
				s = `\t`
			case '"', '\\':
				s = `\` + string(r)
			default:
				s = string(r)
			}
			if n+utf8.RuneCountInString(s)+1 > width {
				cut = true
				break
			}
			n += utf8.RuneCountInString(s)
			sb.WriteString(s)
		}
		sb.WriteByte('"')
		if cut {
			sb.WriteString("…")
		}
		return sb.String()
	}
	n := min(len(b), max(width-utf8.RuneCountInString("hex …"), 2)/2)
	s := fmt.Sprintf("hex %x", b[:n])
	if n < len(b) {
		s += "…"
	}
	return s
}

// printableText: valid UTF-8 without control characters but \r \n \t.
func printableText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if (r < 0x20 && r != '\r' && r != '\n' && r != '\t') || r == 0x7f {
			return false
		}
	}
	return true
}
