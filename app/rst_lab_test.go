//go:build linux

package app_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
	"tcpshake/probe"
)

// rstLabObserved is the state the server's kernel must show before and after
// each scenario against the Linux kernel; with SYN cookies (tcp_syncookies=2)
// the scenarios that stop in SYN-RECEIVED find no request socket.
func rstLabObserved(cookies bool) map[string][2]string {
	m := map[string][2]string{
		"closed-port":         {"CLOSED", "CLOSED"},
		"ack-to-listener":     {"CLOSED", "CLOSED"},
		"exact-rst":           {"ESTABLISHED", "CLOSED"},
		"in-window-rst":       {"ESTABLISHED", "ESTABLISHED"},
		"out-of-window-rst":   {"ESTABLISHED", "ESTABLISHED"},
		"syn-in-established":  {"ESTABLISHED", "ESTABLISHED"},
		"rst-in-syn-received": {"SYN-RECEIVED", "CLOSED"},
		"data-after-reset":    {"CLOSED", "CLOSED"},
		"ack-of-unsent-data":  {"ESTABLISHED", "ESTABLISHED"},
		"challenge-ack-burst": {"ESTABLISHED", "ESTABLISHED"},
		"fin-in-syn-received": {"SYN-RECEIVED", "CLOSE-WAIT"},
	}
	if cookies {
		m["rst-in-syn-received"] = [2]string{"CLOSED", "CLOSED"}
		m["fin-in-syn-received"] = [2]string{"CLOSED", "CLOSE-WAIT"}
	}
	return m
}

// rstLabVerdicts is what every scenario must say against the lab's Linux
// kernel: conforms, except the challenge-ACK burst, permitted (Linux sends
// one per 500 ms per socket, net.ipv4.tcp_invalid_ratelimit: 3 for the 25
// RSTs of 1.15 s, a limit other than RFC 5961 §7's example), and, with SYN
// cookies, rst-in-syn-received, inconclusive (no request socket: no
// SYN-RECEIVED connection to test), seen in the kernel or, unobserved, in the
// behaviour (the handshake's final ACK still opens a connection after the
// RST).
func rstLabVerdicts(cookies, observe bool) map[string]string {
	m := map[string]string{}
	for _, n := range probe.Scenarios() {
		m[n] = probe.Conforms
	}
	m["challenge-ack-burst"] = probe.Permitted
	if cookies {
		m["rst-in-syn-received"] = probe.Inconclusive
	}
	return m
}

// rstLabRun is one `tcpshake rst --json` run in the lab's client namespace.
type rstLabRun struct {
	code     int
	verdicts map[string]string
	events   []map[string]any
	summary  map[string]any
	elapsed  time.Duration
}

func runRSTLab(t *testing.T, l lab.Lab, bin string, server netip.Addr, observe bool) rstLabRun {
	t.Helper()
	args := []string{bin, "rst", netip.AddrPortFrom(server, 9).String(), "--closed-port", "81", "--echo-port", "7", "--json"}
	if observe {
		args = append(args, "--observe-netns", l.ServerNS)
	}
	r := runClient(t, l, args...)
	if r.stderr != "" {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	out := rstLabRun{code: r.code, verdicts: map[string]string{}, elapsed: r.elapsed}
	for _, ev := range jsonEvents(t, r.stdout) {
		switch ev["type"] {
		case "summary":
			if out.summary != nil {
				t.Errorf("a second summary event")
			}
			out.summary = ev
		case "scenario":
			name, _ := ev["name"].(string)
			out.verdicts[name] = rstStr(ev["verdict"])
			out.events = append(out.events, ev)
		}
	}
	if out.summary == nil {
		t.Fatalf("no summary event; stdout:\n%s", r.stdout)
	}
	return out
}

// TestRSTLab runs `tcpshake rst` inside the lab's client namespace against
// the Linux kernel of the server namespace (port 9 holds connections open, 7
// echoes, 81 is closed), by default and with net.ipv4.tcp_syncookies=2, over
// IPv4 and IPv6, with the server's kernel in view and without (then the
// survival checks send data and ACKs). Every scenario gives its verdict
// (rstLabVerdicts), names its rule and strength, names the SYN cookie when
// there is one and the peer is observed, speaks of Linux only when observed,
// and leaves no connection in the server (sock_diag and ss) and no nftables
// table in the client. Five runs give identical verdicts.
func TestRSTLab(t *testing.T) {
	bin := binary(t)
	for _, cookies := range []bool{false, true} {
		t.Run(fmt.Sprintf("syncookies=%v", cookies), func(t *testing.T) {
			var l lab.Lab
			if cookies {
				l = labtest.New(t, labtest.SynCookies(2))
			} else {
				l = labtest.New(t)
			}
			tests := []struct {
				name    string
				server  netip.Addr
				observe bool
			}{
				{"observed/ipv4", l.ServerV4, true},
				{"unobserved/ipv4", l.ServerV4, false},
				{"observed/ipv6", l.ServerV6, true},
				{"unobserved/ipv6", l.ServerV6, false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Cleanup(func() { checkRSTLeftovers(t, l) })
					r := runRSTLab(t, l, bin, tt.server, tt.observe)
					checkRSTLabRun(t, r, cookies, tt.observe)
				})
			}
			// Five runs (the one above among them in spirit: same lab, same
			// flags) must agree on every verdict.
			t.Run("five runs", func(t *testing.T) {
				var first map[string]string
				for i := range 5 {
					r := runRSTLab(t, l, bin, l.ServerV4, cookies)
					checkRSTLeftovers(t, l)
					if i == 0 {
						first = r.verdicts
						continue
					}
					if diff := cmp.Diff(first, r.verdicts); diff != "" {
						t.Errorf("run %d's verdicts differ from run 1's (-first +run):\n%s", i+1, diff)
					}
				}
			})
		})
	}
}

// checkRSTLabRun checks one run's events against what Linux must give.
func checkRSTLabRun(t *testing.T, r rstLabRun, cookies, observe bool) {
	t.Helper()
	want := rstLabVerdicts(cookies, observe)
	wantCode := 0
	for _, v := range want {
		if v != probe.Conforms && v != probe.Permitted {
			wantCode = 1
		}
	}
	if r.code != wantCode {
		t.Errorf("exit status %d, want %d", r.code, wantCode)
	}
	if r.elapsed > 20*time.Second {
		t.Errorf("took %v", r.elapsed)
	}
	var names []string
	states := rstLabObserved(cookies)
	for _, ev := range r.events {
		name := rstStr(ev["name"])
		names = append(names, name)
		if got := rstStr(ev["verdict"]); got != want[name] {
			t.Errorf("%s: verdict %s, want %s: %v (observed: %v)", name, got, want[name], ev["why"], ev["observed"])
		}
		if rstStr(ev["rule"]) == "" || rstStr(ev["strength"]) == "" || rstStr(ev["rfc"]) == "" {
			t.Errorf("%s: rule %q, strength %q, rfc %q", name, ev["rule"], ev["strength"], ev["rfc"])
		}
		peer := rstStr(ev["peer"])
		if observe != strings.HasPrefix(peer, "Linux") {
			t.Errorf("%s: peer %q, observed %v", name, peer, observe)
		}
		if !observe && strings.Contains(rstStr(ev["why"])+rstStr(ev["observed"]), "Linux") {
			t.Errorf("%s: a Linux note about a peer not known to be Linux: %v", name, ev["why"])
		}
		opens := name != "closed-port" && name != "ack-to-listener"
		// Observed, every scenario that opens a connection sees the cookie;
		// unobserved, the options of two SYN-ACKs before the scenarios show
		// it (probe.CheckCookies), and rst-in-syn-received's behaviour too.
		cookie, _ := ev["syn_cookie"].(bool)
		if want := cookies && opens; cookie != want {
			t.Errorf("%s: syn_cookie %v, want %v (%v)", name, cookie, want, ev["syn_cookie_how"])
		}
		if name == "challenge-ack-burst" {
			fig, _ := ev["figures"].(map[string]any)
			if fig["rsts"] != 25.0 || fig["challenge_acks"] != 3.0 {
				t.Errorf("challenge-ack-burst figures %v, want 25 RSTs and 3 challenge ACKs (one per 500 ms over 1.15 s)", fig)
			}
		}
		if !observe {
			if ev["observed_before"] != nil || ev["observed_after"] != nil {
				t.Errorf("%s: observed states without --observe-netns: %v, %v", name, ev["observed_before"], ev["observed_after"])
			}
			continue
		}
		got := [2]string{rstStr(ev["observed_before"]), rstStr(ev["observed_after"])}
		if got != states[name] {
			t.Errorf("%s: the server's kernel showed %s → %s, want %s → %s", name, got[0], got[1], states[name][0], states[name][1])
		}
	}
	if diff := cmp.Diff(probe.Scenarios(), names); diff != "" {
		t.Errorf("scenario events (-want +got):\n%s", diff)
	}
	if r.summary["command"] != "rst" {
		t.Errorf("summary command %v", r.summary["command"])
	}
	if sc, _ := r.summary["scenarios"].([]any); len(sc) != len(probe.Scenarios()) {
		t.Errorf("summary lists %d scenarios, want %d", len(sc), len(probe.Scenarios()))
	}
}

// TestRSTLabText checks the text output: the rule, the verdict with its
// level, the measured limit and the final table.
func TestRSTLabText(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
	t.Cleanup(func() { checkRSTLeftovers(t, l) })
	r := runClient(t, l, bin, "rst", netip.AddrPortFrom(l.ServerV4, 9).String(), "--closed-port", "81",
		"--scenario", "in-window-rst,challenge-ack-burst", "--observe-netns", l.ServerNS)
	if r.code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"SCENARIO             EXPECTED", "\nin-window-rst ", "\nchallenge-ack-burst ",
		"  rule:      RFC 9293 §3.10.7.4 (RFC 5961 §3.2) (MUST): “If the RST bit is set and the sequence number does not exactly match",
		"verdict:   conforms — challenge ACK, connection intact",
		"verdict:   permitted — throttled to 3 for 25 RSTs within 1.1", "(Linux: at most one per net.ipv4.tcp_invalid_ratelimit",
		"  figures:   challenge_acks 3, rsts 25, span_ms ",
		"1 of 2 scenarios conform, 1 permitted, time ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func rstStr(v any) string {
	s, _ := v.(string)
	return s
}

// checkRSTLeftovers fails t if, within 1 s, the server namespace still holds
// a connection from the client that is neither in TIME-WAIT nor closed (by
// sock_diag, and by `ss` as a user would look), or if the client namespace
// has any nftables table (the guard's owner table must be gone with the
// process that made it).
func checkRSTLeftovers(t *testing.T, l lab.Lab) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		left := labtest.ServerConns(t, l)
		ss := labtest.ServerSS(t, l)
		if len(left) == 0 && len(ss) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the server still holds connections from the client 1 s after the run: sock_diag %v; ss %q", left, ss)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tables := labtest.Tables(t, l.ClientNS); len(tables) > 0 {
		t.Errorf("nftables tables left in %s: %v", l.ClientNS, tables)
	}
}

// TestRSTLabICMP runs ack-to-listener and closed-port against the lab's port
// 83, which nftables answers with ICMP port unreachable: the ICMP errors are
// the results (never "nothing came back") and the verdicts inconclusive, as
// the peer's TCP was not heard.
func TestRSTLabICMP(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		bin := binary(t)
		for _, observe := range []bool{true, false} {
			if observe && l.Peer != lab.PeerLinux {
				continue // lwIP's sockets live in its program: nothing to observe
			}
			t.Run(fmt.Sprintf("observe=%v", observe), func(t *testing.T) {
				t.Cleanup(func() { checkRSTLeftovers(t, l) })
				args := []string{bin, "rst", netip.AddrPortFrom(l.ServerV4, 83).String(), "--closed-port", "83", "--scenario", "ack-to-listener,closed-port", "--json"}
				if observe {
					args = append(args, "--observe-netns", l.ServerNS)
				}
				r := runClient(t, l, args...)
				if r.code != 1 {
					t.Errorf("exit status %d, want 1 (inconclusive); stderr:\n%s", r.code, r.stderr)
				}
				n := 0
				for _, ev := range jsonEvents(t, r.stdout) {
					if ev["type"] != "scenario" {
						continue
					}
					n++
					name := rstStr(ev["name"])
					icmp, _ := ev["icmp"].([]any)
					if rstStr(ev["verdict"]) != probe.Inconclusive || len(icmp) == 0 {
						t.Errorf("%s: verdict %v, icmp %v; want inconclusive with the ICMP errors", name, ev["verdict"], ev["icmp"])
					}
					if strings.HasPrefix(rstStr(ev["observed"]), "nothing") || strings.Contains(rstStr(ev["why"]), "nothing came back") {
						t.Errorf("%s: says nothing came back although ICMP did: observed %q, why %q", name, ev["observed"], ev["why"])
					}
					if !strings.Contains(rstStr(ev["observed"]), "ICMP port-unreach from "+l.ServerV4.String()) {
						t.Errorf("%s: observed %q lacks the ICMP error", name, ev["observed"])
					}
				}
				if n != 2 {
					t.Errorf("%d scenario events, want 2", n)
				}
			})
		}
	})
}

// TestRSTLabLWIP runs `tcpshake rst` against the lab's second stack, lwIP
// 2.1.3 (docs/peers.md), over IPv4 and IPv6: every scenario must give the
// verdict lwIP's source predicts (lines of STABLE-2_1_3_RELEASE):
//   - closed-port deviates (MUST): src/core/tcp_in.c:575-580 answers with
//     tcp_rst(NULL, ackno, …), seq = the segment's ack field even without the
//     ACK bit, and tcp_rst (src/core/tcp_out.c:1981-2001) always sets ACK;
//   - ack-to-listener and data-after-reset permitted: [R.] seq = SEG.ACK
//     (tcp_in.c:644-650, 575-580);
//   - ack-of-unsent-data deviates (MUST): tcp_in.c:1334-1337 sends an ACK but
//     does not return; the window was taken at :1155-1164 and the data is
//     processed;
//   - challenge-ack-burst deviates (SHOULD): tcp_ack_now for every in-window
//     RST (tcp_in.c:805-819), no throttling;
//   - the rest conforms. The peer is not observed (its sockets live inside
//     the lwIP program), so no text may speak of Linux.
func TestRSTLabLWIP(t *testing.T) {
	l := labtest.NewPeer(t, lab.PeerLWIP)
	bin := binary(t)
	want := map[string]string{}
	for _, n := range probe.Scenarios() {
		want[n] = probe.Conforms
	}
	want["closed-port"] = probe.Deviates
	want["ack-to-listener"] = probe.Permitted
	want["data-after-reset"] = probe.Permitted
	want["ack-of-unsent-data"] = probe.Deviates
	want["challenge-ack-burst"] = probe.Deviates
	levels := map[string]string{"closed-port": "MUST", "ack-of-unsent-data": "MUST", "challenge-ack-burst": "SHOULD"}
	for _, server := range []netip.Addr{l.ServerV4, l.ServerV6} {
		t.Run(server.String(), func(t *testing.T) {
			// What lwIP holds afterwards, read from the program itself (lab.Lab.LWIPSockets).
			t.Cleanup(func() { checkRSTLeftovers(t, l) })
			r := runRSTLab(t, l, bin, server, false)
			if r.code != 1 {
				t.Errorf("exit status %d, want 1 (some deviate)", r.code)
			}
			if diff := cmp.Diff(want, r.verdicts); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
			for _, ev := range r.events {
				name := rstStr(ev["name"])
				if got := rstStr(ev["level"]); got != levels[name] {
					t.Errorf("%s: level %q, want %q (%v)", name, got, levels[name], ev["why"])
				}
				if strings.Contains(rstStr(ev["why"])+rstStr(ev["observed"])+rstStr(ev["peer"]), "Linux") {
					t.Errorf("%s: speaks of Linux about lwIP: %v", name, ev["why"])
				}
				if cookie, _ := ev["syn_cookie"].(bool); cookie {
					t.Errorf("%s: a SYN cookie from lwIP, which has none", name)
				}
				if name == "challenge-ack-burst" {
					if fig, _ := ev["figures"].(map[string]any); fig["challenge_acks"] != 25.0 {
						t.Errorf("challenge-ack-burst figures %v, want 25 challenge ACKs (no throttling)", fig)
					}
				}
			}
		})
	}
}
