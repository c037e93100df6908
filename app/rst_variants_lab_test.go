//go:build linux

package app_test

import (
	"strings"
	"testing"

	"tcpshake/lab/labtest"
)

// TestRSTLabVariants runs rst against the Linux server in the variants a
// stack engineer tries besides SYN cookies: no timestamps, SACK or window
// scaling, and ECN on. The verdicts are the default's (none of the rules
// depends on those options), nothing is left on the server, and a
// handshake offering every option shows the variant took effect.
func TestRSTLabVariants(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		name    string
		opts    []labtest.Option
		offer   []string
		synAck  func(flags, options string) bool
		explain string
	}{
		{
			name:  "no timestamps, SACK or window scaling",
			opts:  []labtest.Option{labtest.Sysctl("tcp_timestamps", 0), labtest.Sysctl("tcp_sack", 0), labtest.Sysctl("tcp_window_scaling", 0)},
			offer: []string{"--sackok", "--timestamp", "--wscale", "7"},
			synAck: func(flags, options string) bool {
				return !strings.Contains(options, "sack") && !strings.Contains(options, "ts") && !strings.Contains(options, "wscale")
			},
			explain: "a SYN-ACK with MSS only",
		},
		{
			name:    "ECN on",
			opts:    []labtest.Option{labtest.Sysctl("tcp_ecn", 1)},
			offer:   []string{"--ecn"},
			synAck:  func(flags, options string) bool { return strings.Contains(flags, "E") },
			explain: "an ECN-setup SYN-ACK (ECE set)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := labtest.New(t, tc.opts...)
			hs := runClient(t, l, append([]string{bin, "handshake", l.ServerV4.String() + ":7", "--send", "hi", "--time-wait", "1ms", "--json"}, tc.offer...)...)
			found := false
			for _, ev := range jsonEvents(t, hs.stdout) {
				flags, _ := ev["flags"].(string)
				if ev["type"] != "step" || ev["direction"] != "received" || !strings.Contains(flags, "S") {
					continue
				}
				options, _ := ev["options"].(string)
				found = true
				if !tc.synAck(flags, options) {
					t.Errorf("the server's SYN-ACK [%s] %s: want %s (the variant did not take effect)", flags, options, tc.explain)
				}
				break
			}
			if !found {
				t.Fatalf("no SYN-ACK in the handshake (exit %d):\n%s", hs.code, hs.stderr)
			}
			t.Cleanup(func() { checkRSTLeftovers(t, l) })
			r := runRSTLab(t, l, bin, l.ServerV4, true)
			checkRSTLabRun(t, r, false, true)
		})
	}
}
