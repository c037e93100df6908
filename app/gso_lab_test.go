//go:build linux

package app_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// TestLargeSegmentsLab sends 300 KB to the Linux server's echo port over
// IPv4 and IPv6: by default in large segments (GSO, more than one MSS each,
// never more than an IP packet holds, said in a note), with --no-gso one MSS
// at a time; the echo is byte-exact either way and the summary counts
// every byte.
func TestLargeSegmentsLab(t *testing.T) {
	l := labtest.New(t)
	file, data := s8RandomFile(t, 300<<10)
	for _, tc := range []struct {
		name string
		dst  netip.Addr
		mss  int
		gso  bool
	}{
		{"ipv4", l.ServerV4, 1460, true},
		{"ipv4 --no-gso", l.ServerV4, 1460, false},
		{"ipv6", l.ServerV6, 1440, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"handshake", netip.AddrPortFrom(tc.dst, lab.PortEcho).String(), "--send-file", file,
				"--json", "--time-wait", "100ms", "--sport", fmt.Sprint(s8Port())}
			if !tc.gso {
				args = append(args, "--no-gso")
			}
			r := s8Run(t, l, "", 30*time.Second, args...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r)
			}
			largest, large, noted := 0, 0, false
			for _, ev := range jsonEvents(t, r.stdout) {
				if ev["type"] != "step" {
					continue
				}
				if ev["direction"] == "note" && strings.Contains(fmt.Sprint(ev["explain"]), "GSO") {
					noted = true
				}
				if ev["direction"] == "sent" {
					n := int(s8Num(ev, "len"))
					largest = max(largest, n)
					if n > tc.mss {
						large++
					}
				}
			}
			switch {
			case tc.gso && (large == 0 || !noted):
				t.Errorf("%d sent segments above the MSS %d (largest %d), GSO noted %v: want large segments, said", large, tc.mss, largest, noted)
			case tc.gso && largest > 0xffff:
				t.Errorf("a sent segment of %d bytes: more than an IP packet holds", largest)
			case !tc.gso && (largest > tc.mss || noted):
				t.Errorf("--no-gso: largest sent segment %d bytes (MSS %d), GSO noted %v", largest, tc.mss, noted)
			}
			sum := s8Summary(t, r.stdout)
			if sum == nil || s8Num(sum, "bytes_sent") != float64(len(data)) || s8Num(sum, "bytes_received") != float64(len(data)) {
				t.Errorf("summary %v, want %d bytes each way", sum, len(data))
			}
			got, problems := s8Received(t, r.stdout, len(data))
			if len(problems) > 0 {
				t.Errorf("the echo as received: %s", strings.Join(problems, "; "))
			} else if !bytes.Equal(got, data) {
				t.Errorf("the echo differs from the file")
			}
		})
	}
}
