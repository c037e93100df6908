//go:build linux

package app_test

import (
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
// each scenario against the Linux kernel.
var rstLabObserved = map[string][2]string{
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

// TestRSTLab runs `tcpshake rst` inside the lab's client namespace against
// the Linux kernel of the server namespace (port 9 holds connections open,
// 81 is closed): every scenario must conform, with the server's kernel in
// view and without it (then the survival checks send data and ACKs), exit 0,
// and leave no connection in the server and no nftables table in the client.
func TestRSTLab(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
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
			args := []string{bin, "rst", netip.AddrPortFrom(tt.server, 9).String(), "--closed-port", "81", "--json"}
			if tt.observe {
				args = append(args, "--observe-netns", l.ServerNS)
			}
			t.Cleanup(func() { checkRSTLeftovers(t, l) })
			r := runClient(t, l, args...)
			if r.code != 0 {
				t.Errorf("exit status %d, want 0 (every scenario conforms); stderr:\n%s", r.code, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr:\n%s", r.stderr)
			}
			if r.elapsed > 15*time.Second {
				t.Errorf("took %v", r.elapsed)
			}
			var names []string
			var summaries []map[string]any
			for _, ev := range jsonEvents(t, r.stdout) {
				switch ev["type"] {
				case "summary":
					summaries = append(summaries, ev)
				case "scenario":
					name, _ := ev["name"].(string)
					names = append(names, name)
					if ev["verdict"] != probe.Conforms {
						t.Errorf("%s: verdict %v: %v (observed: %v)", name, ev["verdict"], ev["why"], ev["observed"])
					}
					if !tt.observe {
						if ev["observed_before"] != nil || ev["observed_after"] != nil {
							t.Errorf("%s: observed states without --observe-netns: %v, %v", name, ev["observed_before"], ev["observed_after"])
						}
						continue
					}
					want := rstLabObserved[name]
					got := [2]string{rstStr(ev["observed_before"]), rstStr(ev["observed_after"])}
					if got != want {
						t.Errorf("%s: the server's kernel showed %s → %s, want %s → %s", name, got[0], got[1], want[0], want[1])
					}
				}
			}
			if diff := cmp.Diff(probe.Scenarios(), names); diff != "" {
				t.Errorf("scenario events (-want +got):\n%s", diff)
			}
			if len(summaries) != 1 {
				t.Fatalf("%d summary events, want 1", len(summaries))
			}
			sum := summaries[0]
			if sum["command"] != "rst" || sum["outcome"] != "11 of 11 scenarios conform" {
				t.Errorf("summary: command %v, outcome %v", sum["command"], sum["outcome"])
			}
			if sc, _ := sum["scenarios"].([]any); len(sc) != len(probe.Scenarios()) {
				t.Errorf("summary lists %d scenarios, want %d", len(sc), len(probe.Scenarios()))
			}
		})
	}

	t.Run("text table", func(t *testing.T) {
		t.Cleanup(func() { checkRSTLeftovers(t, l) })
		r := runClient(t, l, bin, "rst", netip.AddrPortFrom(l.ServerV4, 9).String(), "--closed-port", "81",
			"--scenario", "in-window-rst,challenge-ack-burst", "--observe-netns", l.ServerNS)
		if r.code != 0 {
			t.Errorf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
		}
		for _, want := range []string{
			"SCENARIO             EXPECTED", "\nin-window-rst ", "\nchallenge-ack-burst ",
			"verdict:   conforms — challenge ACK, connection intact",
			"verdict:   conforms — rate-limited to 1 ", "2 of 2 scenarios conform, time ",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("text output lacks %q:\n%s", want, r.stdout)
			}
		}
	})
}

func rstStr(v any) string {
	s, _ := v.(string)
	return s
}

// checkRSTLeftovers fails t if, within 1 s, the server namespace still holds
// a connection from the client that is neither in TIME-WAIT nor closed, or if
// the client namespace has any nftables table (the guard's owner table must
// be gone with the process that made it).
func checkRSTLeftovers(t *testing.T, l lab.Lab) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		left := labtest.ServerConns(t, l)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the server still holds connections from the client 1 s after the run: %v", left)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tables := labtest.Tables(t, l.ClientNS); len(tables) > 0 {
		t.Errorf("nftables tables left in %s: %v", l.ClientNS, tables)
	}
}
