//go:build linux

package app_test

import (
	"net/netip"
	"strings"
	"testing"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
	"tcpshake/probe"
)

// TestLWIPPeerLab runs probe, handshake, shell and rst from the client namespace against the lab's second stack,
// lwIP (lab.PeerLWIP), and checks what must hold for any TCP stack: every port answers as its service says, a
// handshake completes and its echo is exact, a closed port is closed, and every rst scenario ends in a verdict.
// No verdict that depends on the stack is asserted (see docs/peers.md for what lwIP does).
func TestLWIPPeerLab(t *testing.T) {
	l := labtest.NewPeer(t, lab.PeerLWIP)
	bin := binary(t)

	type want struct{ state, reason string }
	for _, server := range []netip.Addr{l.ServerV4, l.ServerV6} {
		wants := map[float64]want{
			7:  {"open", "syn-ack"},
			13: {"open", "syn-ack"},
			80: {"open", "syn-ack"},
			81: {"closed", "reset"},
			82: {"filtered", "no-response"},
			83: {"filtered", "port-unreach"},
			84: {"filtered", "admin-prohibited"},
			85: {"open", "syn-ack"},
		}
		if server.Is6() {
			wants[85] = want{"closed", "reset"} // the IPv4-only echo
		}
		t.Run("probe/"+server.String(), func(t *testing.T) {
			r := runClient(t, l, bin, "probe", server.String(), "-p", "7,13,80-85", "--retries", "0", "--timeout", "300ms", "--json")
			if r.code != 0 {
				t.Errorf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
			}
			seen := 0
			for _, ev := range jsonEvents(t, r.stdout) {
				if ev["type"] != "result" {
					continue
				}
				port, _ := ev["port"].(float64)
				w, ok := wants[port]
				if !ok {
					t.Errorf("result for unexpected port: %v", ev)
					continue
				}
				seen++
				if ev["state"] != w.state || ev["reason"] != w.reason {
					t.Errorf("port %v: %v/%v, want %s/%s", port, ev["state"], ev["reason"], w.state, w.reason)
				}
			}
			if seen != len(wants) {
				t.Errorf("%d results, want %d", seen, len(wants))
			}
		})

		t.Run("handshake/echo/"+server.String(), func(t *testing.T) {
			r := runClient(t, l, bin, "handshake", netip.AddrPortFrom(server, lab.PortEcho).String(),
				"--send", `hello lwip\n`, "--json", "--time-wait", "100ms")
			if r.code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s\n%s", r.code, r.stderr, r.stdout)
			}
			data, flags := receivedData(t, r.stdout)
			if data != "hello lwip\n" {
				t.Errorf("echo %q, want %q", data, "hello lwip\n")
			}
			if len(flags) < 3 || !equalStrings(flags[:3], []string{">S", "<S.", ">."}) {
				t.Errorf("conversation %q, want it to begin with the three-way handshake", flags)
			}
			evs := jsonEvents(t, r.stdout)
			if sum := evs[len(evs)-1]; sum["type"] != "summary" || sum["outcome"] != "ok" {
				t.Errorf("last event %v, want an ok summary", sum)
			}
		})

		t.Run("handshake/http/"+server.String(), func(t *testing.T) {
			r := runClient(t, l, bin, "handshake", netip.AddrPortFrom(server, lab.PortHTTP).String(),
				"--send", `GET / HTTP/1.0\r\n\r\n`, "--close", "wait", "--json", "--time-wait", "100ms")
			if r.code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s\n%s", r.code, r.stderr, r.stdout)
			}
			data, flags := receivedData(t, r.stdout)
			if !strings.HasPrefix(data, "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(data, "hello from the tcpshake lab\n") {
				t.Errorf("answer %q, want the lab's HTTP response", data)
			}
			finFromPeer := false
			for _, f := range flags {
				finFromPeer = finFromPeer || (strings.HasPrefix(f, "<") && strings.Contains(f, "F"))
			}
			if !finFromPeer {
				t.Errorf("conversation %q: the server did not close (no FIN from it)", flags)
			}
		})

		t.Run("handshake/closed/"+server.String(), func(t *testing.T) {
			r := runClient(t, l, bin, "handshake", netip.AddrPortFrom(server, lab.PortClosed).String(), "--json")
			if r.code == 0 {
				t.Errorf("exit status 0 against a closed port, want a failure")
			}
			_, flags := receivedData(t, r.stdout)
			if len(flags) < 2 || flags[1] != "<R." {
				t.Errorf("conversation %q, want the SYN answered by RST,ACK", flags)
			}
		})

		t.Run("rst/"+server.String(), func(t *testing.T) {
			r := runClient(t, l, bin, "rst", netip.AddrPortFrom(server, lab.PortHold).String(),
				"--closed-port", "81", "--echo-port", "7", "--json")
			if r.code != 0 && r.code != 1 {
				t.Fatalf("exit status %d, want 0 or 1 (verdicts, not an error); stderr:\n%s", r.code, r.stderr)
			}
			verdicts := map[any]bool{probe.Conforms: true, "deviates": true, "permitted": true, "inconclusive": true}
			scenarios, summaries := 0, 0
			for _, ev := range jsonEvents(t, r.stdout) {
				switch ev["type"] {
				case "scenario":
					scenarios++
					if name, _ := ev["name"].(string); name == "" || !verdicts[ev["verdict"]] {
						t.Errorf("scenario %q: verdict %v, want one of %v", name, ev["verdict"], verdicts)
					}
					if why, _ := ev["why"].(string); why == "" {
						t.Errorf("scenario %v: verdict %v without a reason", ev["name"], ev["verdict"])
					}
				case "summary":
					summaries++
				}
			}
			if scenarios == 0 || summaries != 1 {
				t.Errorf("%d scenario lines and %d summaries, want every scenario and one summary", scenarios, summaries)
			}
		})
	}

	t.Run("shell", func(t *testing.T) {
		out, code := runShellScript(t, l, "syn\nwait 200ms\nack\nsend hello\\n\nwait 300ms\nfin\nwait 300ms\nquit\n")
		if code != 0 {
			t.Errorf("exit code %d, want 0\n%s", code, out)
		}
		data, flags := receivedData(t, out)
		if data != "hello\n" {
			t.Errorf("echo %q, want %q", data, "hello\n")
		}
		if len(flags) < 4 || !equalStrings(flags[:4], []string{">S", "<S.", ">.", ">P."}) {
			t.Errorf("conversation %q, want it to begin >S <S. >. >P.", flags)
		}
	})
}
