//go:build linux

package app_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// TestWriteLab checks -w end to end: a live handshake writes a pcapng that
// tshark opens without a warning, with one comment per packet that tells
// the step, and `tcpshake analyze` on that file tells the same story (the
// same segments, each way) as the live run printed.
func TestWriteLab(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		bin := binary(t)
		dir := t.TempDir()
		var obs []string // the Linux server's kernel observed; lwIP's sockets live in its program
		if l.Peer == lab.PeerLinux {
			obs = []string{"--observe-netns", l.ServerNS}
		}
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"handshake", append([]string{"handshake", l.ServerV4.String() + ":7", "--isn", "100", "--send", `hello\n`, "--time-wait", "100ms"}, obs...)},
			{"handshake6-wait", []string{"handshake", "[" + l.ServerV6.String() + "]:80", "--send", `GET / HTTP/1.0\r\n\r\n`, "--close", "wait"}},
			{"probe", []string{"probe", l.ServerV4.String(), "-p", "80,81,83"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				file := filepath.Join(dir, tc.name+".pcapng")
				live := runWithStdin(t, l, "", append(append([]string{bin}, tc.args...), "-w", file, "--json")...)
				liveSteps := segments(t, live)

				if tshark, err := exec.LookPath("tshark"); err == nil {
					out, err := exec.Command(tshark, "-r", file, "-T", "fields", "-e", "frame.comment").CombinedOutput()
					if err != nil || strings.Contains(strings.ToLower(string(out)), "warn") || strings.Contains(string(out), "damaged") {
						t.Fatalf("tshark -r: %v\n%s", err, out)
					}
					var comments int
					for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
						if strings.HasPrefix(line, "step ") {
							comments++
						}
					}
					if comments != len(liveSteps) {
						t.Errorf("tshark shows %d step comments, the live run had %d steps:\n%s", comments, len(liveSteps), out)
					}
				} else if os.Getenv("CI") == "true" {
					t.Fatal("tshark is not installed (scripts/test.sh installs it)")
				} else {
					t.Log("tshark not installed: comments not checked")
				}

				if tc.name == "probe" {
					return // analyze --conn tells one conversation; a probe run has several
				}
				cmd := exec.Command(bin, "analyze", file, "--conn", "1", "--json")
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("analyze: %v\n%s", err, out)
				}
				if diff := cmp.Diff(liveSteps, segments(t, string(out))); diff != "" {
					t.Errorf("analyze tells another story than the live run (-live +analyze):\n%s", diff)
				}
			})
		}
	})
}

// segments lists the sent and received steps of JSON output as sorted
// "direction flags seq ack len" strings (ICMP steps by their reason).
func segments(t *testing.T, out string) []string {
	t.Helper()
	var segs []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Type, Direction, Flags, ICMP string
			Seq, Ack                     uint32
			Len                          int
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		if ev.Type != "step" || ev.Direction == "note" || ev.Direction == "observed" || ev.ICMP == "echo-reply" {
			continue
		}
		if ev.ICMP != "" {
			segs = append(segs, ev.Direction+" icmp "+ev.ICMP)
			continue
		}
		segs = append(segs, fmt.Sprintf("%s [%s] seq %d ack %d len %d", ev.Direction, ev.Flags, ev.Seq, ev.Ack, ev.Len))
	}
	sort.Strings(segs)
	return segs
}
